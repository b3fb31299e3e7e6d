// Shared helpers of the `troupe` command.
#include <troupe/tools/cli.hpp>

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include <cstdlib>
#include <iostream>

namespace troupe::cli {

void add_common(CLI::App& app, Common& c) {
  app.add_option("--topology,-t", c.topology, "topology file")->capture_default_str();
  app.add_option("--state-dir", c.state_dir, "override the topology's state directory");
  app.add_option("--timeout", c.timeout_ms, "milliseconds to wait for an answer")->capture_default_str();
  app.add_option("--identity", c.identity,
                 "CURVE identity to present, a [clients.NAME] or [taps.NAME] of the topology "
                 "(default: $TROUPE_IDENTITY, else cli; tap for troupe tap)");
}

std::string identity(const Common& c, const char* fallback) {
  if (!c.identity.empty()) return c.identity;
  if (const char* env = std::getenv("TROUPE_IDENTITY"); env && *env) return env;
  return fallback;
}

Result<Topology> load_result(const Common& c, bool check) {
  toml::LoadOptions o;
  if (!c.state_dir.empty()) o.state_dir = c.state_dir;
  o.check = check;
  return toml::load_topology(c.topology, o);
}

std::optional<Topology> load(const Common& c, bool check) {
  auto t = load_result(c, check);
  if (!t) {
    std::cerr << "troupe: " << t.error().message() << '\n';
    return std::nullopt;
  }
  return std::move(*t);
}

std::optional<nlohmann::json> parse_json(const std::string& text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::cerr << "troupe: " << what << " is not JSON: " << e.what() << '\n';
    return std::nullopt;
  }
}

int run_app(CLI::App& app, const std::vector<Runner>& runners, int argc, char** argv, const std::string& who) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }
  spdlog::set_level(spdlog::level::warn);
  try {
    for (const auto& run : runners) {
      int code = run();
      if (code >= 0) return code;
    }
  } catch (const std::exception& e) {
    std::cerr << who << ": " << e.what() << '\n';
    return kFailed;
  }
  return kUsage;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace troupe::cli
