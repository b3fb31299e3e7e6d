// What every troupe command-line tool shares — `troupe` and the commands it finds as
// troupe-NAME (the shop's `troupe shop`): options every subcommand takes, exit codes,
// parsing JSON arguments, and loading the topology once.
#pragma once

#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/domain/envelope.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/tools/mesh_json.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace troupe::cli {

// Exit codes (docs/operations.md): what a script can rely on.
enum Exit : int {
  kOk = 0,
  kFailed = 1,       // the check found errors, the service refused, invariants broken
  kUsage = 2,        // bad arguments or an unreadable topology
  kUnreachable = 3,  // a service did not answer in time
};

struct Common {
  std::string topology = "topology/shop.toml";
  std::string state_dir;  // overrides [mesh] state_dir when set
  int timeout_ms = 2000;
  std::string identity;  // the CURVE identity presented ("" = TROUPE_IDENTITY, else the default)
};

void add_common(CLI::App& app, Common& common);

// The identity a command presents under CURVE: --identity, else $TROUPE_IDENTITY, else
// `fallback` ("cli"; "tap" for troupe tap).
std::string identity(const Common& common, const char* fallback = "cli");

// Loads the topology (--topology, --state-dir): the file:line error on failure.
Result<Topology> load_result(const Common& common, bool check = true);
// The same; on failure prints the error and returns nullopt.
std::optional<Topology> load(const Common& common, bool check = true);

// Messages as JSON (tools/lib): what every subcommand prints.
using tools::cloudevent;
using tools::cloudevent_json;
using tools::dump;
using tools::short_fields;
using tools::to_json;
using tools::to_msgpack;

// Parses a JSON argument; prints an error naming `what` and returns nullopt on failure.
std::optional<nlohmann::json> parse_json(const std::string& text, const std::string& what);

// A subcommand adds itself to its app and returns the function that runs it: -1 when
// it was not the one chosen, else its exit code.
using Runner = std::function<int()>;

// Parses the command line into `app` and runs the runner chosen: its exit code, kUsage
// for bad arguments (0 after --help), kFailed with "WHO: what" for an exception.
int run_app(CLI::App& app, const std::vector<Runner>& runners, int argc, char** argv, const std::string& who);

// The whole file, or nullopt when it cannot be read.
std::optional<std::string> read_file(const std::string& path);

}  // namespace troupe::cli
