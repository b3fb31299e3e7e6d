// A mesh at rest, for any mesh: every subscriber has applied its publisher's head, and
// what each service holds that a person should look at (dead letters, flagged streams).
// `troupe settle` prints it; an example's own checks (the shop's verify) wait on it first.
#pragma once

#include <troupe/runtime/client.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace troupe::tools {

struct Settled {
  // Every stream at its publisher's head, on two clean looks with the same heads three
  // heartbeats apart. A stream behind retention or head regressed does not hold this
  // back (waiting does not move it): it is a finding. A stalled one is waited on.
  bool settled = false;
  std::string why;       // when not settled: what was still moving or not answering
  // One object per service (instance) from its last $health and $metrics:
  // {"service", "state", "head", "dead_letters", "gaps_seen", "gaps_repaired",
  //  "upstreams": [{"publisher", "position", "head", "lag", "behind_retention",
  //  "head_regressed", "stalled"}]}; {"service", "reachable": false, "error"} when it
  // did not answer.
  nlohmann::json services = nlohmann::json::array();
};

// Looks at every service of `topology` every `poll` until the mesh is at rest or
// `timeout` passes, waiting at most `ask` for each answer. A stream's head is its publisher's own $health head, not what the
// subscriber believes it to be: a subscriber that never heard of an event is not at rest.
Settled settle(Client& client, const Topology& topology, std::chrono::milliseconds timeout,
               std::chrono::milliseconds ask = std::chrono::milliseconds(1000),
               std::chrono::milliseconds poll = std::chrono::milliseconds(100));

// What a settled mesh still holds that is wrong: dead letters, and streams flagged
// behind retention, head regressed or stalled. [{"kind", "service", "text"}], kinds
// "dead_letters", "behind_retention", "head_regressed", "stalled".
nlohmann::json findings(const Settled& settled);

}  // namespace troupe::tools
