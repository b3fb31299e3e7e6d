// Partitions at the node, over real sockets and SQLite files: sequenced commands from a
// service to a partitioned one go to the instance that owns each key (each instance its
// own sequence and acks), and a partitioned subscriber of a partitioned publisher applies
// exactly the events whose key it owns, from every instance's stream.
#include "../support/test_mesh.hpp"

#include <troupe/runtime/client.hpp>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <set>

using namespace testmesh;

namespace {

struct Relay {
  std::vector<std::string> ids;
  TROUPE_MESSAGE(Relay, ids)
};
struct Keyed {
  std::string id;
  TROUPE_MESSAGE(Keyed, id)
};
struct Done {
  std::string id;
  TROUPE_MESSAGE(Done, id)
};
struct KeyList {
  std::vector<std::string> ids;
  TROUPE_MESSAGE(KeyList, ids)
};
struct GetKeys {
  using Reply = KeyList;
  TROUPE_EMPTY_MESSAGE(GetKeys)
};

std::string text(const std::string& dir) {
  auto service = [](const std::string& name) {
    return "[services." + name + "]\nevents = \"ipc://{state_dir}/" + name + ".events\"\ncommands = \"ipc://{state_dir}/" +
           name + ".commands\"\nqueries = \"ipc://{state_dir}/" + name + ".queries\"\n";
  };
  return "[mesh]\nname = \"ptest\"\nstate_dir = \"" + dir + "\"\nheartbeat_ms = 100\nsynchronous = \"normal\"\n\n" +
         service("front") + "accepts = [\"Relay\"]\nsends = { back = [\"Keyed\"] }\n\n" + service("back") +
         "partitions = 2\nkey = \"id\"\naccepts = [\"Keyed\"]\npublishes = [\"Done\"]\nanswers = [\"GetKeys\"]\n\n" +
         service("watcher") +
         "partitions = 3\nkey = \"id\"\nreacts_to = { back = [\"Done\"] }\nanswers = [\"GetKeys\"]\n";
}

void install_partitioned(troupe::Node& node) {
  auto keep = [](troupe::Context& ctx, const std::string& id) {
    auto list = ctx.state().load<KeyList>("keys", "all").value_or(KeyList{});
    list.ids.push_back(id);
    ctx.state().save("keys", "all", list);
  };
  auto answer = [&node] {
    node.on_query<GetKeys>([](const GetKeys&, const troupe::QueryContext& ctx) {
      return ctx.state().load<KeyList>("keys", "all").value_or(KeyList{});
    });
  };
  const std::string& name = node.name();
  if (name == "front") {
    node.sends<Keyed>("back");
    node.on_command<Relay>([](const Relay& r, troupe::Context& ctx) {
      for (const auto& id : r.ids) ctx.send("back", Keyed{id});
    });
  } else if (name.rfind("back.", 0) == 0) {
    node.publishes<Done>();
    node.on_command<Keyed>([keep](const Keyed& k, troupe::Context& ctx) {
      keep(ctx, k.id);
      ctx.emit(Done{k.id});
    });
    answer();
  } else {
    node.on<Done>([keep](const Done& d, troupe::Context& ctx) { keep(ctx, d.id); });
    answer();
  }
}

}  // namespace

TEST_CASE("commands to a partitioned service and events of one reach exactly the owners of their keys",
          "[partitions][integration]") {
  TempDir dir;
  auto topo = troupe::toml::parse_topology(text(dir.str()), "ptest.toml");
  REQUIRE(topo);
  zmq::context_t ctx;
  std::vector<std::unique_ptr<troupe::Node>> nodes;
  for (const auto& s : topo->services) {
    troupe::NodeOptions o;
    o.context = &ctx;
    nodes.push_back(std::make_unique<troupe::Node>(*topo, s.name, o));
    install_partitioned(*nodes.back());
  }
  std::vector<std::unique_ptr<Running>> running;
  for (auto& n : nodes) running.push_back(std::make_unique<Running>(*n));
  troupe::Client client(*topo, "test", &ctx);

  Relay relay;
  for (int i = 0; i < 60; ++i) relay.ids.push_back("key-" + std::to_string(i));
  REQUIRE(client.send_confirmed("front", "Relay", troupe::codec::encode(relay)));

  auto held = [&](const std::string& instance) {
    auto r = client.query(instance, GetKeys{}, std::chrono::milliseconds(2000));
    return r ? r->ids : std::vector<std::string>{};
  };
  auto total = [&](const std::string& service, int n) {
    std::size_t sum = 0;
    for (int k = 0; k < n; ++k) sum += held(service + "." + std::to_string(k)).size();
    return sum;
  };
  REQUIRE(eventually([&] { return total("back", 2) == 60 && total("watcher", 3) == 60; }));
  for (auto [service, n] : {std::pair{std::string("back"), 2}, std::pair{std::string("watcher"), 3}}) {
    std::set<std::string> seen;
    for (int k = 0; k < n; ++k)
      for (const auto& id : held(service + "." + std::to_string(k))) {
        INFO(service << "." << k << " holds " << id);
        CHECK(troupe::partition_of(id, n) == k);  // only keys it owns
        CHECK(seen.insert(id).second);            // and each once
      }
    CHECK(seen.size() == 60);
  }
  // Both instances of back took some of front's commands (each its own sequence), and
  // neither refused one as not its own.
  for (int k = 0; k < 2; ++k) {
    auto m = client.query_raw("back." + std::to_string(k), "$metrics", std::string(1, '\x80'));
    REQUIRE(m);
    auto j = nlohmann::json::from_msgpack(m->payload);
    CHECK(j["types"]["Keyed"].value("received", 0) > 0);
    CHECK(j.value("dead_letters", 1) == 0);
  }
}
