// NodeCore: the node's private machinery — sockets, reactor, unit of work, relay,
// replay, heartbeats. Internal to the runtime library.
#pragma once

#include <troupe/domain/id.hpp>
#include <troupe/runtime/builtin.hpp>
#include <troupe/runtime/metrics.hpp>
#include <troupe/runtime/node.hpp>

#include "zap.hpp"

#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

namespace troupe::detail {

using Clock = std::chrono::steady_clock;
using Frames = std::vector<zmq::message_t>;

// Where rejections of a type the mesh does not know are counted in $metrics.
inline constexpr std::string_view kUnknownType = "$unknown";

std::string_view view(const zmq::message_t& m);

// A publisher this node reacts to.
struct Upstream {
  std::string name;
  Endpoints endpoints;
  std::set<std::string, std::less<>> reacts;  // types with a handler here
  zmq::socket_t sub;
  zmq::socket_t dealer;  // replay requests
  std::uint64_t position = 0;    // last sequence applied (mirrors the store inside a batch)
  std::uint64_t known_head = 0;  // highest sequence the publisher is known to have
  std::string incarnation;
  std::string boot;  // the publisher process we last heard from
  bool replay_in_flight = false;
  bool initial_replay_pending = true;  // catch up from our position once connected
  std::string replay_id;
  Clock::time_point replay_sent{};
  bool in_gap = false;
  // Nothing is applied from a publisher until it has said who it is (heartbeat or
  // replay reply) and that matched what our position refers to.
  bool verified = false;
  bool behind_retention = false;
  bool head_regressed = false;
};

// A service this node sends commands to.
struct Downstream {
  std::string name;
  Endpoints endpoints;
  zmq::socket_t push;
  zmq::socket_t heartbeats;  // its XPUB, heartbeats only (acks)
  std::uint64_t acked = 0;
  Clock::time_point last_progress = Clock::now();  // when `acked` last moved (or we resent)
};

// A message waiting to be sent after commit.
struct Outgoing {
  enum class To { events, command, reply } to = To::events;
  std::string target;  // command target
  std::vector<std::string> frames;
};

struct Incoming {
  enum class From { command, query, event, replay, heartbeat } from = From::command;
  Upstream* upstream = nullptr;
  Frames frames;
  // A query is answered again when its batch could not be committed: whether its first
  // answer got as far as counting it handled or rejected (a store error can stop it).
  bool finished = false;
};

class NodeCore {
 public:
  NodeCore(Topology topology, std::string service, NodeOptions options);
  ~NodeCore();

  void run();
  void stop() noexcept;

  // Called by Context while a handler runs.
  void stage_event(const Envelope& cause, std::string_view type, std::string payload,
                   std::string correlation);
  void stage_command(const Envelope& cause, std::string_view target, std::string_view type,
                     std::string payload, std::string correlation);

  Topology topology_;
  const ServiceSpec* self_ = nullptr;
  std::string name_;
  NodeOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  NodeCounters counters_;
  Metrics metrics_;
  Endpoints bound_;

  std::map<std::string, EventHandler, std::less<>> event_handlers_;
  std::map<std::string, EventHandler, std::less<>> command_handlers_;
  std::map<std::string, QueryHandler, std::less<>> query_handlers_;

  std::shared_ptr<ports::Store> store_;

 private:
  void open_store();
  void bind_all();
  void connect_all();
  void close_all() noexcept;
  zmq::socket_t make_socket(zmq::socket_type type);

  std::size_t collect(std::vector<Incoming>& batch, std::size_t max);
  void process(std::vector<Incoming>& batch);
  void relay();
  void answer_queries_outside_batch(std::vector<Incoming>& batch);
  void store_works_again();
  std::string builtin_refusal(std::string_view type, std::string_view payload, const zmq::message_t& envelope_frame,
                              bool count);
  void probe_store(Clock::time_point now);

  void on_subscription(const zmq::message_t& msg);
  void handle_command(Incoming& in);
  void handle_query(Incoming& in);
  void handle_event(Upstream& up, std::string_view env_bytes, std::string_view payload,
                    const std::vector<std::string_view>& raw);
  void handle_replay(Upstream& up, Incoming& in);
  void handle_heartbeat(Upstream* up, Incoming& in);
  // Compares what a publisher says of itself (heartbeat, replay reply) with what this
  // service remembers; a replaced store or lost commits stop that stream loudly.
  void check_publisher(Upstream& up, const std::string& incarnation, const std::string& boot,
                       std::uint64_t head, bool durable);
  const std::string boot_ = new_id();  // this start of this node
  void apply(const Envelope& env, std::string_view payload, const EventHandler& handler,
             const char* endpoint, const std::vector<std::string_view>& raw);
  void dead_letter(const char* endpoint, const Envelope* env, const std::string& reason,
                   const std::vector<std::string_view>& raw);
  void reject_frames(const char* endpoint, const std::string& reason,
                     const std::vector<std::string_view>& raw);
  // True if the topology routes commands from `source` to this service.
  bool sends_to_us(std::string_view source) const;
  // True if some service of the topology publishes, accepts or answers `type`.
  bool mesh_type(std::string_view type) const;

  std::string answer_builtin(const Envelope& env, std::string_view payload, std::string& type,
                             std::vector<std::string>& extra_frames);
  std::string health_reply();
  std::string metrics_reply();
  std::string topology_reply();
  std::string deadletters_reply(std::string_view payload, std::string& type);

  void request_replays();
  void send_heartbeat();
  void resend_commands();
  void prune();
  void log_rejection(const std::string& line);
  // Mirrors one message to subscribed taps (never blocks: a slow tap loses mirrors,
  // which it detects from the mirror sequence).
  void mirror(std::string_view what, std::string_view envelope, std::string_view payload);
  std::uint64_t mirror_sequence_ = 0;

  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_ = nullptr;
  // CURVE: this service's key pair, the public keys of the services it connects to,
  // and the context's ZAP authority holding this service's allow-lists.
  std::string secret_key_, public_key_;
  std::map<std::string, std::string> server_keys_;  // service -> public key
  std::shared_ptr<detail::ZapAuthority> zap_;
  std::set<std::string> refused_logged_;  // domain + key, so each is logged once
  std::set<std::string> event_readers_;   // identities admitted on our events (CURVE)
  std::set<std::string> command_senders_;  // ... and on our commands
  static constexpr std::size_t kMaxLoggedKeys = 1000;
  void setup_curve();
  void secure_server(zmq::socket_t& s, const char* endpoint);
  void secure_client(zmq::socket_t& s, const std::string& service);
  void collect_refusals();
  int lock_fd_ = -1;
  int stop_fd_ = -1;
  zmq::socket_t pub_, pull_, router_;
  // zmq_socket_monitor of the three bound sockets: counted into metrics_.socket_events.
  std::vector<zmq::socket_t> monitors_;
  void start_monitors();
  void drain_monitor(zmq::socket_t& monitor);
  std::vector<std::unique_ptr<Upstream>> upstreams_;
  std::map<std::string, std::unique_ptr<Downstream>, std::less<>> downstreams_;

  // Staging of the message being handled, then of the whole batch.
  std::vector<Outgoing> message_out_;
  std::vector<Outgoing> batch_out_;
  std::vector<std::pair<std::string, std::uint64_t>> staged_commands_;  // target, seq
  std::map<std::string, std::uint64_t> command_positions_;  // sender -> last applied

  Clock::time_point started_ = Clock::now();
  Clock::time_point next_heartbeat_{};
  Clock::time_point next_maintenance_{};
  Clock::time_point last_writes_{};  // last batch with a command, event or replay (or probe)
  bool reanswering_ = false;         // answering a failed batch's queries again
  std::string state_ = "starting";
  std::string store_error_;
  bool commands_lost_ = false;  // a receiver's acks went backwards (reported as LOSS)
  std::uint64_t rejections_logged_ = 0;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace troupe::detail
