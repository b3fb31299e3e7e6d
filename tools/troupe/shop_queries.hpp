// The shop as seen from outside: every order, reservation, payment and shipment,
// fetched page by page with the services' own queries (for verify, load, chaos).
#pragma once

#include "../../services/shop/invariants.hpp"

#include <troupe/runtime/client.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace troupe::cli {

// Fills `out`; returns the first error, if a service did not answer.
std::optional<std::string> snapshot(Client& client, shop::Snapshot& out);

int verify_shop(Client& client, const Topology& t, int settle_ms, bool quiet, bool as_json = false);

}  // namespace troupe::cli
