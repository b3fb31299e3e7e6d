// Loads a topology from TOML (toml++). Every problem — syntax, unknown key, wrong
// type, bad reference — comes back as a Rejection naming file:line.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/domain/result.hpp>
#include <troupe/domain/topology.hpp>

namespace troupe::toml {

struct LoadOptions {
  // Replaces [mesh] state_dir (and so every "{state_dir}" in endpoints), e.g. for tests.
  std::optional<std::string> state_dir;
  // Run check_topology() and reject on its first error (`troupe check` turns this off
  // to report every finding itself).
  bool check = true;
};

// Reads and parses `path`, then runs check_topology(); errors reject, warnings are
// returned in `warnings` when given.
Result<Topology> load_topology(const std::string& path, const LoadOptions& options = {},
                               std::vector<std::string>* warnings = nullptr);

// The same from text; `name` stands for the file in messages.
Result<Topology> parse_topology(std::string_view text, std::string name,
                                const LoadOptions& options = {},
                                std::vector<std::string>* warnings = nullptr);

}  // namespace troupe::toml
