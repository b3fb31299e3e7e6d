// greeter: the smallest troupe service — it accepts Greet commands and emits Greeted.
// Run without arguments it starts itself on a private ipc endpoint, sends one Greet
// through the mesh's own client, prints the Greeted event it caused, and stops.
#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/runtime/node.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

struct Greet {
  std::string name;
  TROUPE_MESSAGE(Greet, name)
};

struct Greeted {
  std::string greeting;
  TROUPE_MESSAGE(Greeted, greeting)
};

int main() {
  auto dir = std::filesystem::temp_directory_path() / ("greeter-" + std::to_string(::getpid()));
  auto topology = troupe::toml::parse_topology(
      "[mesh]\nname = \"hello\"\nstate_dir = \"" + dir.string() + "\"\ndurability = \"memory\"\n"
      "[services.greeter]\nevents = \"ipc://{state_dir}/e\"\ncommands = \"ipc://{state_dir}/c\"\n"
      "queries = \"ipc://{state_dir}/q\"\npublishes = [\"Greeted\"]\naccepts = [\"Greet\"]\n",
      "greeter.toml");
  if (!topology) {
    std::fprintf(stderr, "%s\n", topology.error().message().c_str());
    return 2;
  }
  troupe::Node node(*topology, "greeter");
  node.on_command<Greet>([](const Greet& g, troupe::Context& ctx) { ctx.emit(Greeted{"hello, " + g.name}); });
  std::thread service([&] { node.run(); });

  troupe::Client client(*topology, "example");
  client.watch();
  // The client's subscription attaches a moment after watch(): a Greeted published
  // before it is not seen here (resending the same command would be applied once, so
  // it would not come again). Until one is seen, a new Greet goes out now and then.
  std::vector<std::string> sent;
  int rc = 1;
  for (int i = 0; i < 100; ++i) {
    if (i % 5 == 0)
      if (auto s = client.send("greeter", Greet{"edge"})) sent.push_back(s->id);
    auto ev = client.next_event(std::chrono::milliseconds(100));
    if (!ev) continue;
    auto greeted = troupe::codec::decode<Greeted>(ev->payload);
    if (greeted && std::find(sent.begin(), sent.end(), ev->envelope.causationid) != sent.end()) {
      std::printf("%s: %s\n", ev->envelope.type.c_str(), greeted->greeting.c_str());
      rc = 0;
      break;
    }
  }
  node.stop();
  service.join();
  std::filesystem::remove_all(dir);
  return rc;
}
