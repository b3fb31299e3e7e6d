// The one main() of every shop service: options, topology, seed, node, signals.
// A service's own main.cpp only names itself and its install function.
#pragma once

#include "seed.hpp"

#include <troupe/runtime/node.hpp>

#include <functional>
#include <string>
#include <variant>

namespace shop {

// A service's handlers, installed on a node (or on anything else that drives them).
using Install = std::function<void(troupe::Handlers&, const Seed&)>;

struct Config {
  troupe::Topology topology;
  Seed seed;
  int partition = -1;  // --partition K, for one instance of a partitioned service
};

// Parses --topology/--state-dir/--help (getopt_long) and loads the topology and its seed
// file. With `contract` given, --partition and --contract are offered too; when
// --contract is set, nothing is loaded and the returned Config is empty.
// Returns the configuration, or the exit code to leave with (0 after --help, 2 for a
// bad topology or seed file, 64 for bad arguments), the reason already printed.
std::variant<Config, int> configure(int argc, char** argv, const std::string& name,
                                    const std::string& summary, const std::string& default_topology,
                                    bool* contract = nullptr);

// `--contract` prints the service's contract (the JSON `$schema` answers) and exits.
// Exit codes: 0 clean stop (SIGTERM/SIGINT), 1 broken environment (address in use,
// store unwritable, already running), 2 bad topology or seed file, 64 bad arguments.
int service_main(int argc, char** argv, const std::string& name, const std::string& summary,
                 const Install& install);

// The part of the seed one instance holds: a partitioned service keyed by "sku" (or
// "customer") starts with the SKUs (customers) it owns; any other, with all of it.
Seed seed_of(const Seed& seed, const troupe::ServiceSpec& instance);

// Loads the seed named by the topology ([mesh] seed, relative to the working directory).
troupe::Result<Seed> seed_for(const troupe::Topology& topology);

}  // namespace shop
