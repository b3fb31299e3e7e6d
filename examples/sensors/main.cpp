// sensors: a device's whole mesh in one process — sensor, aggregator, alerts and
// actuator, four nodes over inproc on one ZeroMQ context — with a simulated device
// driver on a thread of its own handing readings to the sensor node (node.post).
//
// The two durabilities side by side, as a device uses them: raw readings and their
// windows are in memory (sensor and aggregator get memory stores: a crash loses the
// readings of the moment, which nobody would pay a disk write for), alerts and the
// actuator's commands are durable (the topology's SQLite stores: a crash loses none and
// doubles none).
//
//   sensors [--topology topology/sensors.toml] [--state-dir DIR]
// SENSORS_DEVICE_SECONDS=N stops the device after N seconds (the mesh serves on);
// SENSORS_ACTUATOR_MS=N makes the actuator take N ms to act (default 0).
// Exit codes: 0 after SIGTERM/SIGINT, 1 broken environment, 2 bad topology, 64 bad arguments.
#include "handlers.hpp"
#include "rules.hpp"

#include <troupe/adapters/memory/memory_store.hpp>
#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/node.hpp>

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <thread>

int main(int argc, char** argv) {
  std::string topology_file = "topology/sensors.toml";
  troupe::toml::LoadOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--topology" || arg == "--state-dir") && i + 1 < argc) {
      (arg == "--topology" ? topology_file : options.state_dir.emplace()) = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      std::cout << "sensors [--topology FILE] [--state-dir DIR]: sensor, aggregator, alerts and actuator in one "
                   "process over inproc, with a simulated device (SENSORS_DEVICE_SECONDS=N stops it after N s)\n";
      return 0;
    } else {
      std::cerr << "sensors: unknown argument '" << arg << "' (try --help)\n";
      return 64;
    }
  }
  auto topology = troupe::toml::load_topology(topology_file, options);
  if (!topology) {
    std::cerr << "sensors: " << topology.error().message() << '\n';
    return 2;
  }
  const auto env_int = [](const char* name, int otherwise) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : otherwise;
  };
  const auto acting = std::chrono::milliseconds(std::max(0, env_int("SENSORS_ACTUATOR_MS", 0)));
  using Install = std::function<void(troupe::Handlers&)>;
  const std::map<std::string, std::pair<Install, bool>> services{  // install, in memory
      {"sensor", {sensors::install_sensor, true}},
      {"aggregator", {sensors::install_aggregator, true}},
      {"alerts", {sensors::install_alerts, false}},
      {"actuator", {[acting](troupe::Handlers& node) { sensors::install_actuator(node, acting); }, false}}};
  zmq::context_t context(1);
  std::map<std::string, std::unique_ptr<troupe::Node>> nodes;
  try {
    for (const auto& [name, how] : services) {
      troupe::NodeOptions o;
      o.context = &context;
      if (how.second) o.store = std::make_shared<troupe::adapters::MemoryStore>();
      nodes[name] = std::make_unique<troupe::Node>(*topology, name, o);
      how.first(*nodes[name]);
    }
  } catch (const std::exception& e) {
    std::cerr << "sensors: " << e.what() << '\n';
    return 1;
  }
  std::vector<troupe::Node*> raw;
  for (auto& [name, n] : nodes) raw.push_back(n.get());
  troupe::stop_on_signal(raw);

  // The device driver: a reading of each sensor every 20 ms, handed to the sensor node.
  // post() is the one call safe from another thread; the task runs on the node's own.
  std::atomic<bool> stop{false};
  const auto device_for = std::chrono::seconds(std::max(0, env_int("SENSORS_DEVICE_SECONDS", 1'000'000'000)));
  std::thread device([&, sensor = nodes.at("sensor").get()] {
    const auto until = std::chrono::steady_clock::now() + device_for;
    while (!stop && std::chrono::steady_clock::now() < until) {
      const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
      sensor->post([now](troupe::Context& ctx) {
        for (const char* name : {"boiler", "pump"})
          ctx.emit(sensors::Reading{name, now, sensors::simulated_milli(name, now)}, name);
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!stop) spdlog::info("sensors: the device stopped after {} s (SENSORS_DEVICE_SECONDS)", device_for.count());
  });

  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (auto* node : raw)
    threads.emplace_back([&, node] {
      try {
        node->run();
      } catch (const std::exception& e) {
        spdlog::error("{}: {}", node->name(), e.what());
        failed = 1;
        for (auto* other : raw) other->stop();  // one down: stop all, let a supervisor restart
      }
    });
  for (auto& t : threads) t.join();
  stop = true;
  device.join();
  nodes.clear();
  return failed.load() ? 1 : 0;
}
