// troupe's own messages on the wire (docs/protocol.md §7): heartbeats, replay, errors.
// Their type names start with '$', which application types may not.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
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
    return std::tuple{TROUPE_DETAIL_FIELD(from), TROUPE_DETAIL_FIELD(to), TROUPE_DETAIL_FIELD(max)};
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
    return std::tuple{TROUPE_DETAIL_FIELD(op), TROUPE_DETAIL_FIELD(id), TROUPE_DETAIL_FIELD(max)};
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
    return std::tuple{TROUPE_DETAIL_FIELD(correlationid), TROUPE_DETAIL_FIELD(max)};
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
struct SeenReply {
  std::vector<bool> seen;
  static constexpr std::string_view kType = "$seen";
  static constexpr auto fields() {
    using Self = SeenReply;
    return std::tuple{TROUPE_DETAIL_FIELD(seen)};
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

}  // namespace troupe::builtin
