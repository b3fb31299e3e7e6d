// service_main: shared wiring of the shop's executables.
#include "service_main.hpp"

#include <troupe/adapters/json/contract.hpp>
#include <troupe/adapters/toml/topology_loader.hpp>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

namespace shop {

troupe::Result<Seed> seed_for(const troupe::Topology& topology) {
  if (topology.defaults.seed.empty())
    return troupe::reject(troupe::Rejection::Code::missing, topology.file, "[mesh] names no seed file");
  return load_seed(topology.defaults.seed);
}

std::variant<Config, int> configure(int argc, char** argv, const std::string& name,
                                    const std::string& summary, const std::string& default_topology,
                                    bool* contract) {
  CLI::App app{name + ": " + summary};
  std::string topology_file = default_topology, state_dir;
  app.add_option("--topology,-t", topology_file, "topology file")->capture_default_str();
  app.add_option("--state-dir", state_dir, "override the topology's state directory");
  if (contract)
    app.add_flag("--contract", *contract,
                 "print the messages this build publishes, accepts, answers and reads (JSON, as $schema answers) and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 64;
  }
  if (contract && *contract) return Config{};
  troupe::toml::LoadOptions options;
  if (!state_dir.empty()) options.state_dir = state_dir;
  auto topology = troupe::toml::load_topology(topology_file, options);
  if (!topology) {
    std::cerr << name << ": " << topology.error().message() << "\n";
    return 2;
  }
  auto seed = seed_for(*topology);
  if (!seed) {
    std::cerr << name << ": " << seed.error().message() << '\n';
    return 2;
  }
  return Config{std::move(*topology), std::move(*seed)};
}

int service_main(int argc, char** argv, const std::string& name, const std::string& summary,
                 const Install& install) {
  bool contract = false;
  auto config = configure(argc, argv, name, summary, "topology/shop.toml", &contract);
  if (auto* code = std::get_if<int>(&config)) return *code;
  if (contract) {
    troupe::ContractRecorder recorder(name, std::string(troupe::kVersion));
    install(recorder, Seed{});
    std::cout << troupe::json::to_json(recorder.contract()).dump(2) << '\n';
    return 0;
  }
  auto& [topology, seed] = std::get<Config>(config);
  try {
    troupe::Node node(std::move(topology), name);
    install(node, seed);
    return troupe::run_until_signal(node);
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << '\n';
    return 1;
  }
}

}  // namespace shop
