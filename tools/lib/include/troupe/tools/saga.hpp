// One saga as the tools show it: its events from every service's outbox ($trace), and
// where it waits — an event that a service reacting to its type has not applied yet
// (by that service's $health positions). `troupe trace` prints it as a tree; the HTTP
// gateway serves it as JSON and its dashboard lists the sagas stuck that way.
#pragma once

#include <troupe/domain/envelope.hpp>
#include <troupe/domain/topology.hpp>
#include <troupe/runtime/client.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace troupe::tools {

struct SagaEvent {
  Envelope env;
  nlohmann::json data;
};

// What each service has applied of each publisher's stream (its $health "upstreams"). A
// service that is not in the map did not answer.
using Applied = std::map<std::string, std::uint64_t>;  // publisher -> position
using Positions = std::map<std::string, Applied>;      // service -> ...
Applied applied_from_health(const nlohmann::json& health);

// A service that reacts to an event's type and has not applied it.
struct Wait {
  std::string service, publisher, type, correlation;
  std::uint64_t sequence = 0;
  std::optional<std::uint64_t> position;  // what `service` has applied of `publisher`; none: not answering
  double waited_s = 0;                    // since the event's time; negative under clock skew
  // "payments has not reacted to StockReserved #12 (it has applied inventory up to #10)"
  std::string text() const;
  // "waiting 3.2 s: " + text()
  std::string line() const;
  nlohmann::json json() const;
};

// The services whose reacts_to names `type` of `publisher`, in topology order.
std::vector<std::string> reactors(const Topology& topology, const std::string& publisher, const std::string& type);

// Every (event, reacting service) pair of `events` not yet applied, oldest event first.
std::vector<Wait> waits(const Topology& topology, const std::vector<SagaEvent>& events, const Positions& positions,
                        std::int64_t now_us);

// "failure" for a step that turns a saga back (…Declined, …Rejected, …Failed),
// "compensation" for one that undoes earlier work (…Cancelled, …Released, …Refunded),
// "" otherwise (docs/operations.md).
const char* mark(const std::string& type);

struct Saga {
  std::string id;
  std::vector<SagaEvent> events;        // by time
  std::vector<std::string> unreachable;  // services that did not answer $trace
  Positions positions;
};

// Asks every service of the topology for the saga's events ($trace) and positions
// ($health); `timeout` per service.
Saga collect_saga(Client& client, const std::string& id, std::chrono::milliseconds timeout);

// The saga as JSON: its events as CloudEvents (each with "hopms" from its cause, or
// "clockskew": true, and "mark"), where it waits, and its outcome when it waits nowhere.
nlohmann::json saga_json(const Topology& topology, const Saga& saga, std::int64_t now_us);

// The head of `service`'s outbox (an empty $replay answers with it), or 0.
std::uint64_t outbox_head(Client& client, const std::string& service, std::chrono::milliseconds timeout);

// Reads `service`'s outbox from sequence `from` up to its head, until `deadline`, for
// the first event caused by command `id`, as a CloudEvent; `from` moves past what was
// read. A refusal (this identity may not read the outbox) is the error.
Result<std::optional<nlohmann::json>> caused_in_outbox(Client& client, const std::string& service,
                                                       std::uint64_t& from, const std::string& id,
                                                       std::chrono::steady_clock::time_point deadline);

}  // namespace troupe::tools
