// `troupe shop`: the shop's own commands (load, verify), found by `troupe` as the
// troupe-shop executable. The shop as seen from outside: every order, reservation,
// payment and shipment, fetched page by page with the services' own queries.
#pragma once

#include "../invariants.hpp"

#include <troupe/runtime/client.hpp>
#include <troupe/tools/cli.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace troupe::cli {

// Fills `out`; returns the first error, if a service did not answer.
std::optional<std::string> snapshot(Client& client, shop::Snapshot& out);

int verify_shop(Client& client, const Topology& t, int settle_ms, bool quiet, bool as_json = false);

Runner add_load(CLI::App& app);
Runner add_verify(CLI::App& app);

}  // namespace troupe::cli
