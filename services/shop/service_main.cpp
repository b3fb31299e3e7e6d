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
  int partition = -1;
  app.add_option("--topology,-t", topology_file, "topology file")->capture_default_str();
  if (contract)
    app.add_option("--partition,-p", partition, "which instance to run of a partitioned service (0 … N-1)")
        ->check(CLI::Range(0, 255));
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
  return Config{std::move(*topology), std::move(*seed), partition};
}

Seed seed_of(const Seed& seed, const troupe::ServiceSpec& instance) {
  if (!instance.partitioned()) return seed;
  Seed out = seed;
  auto keep = [&](auto& map) {
    std::erase_if(map, [&](const auto& kv) {
      return troupe::partition_of(kv.first, instance.partitions) != instance.partition;
    });
  };
  if (instance.key == "sku") keep(out.skus);
  if (instance.key == "customer") keep(out.customers);
  return out;
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
  auto& [topology, all, partition] = std::get<Config>(config);
  auto instances = topology.instances(name);
  if (instances.size() > 1 && (partition < 0 || partition >= static_cast<int>(instances.size()))) {
    std::cerr << name << ": " << topology.file << ":" << instances.front()->line << ": " << name << " has "
              << instances.size() << " partitions: run one process per partition, --partition 0 … "
              << instances.size() - 1 << (partition < 0 ? "" : " (got " + std::to_string(partition) + ")") << '\n';
    return 64;
  }
  if (instances.size() <= 1 && partition > 0) {
    std::cerr << name << ": --partition " << partition << ": " << name << " is not partitioned in "
              << topology.file << '\n';
    return 64;
  }
  const std::string instance = instances.size() > 1 ? instances[partition]->name : name;
  const Seed seed = instances.empty() ? all : seed_of(all, *instances[instances.size() > 1 ? partition : 0]);
  try {
    troupe::Node node(std::move(topology), instance);
    install(node, seed);
    return troupe::run_until_signal(node);
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << '\n';
    return 1;
  }
}

}  // namespace shop
