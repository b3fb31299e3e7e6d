// shop-edge: the whole shop in one process — five nodes over inproc sharing one ZeroMQ
// context, each on its own thread, one state directory — for devices where one
// process is all there is. Same handlers, same stores, same guarantees as the process
// mesh. Tools reach it through the ipc endpoints the topology exposes.
//   shop-edge [--topology topology/shop-edge.toml] [--state-dir DIR]
// Exit codes: 0 after SIGTERM/SIGINT, 1 broken environment, 2 bad topology or seed.
#include "../inventory/handlers.hpp"
#include "../notifications/handlers.hpp"
#include "../orders/handlers.hpp"
#include "../payments/handlers.hpp"
#include "../shipping/handlers.hpp"
#include "../shop/service_main.hpp"

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <atomic>
#include <iostream>
#include <map>
#include <thread>

int main(int argc, char** argv) {
  auto config = shop::configure(argc, argv, "shop-edge", "the five shop services in one process over inproc",
                                "topology/shop-edge.toml");
  if (auto* code = std::get_if<int>(&config)) return *code;
  auto& [topology_value, seed_value, partition_unused] = std::get<shop::Config>(config);
  (void)partition_unused;
  auto* topology = &topology_value;
  auto* seed = &seed_value;
  const std::map<std::string, shop::Install> installers{
      {"orders", shop::orders::install},     {"inventory", shop::inventory::install},
      {"payments", shop::payments::install}, {"shipping", shop::shipping::install},
      {"notifications", shop::notifications::install}};

  zmq::context_t context(1);
  std::vector<std::unique_ptr<troupe::Node>> nodes;
  std::vector<std::unique_ptr<shop::Seed>> seeds;  // each node's part, alive as long as it
  try {
    for (const auto& s : topology->services) {
      auto it = installers.find(s.service());
      if (it == installers.end()) {
        std::cerr << "shop-edge: " << topology->file << ":" << s.line << ": no shop service named '" << s.name << "'\n";
        return 2;
      }
      troupe::NodeOptions o;
      o.context = &context;
      nodes.push_back(std::make_unique<troupe::Node>(*topology, s.name, o));
      seeds.push_back(std::make_unique<shop::Seed>(shop::seed_of(*seed, s)));
      it->second(*nodes.back(), *seeds.back());
    }
  } catch (const std::exception& e) {
    std::cerr << "shop-edge: " << e.what() << '\n';
    return 1;
  }
  std::vector<troupe::Node*> raw;
  for (auto& n : nodes) raw.push_back(n.get());
  troupe::stop_on_signal(raw);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (auto& n : nodes)
    threads.emplace_back([&, node = n.get()] {
      try {
        node->run();
      } catch (const std::exception& e) {
        spdlog::error("{}: {}", node->name(), e.what());
        failed = 1;
        for (auto* other : raw) other->stop();  // one down: stop cleanly, let a supervisor restart
      }
    });
  for (auto& t : threads) t.join();
  nodes.clear();
  return failed.load() ? 1 : 0;
}
