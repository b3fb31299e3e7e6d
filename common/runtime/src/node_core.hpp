// NodeCore: the node's private machinery — sockets, reactor, unit of work, relay,
// replay, heartbeats — one class whose rooms are node_setup.cpp (binding, connections,
// the state lock), reactor.cpp (loop, batches, relay), streams.cpp (event streams),
// messages.cpp (handlers, commands), dead_letters.cpp, queries.cpp (typed built-in
// replies), security.cpp (who may do what), taps.cpp (subscriptions, mirrors), tasks.cpp,
// compose.cpp (the default store) and pipelined.cpp (commit = "pipelined"). What is done
// to a socket is adapters/zmq's. Internal.
#pragma once

#include <troupe/domain/id.hpp>
#include <troupe/runtime/builtin.hpp>
#include <troupe/runtime/metrics.hpp>
#include <troupe/runtime/node.hpp>

#include <troupe/core/commands.hpp>
#include <troupe/core/inbound_stream.hpp>

#include "rate_limits.hpp"
#include "sync_thread.hpp"

#include <troupe/adapters/zmq/ipc_guard.hpp>
#include <troupe/adapters/zmq/sockets.hpp>
#include <troupe/adapters/zmq/zap.hpp>

#include <troupe/adapters/json/contract.hpp>
#include <troupe/adapters/msgpack/codec.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <vector>

namespace troupe::detail {

using transport::IpcGuard;
using transport::ZapAuthority;
using Clock = std::chrono::steady_clock;
using Frames = std::vector<zmq::message_t>;

// Thrown while a handler runs when what it emits would be over max_message_bytes:
// peers would refuse it, so it is never committed; the handler's message is refused.
struct OversizedMessage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Most frames a command or query may have (envelope, payload, routing and a delimiter).
inline constexpr std::size_t kMaxFrames = 16;

// Where rejections of a type the mesh does not know are counted in $metrics.
inline constexpr std::string_view kUnknownType = "$unknown";

std::string_view view(const zmq::message_t& m);

using json = nlohmann::json;
using Code = Rejection::Code;

// Where a node keeps, per publisher, the incarnation (and epoch) its position refers to.
inline constexpr std::string_view kUpstreamsTable = "$upstreams";
// ... and per receiver of its commands, the incarnation of the store that acknowledged them.
inline constexpr std::string_view kDownstreamsTable = "$downstreams";
// (and, under "NAME held", the first command number held back for the first-heartbeat
// check of a start that has not had it yet, or "none").
// ... and per sender of commands to it, the epochs those it applied were written under.
inline constexpr std::string_view kSendersTable = "$senders";
// Under "partitions", the partition count this store was written under (1: none).
inline constexpr std::string_view kNodeTable = "$node";

inline std::string to_msgpack(const json& j) {
  auto v = json::to_msgpack(j);
  return std::string(v.begin(), v.end());
}

inline std::string topic_of(std::string_view type) { return std::string(type) + " "; }

inline std::vector<std::string_view> views(const Frames& frames) {
  std::vector<std::string_view> v;
  v.reserve(frames.size());
  for (const auto& f : frames) v.push_back(view(f));
  return v;
}

inline bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A publisher this node reacts to: its sockets, and the core's rules for its stream.
struct Upstream {
  Upstream(std::string publisher, core::StreamSettings settings, std::uint64_t position,
           core::InboundStream::Identity identity)
      : name(publisher), stream(std::move(publisher), settings, position, std::move(identity)) {}
  std::string name;
  Endpoints endpoints;
  std::set<std::string, std::less<>> reacts;  // types with a handler here
  zmq::socket_t sub;
  zmq::socket_t dealer;  // replay requests
  core::InboundStream stream;
};

// A service this node sends commands to: its sockets, and the core's rules for the
// commands towards it.
struct Downstream {
  Downstream(std::string receiver, std::uint64_t head_at_start, std::uint64_t acked, std::string incarnation,
             core::Duration heartbeat)
      : name(receiver),
        outbox(std::move(receiver), head_at_start, acked, std::move(incarnation), heartbeat, Clock::now()) {}
  std::string name;
  Endpoints endpoints;
  zmq::socket_t push;
  zmq::socket_t heartbeats;  // its XPUB, heartbeats only (acks)
  core::CommandOutbox outbox;
};

// A message waiting to be sent after commit.
struct Outgoing {
  enum class To { events, command, reply } to = To::events;
  std::string target;          // command target
  std::uint64_t sequence = 0;  // command number towards it
  std::vector<std::string> frames;
};

struct Incoming {
  enum class From { command, query, event, replay, heartbeat, task } from = From::command;
  Upstream* upstream = nullptr;
  Frames frames;
  // A query is answered again when its batch could not be committed: whether its first
  // answer got as far as counting it handled or rejected (a store error can stop it).
  bool finished = false;
  // Set when the message was over the frame or byte limit: what it really was; only
  // its first frames were kept.
  std::string oversize = {};
  // From::task: what to run, and whether it was posted (run again if its batch fails).
  Task task = {};
  bool posted = false;
  // When collect() took it from its socket (queue_us in $metrics); unset for tasks.
  Clock::time_point received = {};
};

// A task run every `period` (or once, when period is zero).
struct Timer {
  Clock::time_point next;
  Clock::duration period;
  Task task;
};

// compose.cpp: the store a node gets when NodeOptions names none (SQLite or memory,
// as the topology's durability says).
std::shared_ptr<ports::Store> default_store(const Topology& topology, const std::string& service);

class NodeCore final : public Stager {
 public:
  NodeCore(Topology topology, std::string service, NodeOptions options);
  ~NodeCore();

  void run();
  void stop() noexcept;

  // Called by Context while a handler or task runs.
  void stage_event(const Envelope& cause, std::string_view type, std::string payload,
                   std::string correlation) override;
  void stage_command(const Envelope& cause, std::string_view target, std::string_view type,
                     std::string payload, std::string correlation) override;
  void stage_one_command(const Envelope& cause, std::string_view target, std::string_view type,
                         std::string payload, std::string correlation);
  // Partitions: the key of a message for `owner` (its key field's value, "" if none),
  // and whether this instance applies a message of `type` (always, unpartitioned).
  std::string key_of(const ServiceSpec& owner, std::string_view type, std::string_view payload);
  bool owns(std::string_view type, std::string_view payload);
  // "PlaceOrder with key 'x' belongs to orders.2, not to orders.0" (the key cut at 128 bytes).
  std::string not_ours(std::string_view type, const std::string& key) const;

  // Tasks (tasks.cpp): timers from the node's thread or before run(); post from any thread.
  void add_timer(Clock::duration first, Clock::duration period, Task task);
  void post(Task task);

  // Handlers (messages.cpp), each checked against the topology (TopologyViolation).
  void add_event_handler(std::string_view type, EventHandler handler);
  void add_command_handler(std::string_view type, EventHandler handler);
  void add_query_handler(std::string_view type, QueryHandler handler);
  // The service's contract as its registrations declare it (Handlers::contract());
  // before run(). Throws TopologyViolation when its publishes differ from the topology's.
  void set_contract(schema::Contract contract);
  // Where a peer really is (tests with tcp://127.0.0.1:* ports); before run().
  void set_peer_endpoints(const std::string& service, const Endpoints& endpoints);

  const Endpoints& bound() const { return bound_; }
  const std::string& name() const { return name_; }
  const Metrics& counters() const { return metrics_; }
  ports::Store& store() { return *store_; }

 private:
  Topology topology_;
  const ServiceSpec* self_ = nullptr;
  std::string name_;
  NodeOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  Metrics metrics_;
  Endpoints bound_;

  std::map<std::string, EventHandler, std::less<>> event_handlers_;
  std::map<std::string, EventHandler, std::less<>> command_handlers_;
  std::map<std::string, QueryHandler, std::less<>> query_handlers_;

  std::shared_ptr<ports::Store> store_;
  schema::Contract contract_;
  std::string contract_text_;  // what $schema answers
  std::uint32_t schema_version(std::string_view type) const;

  // --- node_setup.cpp: sockets, store, binding, connections
  void open_store();
  void bind_all();
  void connect_all();
  void check_partition_files();
  void check_partition_count();
  void connect_downstream(const ServiceSpec& target);
  void open_subscription(Upstream& up);  // (re)opens its SUB and subscribes
  void open_replay(Upstream& up);        // (re)opens its DEALER for $replay
  void close_all() noexcept;
  zmq::socket_t make_socket(zmq::socket_type type);
  void start_monitors();
  void check_endpoints();

  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_ = nullptr;
  int lock_fd_ = -1;
  std::string lock_path_;
  int stop_fd_ = -1;
  zmq::socket_t pub_, pull_, router_;
  // zmq_socket_monitor of the three bound sockets: counted into metrics_.socket_events.
  transport::Monitors monitors_;
  IpcGuard ipc_guard_;
  std::vector<std::pair<std::string, zmq::socket_t*>> ipc_sockets_;
  std::string endpoint_error_;
  std::vector<std::unique_ptr<Upstream>> upstreams_;
  std::map<std::string, std::unique_ptr<Downstream>, std::less<>> downstreams_;
  std::uint64_t epoch_ = 0;  // this start's epoch of the store, carried by every event
  const std::string boot_ = new_id();  // this start of this node

  // --- reactor.cpp: the loop, batches and their unit of work, the relay
  std::size_t collect(std::vector<Incoming>& batch, std::size_t max);
  std::vector<const void*> drained_;  // collect(): sockets found empty in this call
  ports::Syncer* syncer_ = nullptr;   // set when the store's fsync is pipelined
  std::unique_ptr<SyncThread> sync_;
  int sync_fd_ = -1;                  // written by sync_ when a sync ends
  // What committed batches emitted, by the store's write count they wait for, with what
  // a heartbeat tells of them (head, acks if they moved).
  struct Held {
    std::uint64_t written = 0;
    std::vector<Outgoing> out;
    std::uint64_t head = 0;
    std::optional<std::map<std::string, std::uint64_t, std::less<>>> acks;
  };
  std::deque<Held> held_;
  bool acks_moved_ = false;  // the batch being committed moved command positions
  // What heartbeats say while syncs are pipelined: the head and acks made durable.
  std::uint64_t durable_head_ = 0;
  std::map<std::string, std::uint64_t, std::less<>> durable_acks_;
  void receive_bounded(zmq::socket_t& s, zmq::message_t first, Incoming& in);
  void process(std::vector<Incoming>& batch);
  // Sends what the batch emitted (batch_out_), or, while a sync is pending (pipelined
  // commit), holds it until a sync covers the batch.
  void relay();
  void send_now(std::vector<Outgoing>& outs);
  // --- pipelined.cpp: the pipelined commit. Starts the sync thread if the store defers
  // its fsync; holds what a batch emitted until a sync covers it.
  void start_sync();
  void hold_until_synced();
  // Sends what a completed sync has made durable; throws StoreError once a sync failed.
  void release_synced();
  // Waits until everything committed is durable and sent: before commands are resent
  // from the store, and at the end.
  void await_durable();
  void answer_queries_outside_batch(std::vector<Incoming>& batch);
  void store_works_again();
  void probe_store(Clock::time_point now);
  // Derives "ready"/"degraded" from what is wrong now (store, losses, stalls, endpoints).
  void refresh_state();

  // Staging of the message being handled, then of the whole batch.
  std::vector<Outgoing> message_out_;
  std::vector<Outgoing> batch_out_;
  Clock::time_point started_ = Clock::now();
  Clock::time_point next_heartbeat_{};
  Clock::time_point next_maintenance_{};
  Clock::time_point last_writes_{};  // last batch with a command, event or replay (or probe)
  bool reanswering_ = false;         // answering a failed batch's queries again
  std::string state_ = "starting";
  std::string store_error_;
  std::atomic<bool> stop_requested_{false};

  // --- streams.cpp: drives each publisher's core::InboundStream (events in order and
  // once, replays, verification, losses, stalls); this node's heartbeat.
  // `replayed`: from a $replay page whose answer the stream accepted.
  // `raw`: the message's frames as a dead letter keeps them (a replayed event's topic
  // frame is "$replayed "), copied only if it becomes one.
  void handle_event(Upstream& up, std::string_view env_bytes, std::string_view payload,
                    std::span<const std::string_view> raw, bool replayed = false);
  void handle_replay(Upstream& up, Incoming& in);
  void handle_heartbeat(Upstream* up, Incoming& in);
  // Carries out what the core asked: log lines, a saved identity, counted losses, state.
  void carry_out(Upstream* up, core::Effects& fx);
  void save_upstream(Upstream& up);
  void request_replays();
  void send_heartbeat();
  void notice_suspension(Clock::time_point now);

  bool commands_lost_ = false;     // a receiver's acks say commands were lost (LOSS)
  Clock::time_point last_turn_{};  // when the loop last woke
  core::Effects fx_;               // reused: what the core asked of the last call
  // Reused by process(): each stream's and outbox's mark at the start of the batch.
  std::vector<core::InboundStream::Mark> batch_start_marks_;
  std::vector<core::CommandOutbox::Mark> batch_start_acked_;

  // --- messages.cpp: handlers, commands, dead letters, staging
  void handle_command(Incoming& in);
  void apply(const Envelope& env, std::string_view payload, const EventHandler& handler,
             const char* endpoint, std::span<const std::string_view> raw);
  // The codec limits for `type`'s payload: max_message_bytes and the type's max_field_bytes.
  const codec::Limits& payload_limits(std::string_view type);
  // Throws OversizedMessage when frames of this size would be refused by a peer.
  void check_outgoing_size(std::string_view what, std::size_t bytes) const;
  // Throws OversizedMessage when an envelope of ours would be refused by its readers
  // (codec::envelope_over_limits).
  void check_outgoing_envelope(const Envelope& envelope, std::size_t encoded) const;
  // Keeps a rejected message. `mergeable`: the message was accepted and then refused
  // (not decodable, a handler said no), so a letter of the same message id is updated
  // rather than doubled; refusals at the door (forged source, over the limits) never merge.
  void dead_letter(const char* endpoint, const Envelope* env, const std::string& reason,
                   std::span<const std::string_view> raw, bool mergeable = false);
  void reject_frames(const char* endpoint, const std::string& reason,
                     std::span<const std::string_view> raw);
  void log_rejection(const std::string& line);
  // True if the topology routes commands from `source` to this service.
  bool sends_to_us(std::string_view source) const;
  // True if some service of the topology publishes, accepts or answers `type`.
  bool mesh_type(std::string_view type) const;
  void resend_commands();
  void prune();

  std::map<std::string, codec::Limits, std::less<>> payload_limits_;
  core::CommandInbox command_inbox_;  // each sender's position (sequenced commands)
  std::uint64_t rejections_logged_ = 0;

  // --- queries.cpp: the service's queries and the built-in ones
  void handle_query(Incoming& in);
  std::string answer_builtin(const Envelope& env, std::string_view payload, std::string& type,
                             std::vector<std::string>& extra_frames);
  std::string health_reply();
  std::string metrics_reply();
  std::string topology_reply();
  std::string schema_reply();
  std::string deadletters_reply(std::string_view payload, std::string& type);

  // --- security.cpp: CURVE, subscriptions and mirrors, sources, rate limits
  void setup_curve();
  void secure_server(zmq::socket_t& s, const char* endpoint);
  void secure_client(zmq::socket_t& s, const std::string& service);
  void collect_refusals();
  void on_subscription(const zmq::message_t& msg);
  // Mirrors one message to subscribed taps (never blocks: a slow tap loses mirrors,
  // which it detects from the mirror sequence).
  void mirror(std::string_view what, std::string_view envelope, std::string_view payload);
  // The CURVE identity (ZAP User-Id) a received frame came from; nullptr when security
  // is off or the peer is in this process (inproc).
  const char* user_of(const zmq::message_t& frame) const;
  bool source_forged(const Envelope& env, const char* user, std::string& why) const;
  void rate_limited(const char* user, const char* what);
  std::string builtin_refusal(std::string_view type, std::string_view payload, const zmq::message_t& envelope_frame,
                              bool count);

  // CURVE: this service's key pair, the public keys of the services it connects to,
  // and the context's ZAP authority holding this service's allow-lists.
  transport::CurveKeys keys_;
  std::map<std::string, std::string> server_keys_;  // service -> public key
  std::shared_ptr<ZapAuthority> zap_;
  std::set<std::string> refused_logged_;  // domain + key, so each is logged once
  std::set<std::string> event_readers_;   // identities admitted on our events (CURVE)
  std::set<std::string> command_senders_;  // ... and on our commands
  static constexpr std::size_t kMaxLoggedKeys = 1000;
  std::uint64_t mirror_sequence_ = 0;
  std::uint64_t refused_taps_ = 0;  // "$tap " subscriptions refused and not yet gone
  RateLimits rate_limits_;
  std::set<std::string> rate_logged_;

  // --- tasks.cpp: timers and posted tasks
  void take_tasks(std::vector<Incoming>& batch, Clock::time_point now, bool woken);
  void run_task(Incoming& in);
  Clock::time_point next_timer() const;
  std::vector<Timer> timers_;
  bool running_ = false;  // timers added before run() count from its start
  int post_fd_ = -1;
  std::mutex posted_mutex_;
  std::deque<Task> posted_;
  std::atomic<bool> has_posted_{false};
};

}  // namespace troupe::detail
