// client_bench: commands a service takes per second from troupe::Client, the baseline of
// the HTTP gateway's figure (bench/gateway_bench.sh runs both on the same mesh). C
// threads, each with its own Client, send the shop's PlaceOrder — a new order each —
// and wait until orders confirms it took it ($seen, send_confirmed), as the gateway
// does for every POST; for S seconds. Prints one line:
//   direct: N commands in S s (R commands/s), p50 X ms, p99 Y ms, failed F
//
//   client_bench TOPOLOGY STATE_DIR SECONDS CONNECTIONS PREFIX
#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/client.hpp>

#include <msgpack.hpp>
#include <zmq.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: client_bench TOPOLOGY STATE_DIR SECONDS CONNECTIONS PREFIX\n";
    return 2;
  }
  troupe::toml::LoadOptions lo;
  lo.state_dir = argv[2];
  auto t = troupe::toml::load_topology(argv[1], lo);
  if (!t) {
    std::cerr << "client_bench: " << t.error().message() << '\n';
    return 2;
  }
  double seconds = std::stod(argv[3]);
  int connections = std::stoi(argv[4]);
  std::string prefix = argv[5];
  zmq::context_t context(1);
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  auto deadline = start + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
  std::mutex mutex;
  std::vector<double> latencies;
  std::atomic<long> failed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c)
    threads.emplace_back([&, c] {
      troupe::Client client(*t, "bench", &context);
      std::vector<double> mine;
      for (long n = 0; Clock::now() < deadline; ++n) {
        std::string id = prefix + "-" + std::to_string(c) + "-" + std::to_string(n);
        msgpack::sbuffer buf;
        msgpack::packer<msgpack::sbuffer> pk(buf);
        pk.pack_map(4);
        pk.pack("order_id"), pk.pack(id), pk.pack("customer"), pk.pack("alice");
        pk.pack("sku"), pk.pack("KB-101"), pk.pack("quantity"), pk.pack(1);
        auto t0 = Clock::now();
        auto r = client.send_confirmed("orders", "PlaceOrder", std::string(buf.data(), buf.size()), id);
        if (!r) ++failed;
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      std::lock_guard lock(mutex);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  for (auto& th : threads) th.join();
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0.0 : latencies[std::min(latencies.size() - 1, static_cast<std::size_t>(p * latencies.size()))];
  };
  std::printf("direct: %zu commands in %.1f s (%.1f commands/s), p50 %.2f ms, p99 %.2f ms, failed %ld\n",
              latencies.size(), took, latencies.size() / took, pct(0.50), pct(0.99), failed.load());
  return failed ? 1 : 0;
}
