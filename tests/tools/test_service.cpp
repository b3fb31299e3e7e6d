// test_service: one service of the test mesh (support/test_mesh.hpp) as its own
// process, for tests that kill, restart and signal real processes.
//   test_service TOPOLOGY_FILE SERVICE [HWM]   (HWM: events send and receive high-water marks)
#include "../support/test_mesh.hpp"

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: test_service TOPOLOGY_FILE SERVICE [HWM]\n";
    return 64;
  }
  auto topo = troupe::toml::load_topology(argv[1]);
  if (!topo) {
    std::cerr << topo.error().message() << '\n';
    return 2;
  }
  troupe::NodeOptions options;
  if (argc > 3) options.sub_rcvhwm = options.pub_sndhwm = std::atoi(argv[3]);
  try {
    troupe::Node node(std::move(*topo), argv[2], options);
    testmesh::install(node);
    return troupe::run_until_signal(node);
  } catch (const std::exception& e) {
    std::cerr << argv[2] << ": " << e.what() << '\n';
    return 1;
  }
}
