// service_main: shared wiring of the shop's executables.
#include "service_main.hpp"

#include <troupe/adapters/json/contract.hpp>
#include <troupe/adapters/toml/topology_loader.hpp>

#include <getopt.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <iostream>
#include <string_view>

namespace shop {

troupe::Result<Seed> seed_for(const troupe::Topology& topology) {
  if (topology.defaults.seed.empty())
    return troupe::reject(troupe::Rejection::Code::missing, topology.file, "[mesh] names no seed file");
  return load_seed(topology.defaults.seed);
}

namespace {

void usage(std::ostream& out, const std::string& name, const std::string& summary,
           const std::string& default_topology, bool contract) {
  out << name << ": " << summary << "\nUsage: " << name << " [OPTIONS]\n\nOptions:\n"
      << "  -h, --help             print this help and exit\n"
      << "  -t, --topology FILE    topology file (default: " << default_topology << ")\n";
  if (contract) out << "  -p, --partition K      which instance to run of a partitioned service (0 … N-1)\n";
  out << "      --state-dir DIR    override the topology's state directory\n";
  if (contract)
    out << "      --contract         print the messages this build publishes, accepts, answers and reads\n"
        << "                         (JSON, as $schema answers) and exit\n";
}

}  // namespace

// Options by getopt_long (the C library's), not a header-only parser: its templates were
// about 170 kB of every service's executable, text an idle service keeps mapped
// (docs/performance.md, Footprint).
std::variant<Config, int> configure(int argc, char** argv, const std::string& name,
                                    const std::string& summary, const std::string& default_topology,
                                    bool* contract) {
  std::string topology_file = default_topology, state_dir;
  int partition = -1;
  enum : int { kStateDir = 256, kContract };
  const option all[] = {{"help", no_argument, nullptr, 'h'},          {"topology", required_argument, nullptr, 't'},
                        {"state-dir", required_argument, nullptr, kStateDir}, {"partition", required_argument, nullptr, 'p'},
                        {"contract", no_argument, nullptr, kContract}, {nullptr, 0, nullptr, 0}};
  const option service_only[] = {{"help", no_argument, nullptr, 'h'},
                                 {"topology", required_argument, nullptr, 't'},
                                 {"state-dir", required_argument, nullptr, kStateDir},
                                 {nullptr, 0, nullptr, 0}};
  auto bad = [&](const std::string& why) {
    std::cerr << name << ": " << why << "\nRun with --help for more information.\n";
    return 64;
  };
  // '+': stop at the first non-option; ':': a missing value is reported as ':', not '?'.
  // Our own messages, naming the service, instead of getopt's.
  opterr = 0;
  optind = 1;
  int c, at = optind;
  // The argument getopt stopped at, by name: a long option as written up to its '='
  // (`--contract=1`), a short one as its letter (also inside `-hx`).
  auto named = [&] {
    if (at < argc && std::string_view(argv[at]).starts_with("--")) {
      const std::string_view arg = argv[at];
      return std::string(arg.substr(0, arg.find('=')));
    }
    return std::string("-") + static_cast<char>(optopt);
  };
  while ((c = getopt_long(argc, argv, contract ? "+:ht:p:" : "+:ht:", contract ? all : service_only, nullptr)) != -1) {
    switch (c) {
      case 'h': usage(std::cout, name, summary, default_topology, contract); return 0;
      case 't': topology_file = optarg; break;
      case kStateDir: state_dir = optarg; break;
      case kContract: *contract = true; break;
      case 'p': {
        const std::string_view text = optarg;
        int value = -1;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || end != text.data() + text.size() || value < 0 || value > 255)
          return bad("--partition: '" + std::string(text) + "' is not a number in 0 … 255");
        partition = value;
        break;
      }
      case ':': return bad(named() + ": needs a value");
      default:  // '?': an unknown option, or a known long one given a value it does not take
        return bad(named() + (optopt && named().starts_with("--") ? ": takes no value" : ": not an option here"));
    }
    at = optind;
  }
  if (optind < argc) return bad(std::string(argv[optind]) + ": unexpected argument");
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
