// {{name}}: the process. --topology FILE (default topology.toml), --state-dir DIR.
// Exit codes: 0 stopped by SIGTERM/SIGINT, 1 could not run, 2 bad topology, 64 bad
// arguments.
#include "handlers.hpp"

#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/node.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  std::string topology_file = "topology.toml";
  troupe::toml::LoadOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--topology" || arg == "--state-dir") && i + 1 < argc) {
      (arg == "--topology" ? topology_file : options.state_dir.emplace()) = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      std::printf("{{name}} [--topology FILE] [--state-dir DIR]: {{name}}, in the mesh of FILE\n");
      return 0;
    } else {
      std::fprintf(stderr, "{{name}}: unknown argument '%s' (try --help)\n", arg.c_str());
      return 64;
    }
  }
  auto topology = troupe::toml::load_topology(topology_file, options);
  if (!topology) {
    std::fprintf(stderr, "{{name}}: %s\n", topology.error().message().c_str());
    return 2;
  }
  try {
    troupe::Node node(*topology, "{{name}}");
    {{mesh_ns}}::{{name}}::install(node);
    return troupe::run_until_signal(node);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "{{name}}: %s\n", e.what());
    return 1;
  }
}
