// The one main() of every service of {{mesh}}: a service's main.cpp names itself, what
// it does, and its install function.
//   NAME [--topology FILE] [--state-dir DIR]   (FILE defaults to topology.toml)
// Exit codes: 0 stopped by SIGTERM/SIGINT, 1 could not run, 2 bad topology, 64 bad
// arguments.
#pragma once

#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/node.hpp>

#include <cstdio>
#include <exception>
#include <functional>
#include <string>

namespace {{mesh_ns}} {

inline int service_main(int argc, char** argv, const char* name, const char* summary,
                        const std::function<void(troupe::Handlers&)>& install) {
  std::string topology_file = "topology.toml";
  troupe::toml::LoadOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--topology" || arg == "--state-dir") && i + 1 < argc) {
      (arg == "--topology" ? topology_file : options.state_dir.emplace()) = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      std::printf("%s [--topology FILE] [--state-dir DIR]: %s, in the mesh of FILE\n", name, summary);
      return 0;
    } else {
      std::fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", name, arg.c_str());
      return 64;
    }
  }
  auto topology = troupe::toml::load_topology(topology_file, options);
  if (!topology) {
    std::fprintf(stderr, "%s: %s\n", name, topology.error().message().c_str());
    return 2;
  }
  try {
    troupe::Node node(*topology, name);
    install(node);
    return troupe::run_until_signal(node);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace {{mesh_ns}}
