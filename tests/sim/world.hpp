// The simulated world: nodes driving the real delivery core (common/core) over a
// simulated network, disk and clock, all from one seed: a synthetic publisher and two
// subscribers ("pair"), or the shop's five services with their own handlers ("shop"). It plays what the reactor does
// around the core (units of work, heartbeats, replays, resends) and checks the promise
// of docs/guarantees.md at every step. See docs/guarantees.md, "The simulator".
#pragma once

#include <troupe/core/commands.hpp>
#include <troupe/core/inbound_stream.hpp>
#include <troupe/core/mutation.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_set>
#include <variant>
#include <vector>

namespace troupe::sim {

using core::Duration;
using core::Time;

// The kinds of fault a run may inject; a shrink switches them off one by one.
enum Fault : unsigned {
  kDrop = 1, kDuplicate = 2, kDelay = 4, kPartition = 8, kCrash = 16, kLostTail = 32,
  kReplacedStore = 64, kSuspend = 128, kClockJump = 256, kOversize = 512, kStoreFailure = 1024,
  kAllFaults = 2047,
};
std::string fault_names(unsigned faults);

// A planted bug of the simulated node itself (not of the core): a shop service's state
// writes survive a crash or a failed commit while its positions and outbox do not, as
// if the handler wrote outside the unit of work. Only the shop's invariants can see it.
inline constexpr std::string_view kStateOutsideUnitOfWork = "state_outside_unit_of_work";

struct Options {
  std::uint64_t seed = 1;
  std::uint64_t steps = 20000;  // of 5 ms each, before the quiescent end
  unsigned faults = kAllFaults;
  bool verbose = false;
  std::string scenario = "pair";  // or "shop"
  bool state_outside_unit_of_work = false;
};

struct Event {
  std::uint64_t seq = 0, epoch = 0;
  std::string id, prev;  // prev: the id of the event before it in the publisher's history
  std::size_t bytes = 100;
  std::string store;  // the incarnation of the store that wrote it (the simulator's knowledge only)
  std::string type, payload, correlation;  // a shop service's event (empty in "pair")
};
struct Command {
  std::string from;
  std::uint64_t seq = 0;
  std::string id;
  std::uint64_t epoch = 0;  // of the sender's store when it wrote it
  std::string type, payload;  // a shop command (empty in "pair")
};
struct Heartbeat {
  core::PublisherWord word;
  std::map<std::string, std::uint64_t> acks;
};
struct ReplayAsk {
  std::string id;
  std::uint64_t from = 0;
};
struct ReplayPage {
  std::string id;
  core::ReplayAnswer answer;
  std::vector<Event> events;
};
using Body = std::variant<Event, Command, Heartbeat, ReplayAsk, ReplayPage>;
// The socket a packet travels on: events and heartbeats (PUB/SUB), commands
// (PUSH/PULL), replay asks and pages (DEALER/ROUTER).
int socket_of(const Body& body);

struct Packet {
  std::string from, to;
  Time at{};
  std::uint64_t order = 0;
  Body body;
  std::uint64_t generation = 0;  // the sender's start it left from (a restart ends its connections)
};

// What a node's store has committed. Its vectors only grow between commits, so a mark
// (their sizes and the small maps) is a whole snapshot: a crash goes back to the last
// commit, a lost WAL tail to one a few commits earlier, a replaced store to nothing.
struct Disk {
  std::string incarnation;
  std::vector<Event> outbox;  // sequence = index + 1
  std::uint64_t oldest = 1;
  std::map<std::string, std::uint64_t> positions;   // publisher, or "cmd:SENDER"
  std::map<std::string, std::string> identities;    // publisher -> incarnation and epoch
  std::map<std::string, std::string> sender_epochs;  // command sender -> epochs record
  std::vector<Command> commands;                    // our command outbox (to one receiver)
  std::uint64_t acked = 0;
  std::string receiver_incarnation;  // the receiver's store that acknowledged them
  std::uint64_t held_from = 0;       // first command held back for an unchecked start (0: none)
  std::map<std::string, std::pair<std::uint64_t, std::string>> last_applied;  // publisher -> (seq, id)
  std::vector<std::string> applied_commands;         // ids, in order
  std::vector<std::uint64_t> applied_numbers;         // ... and the number each had
  std::unordered_set<std::string> applied_set;
  // A shop service's state: its tables, and what each write replaced (so a mark can undo it).
  std::map<std::string, std::map<std::string, std::string, std::less<>>, std::less<>> tables;
  struct Undo {
    std::string table, key;
    std::optional<std::string> before;
  };
  std::vector<Undo> undo;
  void write(const std::string& table, const std::string& key, std::optional<std::string> value);

  struct Mark {
    std::size_t outbox = 0, commands = 0, applied_commands = 0, undo = 0;
    std::uint64_t oldest = 1, acked = 0;
    std::map<std::string, std::uint64_t> positions;
    std::map<std::string, std::string> identities, sender_epochs;
    std::map<std::string, std::pair<std::uint64_t, std::string>> last_applied;
    std::string incarnation, receiver_incarnation;
    std::uint64_t held_from = 0;
  };
  Mark mark() const;
  void revert(const Mark& m);
  bool keep_state = false;  // kStateOutsideUnitOfWork: revert leaves the tables alone
};

class World;
class Service;

class Node {
 public:
  Node(World& world, std::string name, std::size_t max_bytes) : max_bytes_(max_bytes), world_(world), name_(std::move(name)) {}

  void start(Time now);
  void crash(Time now, unsigned how);  // how: 0 plain, kLostTail, kReplacedStore
  // What an operator does about a stream stopped by a LOSS: (docs/guarantees.md): stop
  // the service, move its position for that publisher past what is gone (to the event
  // before the oldest the publisher retains, with that store's incarnation and the
  // event's epoch), start it again.
  void operator_reset(Time now, const std::string& publisher);
  Time stopped_since{};  // when one of its streams stopped (zero: none is)
  void turn(Time now);
  void deliver(Packet p);
  bool alive() const { return live_ != nullptr; }
  std::uint64_t generation = 0;  // its starts

  const std::string& name() const { return name_; }
  Disk disk;
  std::size_t max_bytes_;
  Time restart_at{};
  Time suspended_until{};
  bool emitting = false;  // the publisher's timer (a sensor reading every few ms), or the storefront's orders
  std::shared_ptr<Service> service;  // a shop service's own handlers ("shop")
  std::uint64_t rejected = 0;        // messages its handlers refused
  std::vector<std::string> publishers;  // whom it reacts to
  std::string command_target;           // whom it sends commands to, if anyone
  std::vector<std::string> subscribers;  // who reacts to it
  std::vector<std::string> command_senders;
  bool epochs = true;
  std::uint64_t retention = 0;  // events kept (0: all)
  std::uint64_t max_oldest = 1;  // the most it ever pruned to (a lost WAL tail can undo a prune)
  std::vector<Disk::Mark> commits;  // the last few committed marks (for a lost WAL tail)
  std::size_t disk_faults = 0;      // lost tails and replaced stores suffered
  // LOSS: reported here, by kind and about whom (checked against what really happened).
  std::set<std::pair<core::Loss, std::string>> losses;

  struct Live {
    std::string boot;
    std::uint64_t epoch = 0;
    std::map<std::string, core::InboundStream> streams;
    core::CommandInbox inbox;
    std::optional<core::CommandOutbox> outbox;
    Time next_heartbeat{}, next_maintenance{}, next_emit{}, last_turn{};
    std::vector<Packet> pending;  // sent after commit
    // Connections ended by the transport (a message over the limit ends a libzmq
    // connection for good), per peer and socket, until the node opens a new one.
    std::set<std::pair<std::string, int>> dead;
  };
  Live* live() { return live_.get(); }

 private:
  void handle(Packet& p, Time now);
  void on_event(const std::string& pub, const Event& e, bool replayed, Time now);
  void carry_out(core::Effects& fx, const std::string& about);
  void emit(Time now, std::string type = {}, std::string payload = {}, std::string correlation = {});
  void stage_command(std::string type = {}, std::string payload = {});
  void place_order();  // the storefront's reading: an order, or now and then a cancellation
  // Runs the shop service's handler for a message it took; false if the run failed.
  void handle_shop(bool command, const std::string& from, const std::string& id, const std::string& type,
                   const std::string& payload, const std::string& correlation, Time now);
  void heartbeat(Time now);
  void maintain(Time now);
  void send(std::string to, Body body);
  void commit();

  World& world_;
  std::string name_;
  std::unique_ptr<Live> live_;
  // What arrived and waits to be read, per connection (sender and socket): the reactor
  // reads its sockets in turn, so a flood on one does not hold up the others.
  std::map<std::pair<std::string, int>, std::deque<Packet>> inbox_;
};

struct Failure {
  std::string what;
  std::uint64_t step = 0;
  std::vector<std::string> trace;
};

class World {
 public:
  explicit World(Options options);
  // Runs the steps, then a quiescent end; returns the first broken promise, if any.
  std::optional<Failure> run();

  // Used by nodes.
  void send(Packet p);
  void fail(std::string what);
  void note(std::string line);
  bool verbose() const { return options_.verbose; }
  std::string next_id(const std::string& prefix) { return prefix + "-" + std::to_string(++ids_); }
  std::mt19937_64& rng() { return rng_; }
  bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  // Whether faults of this kind are injected now (never in the quiescent end).
  bool has(Fault f) const { return !quiet_ && (options_.faults & f) != 0; }
  Node& node(const std::string& name);
  bool failed() const { return failure_.has_value(); }
  // Whether a LOSS of this kind about `about`, reported by `by`, is what really happened.
  bool excused(const Node& by, core::Loss loss, const std::string& about);
  double oversize_rate = 0;
  std::uint64_t delivered = 0;
  Duration heartbeat = std::chrono::milliseconds(100);
  std::uint64_t step = 0;

 private:
  void network(Time now);
  void faults(Time now);
  void check_quiescent();
  bool settled();
  bool blocked(Node& n, const std::string& publisher, std::uint64_t position);
  bool rewritten(const Command& c);

  Options options_;
  std::mt19937_64 rng_;
  std::uint64_t ids_ = 0;
  std::uint64_t order_ = 0;
  Time now_{};
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::vector<Packet> in_flight_;
  // Each connection (sender, receiver, socket) is FIFO, as a ZeroMQ connection is: the
  // time its last packet arrives. Reordering happens between connections only.
  std::map<std::tuple<std::string, std::string, int>, Time> fifo_;
  std::set<std::pair<std::string, std::string>> cut_;  // partitioned pairs (both ways)
  Time heal_at_{};
  double drop_ = 0, duplicate_ = 0;
  Duration max_delay_{};
  bool quiet_ = false;  // the quiescent end: no faults, a perfect network
  std::deque<std::string> trace_;
  std::optional<Failure> failure_;
};

}  // namespace troupe::sim
