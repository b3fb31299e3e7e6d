// troupe's own messages on the wire (docs/protocol.md §7): heartbeats, replay, errors,
// and the typed requests and replies of the built-in queries.
// Their type names start with '$', which application types may not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <troupe/domain/message.hpp>

namespace troupe::builtin {

inline constexpr std::string_view kHeartbeatTopic = "$heartbeat ";
// Taps subscribe to this topic; while one does, the node mirrors what it handles:
// [$tap ][mirror envelope][original envelope][original payload] (docs/protocol.md §7.6).
inline constexpr std::string_view kTapTopic = "$tap ";
inline constexpr std::string_view kHealth = "$health";
inline constexpr std::string_view kMetrics = "$metrics";
inline constexpr std::string_view kTopology = "$topology";
inline constexpr std::string_view kReplay = "$replay";
inline constexpr std::string_view kDeadLetters = "$deadletters";
inline constexpr std::string_view kError = "$error";
inline constexpr std::string_view kTrace = "$trace";
inline constexpr std::string_view kSeen = "$seen";
inline constexpr std::string_view kSchema = "$schema";

// Published on the events socket every heartbeat interval (topic "$heartbeat ").
struct Heartbeat {
  std::string service;
  std::string incarnation;
  std::string boot;          // new each time the node starts
  std::uint64_t head = 0;    // last event sequence committed
  std::uint64_t oldest = 0;  // oldest event still retained for replay
  bool durable = true;
  std::map<std::string, std::uint64_t> acks;  // command sender -> last command applied
  std::optional<std::uint64_t> epoch;  // the epoch its new events carry (absent: a node without epochs)
  static constexpr std::string_view kType = "$heartbeat";
  static constexpr auto fields() {
    using Self = Heartbeat;
    return std::tuple{TROUPE_DETAIL_FIELD(service), TROUPE_DETAIL_FIELD(incarnation),
                      TROUPE_DETAIL_FIELD(boot),    TROUPE_DETAIL_FIELD(head),
                      TROUPE_DETAIL_FIELD(oldest),  TROUPE_DETAIL_FIELD(durable),
                      TROUPE_DETAIL_FIELD(acks),    TROUPE_DETAIL_FIELD(epoch)};
  }
};

// $replay query: events with from <= sequence <= to, at most max per reply.
struct ReplayRequest {
  std::uint64_t from = 1;
  std::uint64_t to = UINT64_MAX;
  std::uint32_t max = 512;
  static constexpr std::string_view kType = "$replay";
  static constexpr auto fields() {
    using Self = ReplayRequest;
    return std::tuple{TROUPE_DETAIL_DEFAULTED(from), TROUPE_DETAIL_DEFAULTED(to), TROUPE_DETAIL_DEFAULTED(max)};
  }
};

// $replay reply payload; the events follow as (envelope, payload) frame pairs.
struct ReplayReply {
  std::uint64_t head = 0;
  std::uint64_t oldest = 0;
  std::uint32_t count = 0;
  std::string incarnation;
  std::string boot;
  bool durable = true;
  std::optional<std::uint64_t> epoch;          // the publisher's current epoch
  std::optional<std::uint64_t> epoch_of_from;  // the epoch that wrote event from-1 (0: none)
  static constexpr std::string_view kType = "$replay";
  static constexpr auto fields() {
    using Self = ReplayReply;
    return std::tuple{TROUPE_DETAIL_FIELD(head), TROUPE_DETAIL_FIELD(oldest), TROUPE_DETAIL_FIELD(count),
                      TROUPE_DETAIL_FIELD(incarnation), TROUPE_DETAIL_FIELD(boot),
                      TROUPE_DETAIL_FIELD(durable), TROUPE_DETAIL_FIELD(epoch),
                      TROUPE_DETAIL_FIELD(epoch_of_from)};
  }
};

// The reply to a query that could not be answered.
struct Error {
  std::string error;
  static constexpr std::string_view kType = "$error";
  static constexpr auto fields() {
    using Self = Error;
    return std::tuple{TROUPE_DETAIL_FIELD(error)};
  }
};

// $deadletters query: op is "list", "show" or "retry".
struct DeadLettersRequest {
  std::string op = "list";
  std::int64_t id = 0;
  std::uint32_t max = 100;
  static constexpr std::string_view kType = "$deadletters";
  static constexpr auto fields() {
    using Self = DeadLettersRequest;
    return std::tuple{TROUPE_DETAIL_DEFAULTED(op), TROUPE_DETAIL_DEFAULTED(id), TROUPE_DETAIL_DEFAULTED(max)};
  }
};

// $trace query: the retained events of one saga; the reply's payload is
// {"count": n} and the events follow as (envelope, payload) frame pairs, as in $replay.
struct TraceRequest {
  std::string correlationid;
  std::uint32_t max = 1000;
  static constexpr std::string_view kType = "$trace";
  static constexpr auto fields() {
    using Self = TraceRequest;
    return std::tuple{TROUPE_DETAIL_FIELD(correlationid), TROUPE_DETAIL_DEFAULTED(max)};
  }
};

// $seen query: which of these one-shot command ids has the service applied (committed)?
struct SeenRequest {
  std::vector<std::string> ids;
  static constexpr std::string_view kType = "$seen";
  static constexpr auto fields() {
    using Self = SeenRequest;
    return std::tuple{TROUPE_DETAIL_FIELD(ids)};
  }
};
// Most ids one $seen may ask about (a bigger request is answered $error), and the
// longest refusal reason kept per id (longer ones are cut): a peer cannot make a node
// build a big answer. 1000 outcomes of UUIDs with full reasons are about 300 KB; a
// reply over the mesh's max_message_bytes is answered $error like any other.
inline constexpr std::size_t kMaxSeenIds = 1000;
inline constexpr std::size_t kMaxRefusalBytes = 256;

// What became of one command id: "applied", "refused" (with the reason its dead letter
// gave), or "unseen" (not arrived yet, or forgotten after retention_command_ids).
struct SeenOutcome {
  std::string id;
  std::string state;
  std::optional<std::string> reason;
  static constexpr std::string_view kType = "$seen";
  static constexpr auto fields() {
    using Self = SeenOutcome;
    return std::tuple{TROUPE_DETAIL_FIELD(id), TROUPE_DETAIL_FIELD(state), TROUPE_DETAIL_FIELD(reason)};
  }
};
struct SeenReply {
  std::vector<bool> seen;  // handled (applied or refused), in the order asked
  std::optional<std::vector<SeenOutcome>> outcomes;  // the same, said in full (absent from 0.1.0 nodes before it)
  static constexpr std::string_view kType = "$seen";
  static constexpr auto fields() {
    using Self = SeenReply;
    return std::tuple{TROUPE_DETAIL_FIELD(seen), TROUPE_DETAIL_FIELD(outcomes)};
  }
};

// $health reply (docs/protocol.md §7.4), per publisher this node reacts to.
struct UpstreamHealth {
  std::string publisher;
  std::uint64_t position = 0;    // last event applied
  std::uint64_t known_head = 0;  // highest sequence the publisher is known to have
  std::uint64_t lag = 0;
  bool behind_retention = false;  // stopped: it no longer keeps what was not applied (LOSS:)
  bool head_regressed = false;    // stopped: its history is not the one applied (LOSS:)
  bool stalled = false;           // replays go unanswered while it lives
  static constexpr std::string_view kType = "$health.upstream";
  static constexpr auto fields() {
    using Self = UpstreamHealth;
    return std::tuple{TROUPE_DETAIL_FIELD(publisher),        TROUPE_DETAIL_FIELD(position),
                      TROUPE_DETAIL_FIELD(known_head),       TROUPE_DETAIL_FIELD(lag),
                      TROUPE_DETAIL_FIELD(behind_retention), TROUPE_DETAIL_FIELD(head_regressed),
                      TROUPE_DETAIL_FIELD(stalled)};
  }
};

struct Health {
  std::string service;
  std::string version;
  std::string incarnation;
  double uptime_s = 0;
  std::string state;  // "starting", "ready", "degraded", "stopping"
  bool durable = true;
  std::uint64_t head = 0;
  std::uint64_t oldest = 0;
  std::uint64_t subscriptions = 0;
  std::uint64_t dead_letters = 0;
  std::optional<std::string> store_error;     // while writes fail
  std::optional<std::string> endpoint_error;  // another process took one of its ipc paths
  std::vector<UpstreamHealth> upstreams;
  static constexpr std::string_view kType = "$health";
  static constexpr auto fields() {
    using Self = Health;
    return std::tuple{TROUPE_DETAIL_FIELD(service),       TROUPE_DETAIL_FIELD(version),
                      TROUPE_DETAIL_FIELD(incarnation),   TROUPE_DETAIL_FIELD(uptime_s),
                      TROUPE_DETAIL_FIELD(state),         TROUPE_DETAIL_FIELD(durable),
                      TROUPE_DETAIL_FIELD(head),          TROUPE_DETAIL_FIELD(oldest),
                      TROUPE_DETAIL_FIELD(subscriptions), TROUPE_DETAIL_FIELD(dead_letters),
                      TROUPE_DETAIL_FIELD(store_error),   TROUPE_DETAIL_FIELD(endpoint_error),
                      TROUPE_DETAIL_FIELD(upstreams)};
  }
};

// The $health query: `client.query(service, builtin::HealthQuery{})` gives a Health.
struct HealthQuery {
  using Reply = Health;
  static constexpr std::string_view kType = "$health";
  static constexpr auto fields() { return std::tuple{}; }
};

// $metrics reply (docs/protocol.md §7.5). A histogram's buckets are [upper bound in
// microseconds (or "+Inf"), count] pairs, in order.
struct HistogramReply {
  std::uint64_t count = 0, sum = 0, max = 0, p50 = 0, p99 = 0;
  std::vector<std::pair<std::variant<std::uint64_t, std::string>, std::uint64_t>> buckets;
  static constexpr std::string_view kType = "$metrics.histogram";
  static constexpr auto fields() {
    using Self = HistogramReply;
    return std::tuple{TROUPE_DETAIL_FIELD(count), TROUPE_DETAIL_FIELD(sum), TROUPE_DETAIL_FIELD(max),
                      TROUPE_DETAIL_FIELD(p50),   TROUPE_DETAIL_FIELD(p99), TROUPE_DETAIL_FIELD(buckets)};
  }
};

struct TypeMetricsReply {
  std::uint64_t received = 0, handled = 0, rejected = 0, published = 0;
  HistogramReply latency_us;
  static constexpr std::string_view kType = "$metrics.type";
  static constexpr auto fields() {
    using Self = TypeMetricsReply;
    return std::tuple{TROUPE_DETAIL_FIELD(received), TROUPE_DETAIL_FIELD(handled), TROUPE_DETAIL_FIELD(rejected),
                      TROUPE_DETAIL_FIELD(published), TROUPE_DETAIL_FIELD(latency_us)};
  }
};

struct MetricsReply {
  std::string service;
  std::map<std::string, TypeMetricsReply> types;  // per message type; "$unknown" for types no service knows
  HistogramReply batch_size, commit_us;
  // queue_us: a message's receipt to its handler's start; store_commit_us: the commit
  // alone; relay_us: sending what a batch emitted. Absent from older peers' replies.
  HistogramReply queue_us, store_commit_us, relay_us;
  // store_sync_us: each fsync of a pipelined commit (empty where commits fsync inline).
  HistogramReply store_sync_us;
  // Delivery.
  std::uint64_t replays_requested = 0, replays_served = 0, gaps_seen = 0, gaps_repaired = 0, duplicates = 0,
                dead_letters = 0, rejected_frames = 0, commands_resent = 0, commands_out_of_order = 0,
                store_failures = 0, events_lost = 0;
  // What peers sent past the limits, and what this node would not send.
  std::uint64_t oversized_refused = 0, oversized_received = 0, connections_renewed = 0, tasks_failed = 0,
                subscriptions_ignored = 0, dead_letters_evicted = 0;
  std::map<std::string, std::uint64_t> rate_limited;  // "queries", "commands"
  // The events socket and its readers.
  std::uint64_t published = 0, subscriptions = 0, taps = 0, mirrored = 0;
  std::map<std::string, std::uint64_t> socket_events;  // "accepted", "disconnected", ...
  std::map<std::string, std::uint64_t> auth_refused;   // CURVE: per endpoint, "tap", "builtin", "source"
  static constexpr std::string_view kType = "$metrics";
  static constexpr auto fields() {
    using Self = MetricsReply;
    return std::tuple{TROUPE_DETAIL_FIELD(service),
                      TROUPE_DETAIL_FIELD(types),
                      TROUPE_DETAIL_FIELD(batch_size),
                      TROUPE_DETAIL_FIELD(commit_us),
                      TROUPE_DETAIL_DEFAULTED(queue_us),
                      TROUPE_DETAIL_DEFAULTED(store_commit_us),
                      TROUPE_DETAIL_DEFAULTED(relay_us),
                      TROUPE_DETAIL_DEFAULTED(store_sync_us),
                      TROUPE_DETAIL_FIELD(replays_requested),
                      TROUPE_DETAIL_FIELD(replays_served),
                      TROUPE_DETAIL_FIELD(gaps_seen),
                      TROUPE_DETAIL_FIELD(gaps_repaired),
                      TROUPE_DETAIL_FIELD(duplicates),
                      TROUPE_DETAIL_FIELD(dead_letters),
                      TROUPE_DETAIL_FIELD(rejected_frames),
                      TROUPE_DETAIL_FIELD(commands_resent),
                      TROUPE_DETAIL_FIELD(commands_out_of_order),
                      TROUPE_DETAIL_FIELD(store_failures),
                      TROUPE_DETAIL_FIELD(events_lost),
                      TROUPE_DETAIL_FIELD(oversized_refused),
                      TROUPE_DETAIL_FIELD(oversized_received),
                      TROUPE_DETAIL_FIELD(connections_renewed),
                      TROUPE_DETAIL_FIELD(tasks_failed),
                      TROUPE_DETAIL_FIELD(subscriptions_ignored),
                      TROUPE_DETAIL_FIELD(dead_letters_evicted),
                      TROUPE_DETAIL_FIELD(rate_limited),
                      TROUPE_DETAIL_FIELD(published),
                      TROUPE_DETAIL_FIELD(subscriptions),
                      TROUPE_DETAIL_FIELD(taps),
                      TROUPE_DETAIL_FIELD(mirrored),
                      TROUPE_DETAIL_FIELD(socket_events),
                      TROUPE_DETAIL_FIELD(auth_refused)};
  }
};

// The $metrics query: `client.query(service, builtin::MetricsQuery{})` gives a MetricsReply.
struct MetricsQuery {
  using Reply = MetricsReply;
  static constexpr std::string_view kType = "$metrics";
  static constexpr auto fields() { return std::tuple{}; }
};

// $deadletters replies. A letter as listed, and as shown (with its frames, each cut to
// its share of the reply's size, `truncated` then set).
struct DeadLetterInfo {
  std::int64_t id = 0;
  std::string time, first_time, endpoint, source, type, reason;
  std::uint32_t attempts = 1;
  std::uint64_t frames = 0;
  std::optional<std::vector<Bytes>> raw;  // "show" only
  std::optional<bool> truncated;          // "show", when a frame was cut
  static constexpr std::string_view kType = "$deadletters.letter";
  static constexpr auto fields() {
    using Self = DeadLetterInfo;
    return std::tuple{TROUPE_DETAIL_FIELD(id),       TROUPE_DETAIL_FIELD(time),     TROUPE_DETAIL_FIELD(first_time),
                      TROUPE_DETAIL_FIELD(endpoint), TROUPE_DETAIL_FIELD(source),   TROUPE_DETAIL_FIELD(type),
                      TROUPE_DETAIL_FIELD(reason),   TROUPE_DETAIL_FIELD(attempts), TROUPE_DETAIL_FIELD(frames),
                      TROUPE_DETAIL_FIELD(raw),      TROUPE_DETAIL_FIELD(truncated)};
  }
};

struct DeadLetterList {
  std::uint64_t count = 0;  // all kept, however many are listed
  std::vector<DeadLetterInfo> letters;
  static constexpr std::string_view kType = "$deadletters";
  static constexpr auto fields() {
    using Self = DeadLetterList;
    return std::tuple{TROUPE_DETAIL_FIELD(count), TROUPE_DETAIL_FIELD(letters)};
  }
};

struct DeadLetterRetried {
  std::int64_t id = 0;
  bool retried = true;
  bool ok = false;  // the handler took it this time (the letter is gone)
  std::uint32_t attempts = 0;
  static constexpr std::string_view kType = "$deadletters";
  static constexpr auto fields() {
    using Self = DeadLetterRetried;
    return std::tuple{TROUPE_DETAIL_FIELD(id), TROUPE_DETAIL_FIELD(retried), TROUPE_DETAIL_FIELD(ok),
                      TROUPE_DETAIL_FIELD(attempts)};
  }
};

// The three $deadletters queries as a Client asks them (each a DeadLettersRequest on
// the wire): `client.query(service, builtin::ListDeadLetters{})`, ...
// (Each carries all three fields of the request, as nodes before these structs require.)
struct ListDeadLetters {
  std::string op = "list";
  std::int64_t id = 0;
  std::uint32_t max = 100;
  using Reply = DeadLetterList;
  static constexpr std::string_view kType = "$deadletters";
  static constexpr auto fields() {
    using Self = ListDeadLetters;
    return std::tuple{TROUPE_DETAIL_FIELD(op), TROUPE_DETAIL_FIELD(id), TROUPE_DETAIL_FIELD(max)};
  }
};
struct ShowDeadLetter {
  std::string op = "show";
  std::int64_t id = 0;
  std::uint32_t max = 1;
  using Reply = DeadLetterInfo;
  static constexpr std::string_view kType = "$deadletters";
  static constexpr auto fields() {
    using Self = ShowDeadLetter;
    return std::tuple{TROUPE_DETAIL_FIELD(op), TROUPE_DETAIL_FIELD(id), TROUPE_DETAIL_FIELD(max)};
  }
};
struct RetryDeadLetter {
  std::string op = "retry";
  std::int64_t id = 0;
  std::uint32_t max = 1;
  using Reply = DeadLetterRetried;
  static constexpr std::string_view kType = "$deadletters";
  static constexpr auto fields() {
    using Self = RetryDeadLetter;
    return std::tuple{TROUPE_DETAIL_FIELD(op), TROUPE_DETAIL_FIELD(id), TROUPE_DETAIL_FIELD(max)};
  }
};

// $topology reply: what the node believes of itself.
struct TopologyReply {
  std::string mesh, file, service;
  std::map<std::string, std::string> endpoints;  // "events", "commands", "queries", as bound
  std::vector<std::string> publishes, accepts, answers;
  std::map<std::string, std::vector<std::string>> reacts_to;  // publisher -> types
  std::map<std::string, std::vector<std::string>> sends;      // target -> command types
  std::uint64_t heartbeat_ms = 0;
  std::string durability;  // "durable" or "memory"
  static constexpr std::string_view kType = "$topology";
  static constexpr auto fields() {
    using Self = TopologyReply;
    return std::tuple{TROUPE_DETAIL_FIELD(mesh),      TROUPE_DETAIL_FIELD(file),       TROUPE_DETAIL_FIELD(service),
                      TROUPE_DETAIL_FIELD(endpoints), TROUPE_DETAIL_FIELD(publishes),  TROUPE_DETAIL_FIELD(accepts),
                      TROUPE_DETAIL_FIELD(answers),   TROUPE_DETAIL_FIELD(reacts_to),  TROUPE_DETAIL_FIELD(sends),
                      TROUPE_DETAIL_FIELD(heartbeat_ms), TROUPE_DETAIL_FIELD(durability)};
  }
};
struct TopologyQuery {
  using Reply = TopologyReply;
  static constexpr std::string_view kType = "$topology";
  static constexpr auto fields() { return std::tuple{}; }
};

// $schema: the service's contract as this build speaks it (docs/protocol.md §7.8).
// `contract` is a JSON document: the schema of every message the service publishes,
// accepts, answers and reads (troupe/adapters/json/contract.hpp reads it back).
struct SchemaReply {
  std::string service;
  std::string build;     // troupe's version
  std::string contract;  // JSON
  static constexpr std::string_view kType = "$schema";
  static constexpr auto fields() {
    using Self = SchemaReply;
    return std::tuple{TROUPE_DETAIL_FIELD(service), TROUPE_DETAIL_FIELD(build), TROUPE_DETAIL_FIELD(contract)};
  }
};
struct SchemaQuery {
  using Reply = SchemaReply;
  static constexpr std::string_view kType = "$schema";
  static constexpr auto fields() { return std::tuple{}; }
};

// $trace reply payload; the saga's events follow as (envelope, payload) frame pairs.
struct TraceReply {
  std::uint64_t count = 0;
  static constexpr std::string_view kType = "$trace";
  static constexpr auto fields() {
    using Self = TraceReply;
    return std::tuple{TROUPE_DETAIL_FIELD(count)};
  }
};

// The $seen query as a Client asks it.
struct SeenQuery {
  std::vector<std::string> ids;
  using Reply = SeenReply;
  static constexpr std::string_view kType = "$seen";
  static constexpr auto fields() {
    using Self = SeenQuery;
    return std::tuple{TROUPE_DETAIL_FIELD(ids)};
  }
};

}  // namespace troupe::builtin
