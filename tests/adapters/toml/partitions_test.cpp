// Partitioned services: the topology expands them into instances, derives their
// endpoints, expands reactions to them; the routing hash keeps the vectors of
// docs/protocol.md §7.10; the key is read from a payload as the protocol says.
#include <troupe/adapters/msgpack/codec.hpp>
#include "loader_checks.hpp"

#include <troupe/adapters/toml/topology_loader.hpp>

#include <catch2/catch.hpp>

#include <msgpack.hpp>

using troupe::toml::parse_topology;

namespace {

const char* kPartitioned = R"([mesh]
name = "shop"
state_dir = "var/p"

[services.orders]
events = "ipc://{state_dir}/orders.events"
commands = "tcp://127.0.0.1:7100"
queries = "inproc://q-{partition}"
partitions = 3
key = "order_id"
publishes = ["OrderPlaced"]
accepts = ["PlaceOrder"]
answers = ["GetOrder", "ListOrders"]
reacts_to = { inventory = ["StockReserved"] }

[services.inventory]
events = "ipc://{state_dir}/inventory.events"
commands = "ipc://{state_dir}/inventory.commands"
queries = "ipc://{state_dir}/inventory.queries"
publishes = ["StockReserved"]
reacts_to = { orders = ["OrderPlaced"] }
sends = { orders = ["PlaceOrder"] }

[clients.storefront]
commands = ["orders"]
queries = ["inventory"]
)";

using loader_checks::with;

std::string partition_error_of(const std::string& text) { return loader_checks::refusal(text, "topology/p.toml"); }

}  // namespace

TEST_CASE("a partitioned service is loaded as its instances, each with endpoints of its own", "[partitions]") {
  auto t = parse_topology(kPartitioned, "topology/p.toml");
  REQUIRE(t);
  REQUIRE(t->services.size() == 4);
  for (int k = 0; k < 3; ++k) {
    const auto& s = t->services[k];
    CHECK(s.name == "orders." + std::to_string(k));
    CHECK(s.group == "orders");
    CHECK(s.service() == "orders");
    CHECK(s.partition == k);
    CHECK(s.partitions == 3);
  }
  CHECK(t->services[1].endpoints.events == "ipc://var/p/orders.1.events");  // NAME -> NAME.k
  CHECK(t->services[2].endpoints.commands == "tcp://127.0.0.1:7300");       // port + 100 k
  CHECK(t->services[2].endpoints.queries == "inproc://q-2");                // {partition}
  CHECK(t->services[3].name == "inventory");
  CHECK(t->services[3].service() == "inventory");
  CHECK(t->instances("orders").size() == 3);
  CHECK(t->instances("orders.1").size() == 1);
  CHECK(t->instances("inventory").size() == 1);
  CHECK(t->instances("nobody").empty());
  // A reaction to a partitioned publisher is one stream per instance.
  const auto& subs = t->services[3].reacts_to;
  REQUIRE(subs.size() == 3);
  CHECK(subs[0].publisher == "orders.0");
  CHECK(subs[2].publisher == "orders.2");
  // Sends keep naming the service: a command is routed when it is sent.
  CHECK(t->services[3].sends[0].target == "orders");
  CHECK(t->identities() == std::vector<std::string>{"orders.0", "orders.1", "orders.2", "inventory", "storefront"});
}

TEST_CASE("allow-lists and admission name a partitioned service once, for every instance", "[partitions]") {
  auto t = parse_topology(kPartitioned, "topology/p.toml");
  REQUIRE(t);
  const auto& storefront = *t->find_client("storefront");
  CHECK(storefront.may(storefront.commands, "orders.2"));
  CHECK_FALSE(storefront.may(storefront.queries, "orders.2"));
  auto a = t->admission(*t->find("orders.1"));
  CHECK(std::count(a.commands.begin(), a.commands.end(), "inventory") == 1);   // sends to orders
  CHECK(std::count(a.commands.begin(), a.commands.end(), "storefront") == 1);  // commands = ["orders"]
  auto inv = t->admission(*t->find("inventory"));
  CHECK(std::count(inv.events.begin(), inv.events.end(), "orders.0") == 1);    // orders.0 reacts to it
}

TEST_CASE("partition keys: the default, per type, and '*' for every instance", "[partitions]") {
  auto t = parse_topology(with(kPartitioned, "key = \"order_id\"", "key = \"order_id\"\nkeys = { ListOrders = \"*\" }"),
                          "topology/p.toml");
  REQUIRE(t);
  const auto& o = *t->find("orders.0");
  CHECK(o.key_field("PlaceOrder") == "order_id");
  CHECK(o.key_field("ListOrders") == "");
}

TEST_CASE("mistakes in partitions are named with file:line", "[partitions]") {
  CHECK(partition_error_of(with(kPartitioned, "key = \"order_id\"\n", "")) ==
        "topology/p.toml:9: [services.orders] has partitions = 3 but no key: say which payload field routes a "
        "message (key = \"order_id\")");
  CHECK(partition_error_of(with(kPartitioned, "partitions = 3", "partitions = 0")) ==
        "topology/p.toml:9: 'partitions' must be between 1 and 256, got 0");
  CHECK(partition_error_of(with(kPartitioned, "key = \"order_id\"", "key = \"order_id\"\nkeys = { Nope = \"x\" }")) ==
        "topology/p.toml:5: [services.orders] keys names 'Nope', which the service does not accept, answer or react to");
  CHECK(partition_error_of(with(kPartitioned, "[services.inventory]", "[services.\"inv.1\"]")).find("has a '.'") !=
        std::string::npos);
  CHECK(partition_error_of(with(kPartitioned, "partitions = 3", "partitions = 3\npublic_key = \"" + std::string(40, 'a') + "\"")).find(
            "each instance has a key pair of its own") != std::string::npos);
  // Two instances' derived endpoints that meet another service's are a duplicate.
  CHECK(partition_error_of(with(kPartitioned, "commands = \"ipc://{state_dir}/inventory.commands\"",
                      "commands = \"tcp://127.0.0.1:7200\"")).find("is already used by orders.1 commands") !=
        std::string::npos);
}

TEST_CASE("routing: FNV-1a 64 of the key's bytes, modulo the count (docs/protocol.md §7.10)", "[partitions]") {
  struct Vector {
    const char* key;
    std::uint64_t hash;
    int of2, of3, of4;
  };
  // The table of docs/protocol.md §7.10.
  const Vector vectors[] = {
      {"", 0xcbf29ce484222325ull, 1, 2, 1},         {"a", 0xaf63dc4c8601ec8cull, 0, 1, 0},
      {"order-1", 0xdee4809f34bee86dull, 1, 0, 1}, {"KB-101", 0x0686ff6797c9f13dull, 1, 0, 1},
      {"MN-303", 0x57b7321043cbd587ull, 1, 0, 3},  {"42", 0x07ee7e07b4b19223ull, 1, 1, 3},
      {"\xc3\xa9", 0x0ac21707b7181e01ull, 1, 1, 1},
  };
  for (const auto& v : vectors) {
    INFO(v.key);
    CHECK(troupe::fnv1a64(v.key) == v.hash);
    CHECK(troupe::partition_of(v.key, 2) == v.of2);
    CHECK(troupe::partition_of(v.key, 3) == v.of3);
    CHECK(troupe::partition_of(v.key, 4) == v.of4);
    CHECK(troupe::partition_of(v.key, 1) == 0);
  }
}

TEST_CASE("the key of a payload: a string, an integer in decimal, absent or nil as empty", "[partitions]") {
  auto pack = [](auto fill) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> p(buf);
    fill(p);
    return std::string(buf.data(), buf.size());
  };
  auto map1 = [&](auto value) {
    return pack([&](auto& p) {
      p.pack_map(2);
      p.pack(std::string("quantity"));
      p.pack(3);
      p.pack(std::string("order_id"));
      p.pack(value);
    });
  };
  CHECK(*troupe::codec::partition_key(map1(std::string("o-1")), "PlaceOrder", "order_id") == "o-1");
  CHECK(*troupe::codec::partition_key(map1(42), "PlaceOrder", "order_id") == "42");
  CHECK(*troupe::codec::partition_key(map1(-7), "PlaceOrder", "order_id") == "-7");
  CHECK(*troupe::codec::partition_key(map1(msgpack::type::nil_t()), "PlaceOrder", "order_id") == "");
  CHECK(*troupe::codec::partition_key(map1(std::string("x")), "PlaceOrder", "sku") == "");
  auto bad = troupe::codec::partition_key(map1(1.5), "PlaceOrder", "order_id");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message() ==
        "PlaceOrder (29 bytes): field 'order_id': the partition key must be a string or an integer, got float");
  CHECK_FALSE(troupe::codec::partition_key(pack([](auto& p) { p.pack(1); }), "X", "order_id"));
  CHECK_FALSE(troupe::codec::partition_key("\xc1", "X", "order_id"));
}

TEST_CASE("a partitioned service may list an endpoint per instance (instances on hosts of their own)",
          "[partitions]") {
  auto t = parse_topology(with(kPartitioned, "commands = \"tcp://127.0.0.1:7100\"",
                               "commands = [\"tcp://10.0.0.2:7100\", \"tcp://10.0.0.3:7100\", \"tcp://10.0.0.4:7100\"]"),
                          "topology/p.toml");
  REQUIRE(t);
  CHECK(t->find("orders.0")->endpoints.commands == "tcp://10.0.0.2:7100");
  CHECK(t->find("orders.2")->endpoints.commands == "tcp://10.0.0.4:7100");
  CHECK(t->find("orders.2")->endpoints.events == "ipc://var/p/orders.2.events");  // not listed: derived
  CHECK(partition_error_of(with(kPartitioned, "commands = \"tcp://127.0.0.1:7100\"", "commands = [\"tcp://10.0.0.2:7100\"]")) ==
        "topology/p.toml:7: commands in [services.orders] lists 1 endpoints: a list is one per partition "
        "(partitions = 3)");
  CHECK(partition_error_of(with(kPartitioned, "events = \"ipc://{state_dir}/inventory.events\"",
                      "events = [\"ipc://a\", \"ipc://b\"]"))
            .find("a list is one per partition (partitions = 1)") != std::string::npos);
}

TEST_CASE("what would re-hash or split keys in silence is refused at load", "[partitions]") {
  CHECK(partition_error_of(with(kPartitioned, "key = \"order_id\"", "key = \"\"")) ==
        "topology/p.toml:10: key in [services.orders] is empty: name the payload field that carries the key");
  CHECK(partition_error_of(with(kPartitioned, "key = \"order_id\"", "key = \"order_id\"\nkeys = { PlaceOrder = \"\" }")) ==
        "topology/p.toml:11: keys.PlaceOrder in [services.orders] is empty: name the field, or \"*\" for every instance");
  // No default key: every type the instances take needs its own.
  CHECK(partition_error_of(with(kPartitioned, "key = \"order_id\"", "keys = { PlaceOrder = \"order_id\" }")) ==
        "topology/p.toml:5: [services.orders] is partitioned and has no default key: name the key of StockReserved "
        "in keys (or set key = \"FIELD\")");
  CHECK(partition_error_of(with(kPartitioned, "sends = { orders = [\"PlaceOrder\"] }", "sends = { \"orders.1\" = [\"PlaceOrder\"] }")) ==
        "topology/p.toml:22: inventory sends to 'orders.1': name the service, not one of its instances (commands are "
        "routed by key)");
  CHECK(partition_error_of(with(kPartitioned, "reacts_to = { orders = [\"OrderPlaced\"] }",
                      "reacts_to = { \"orders.0\" = [\"OrderPlaced\"] }")) ==
        "topology/p.toml:21: inventory reacts to 'orders.0': name the service, not one of its instances");
  CHECK(partition_error_of(with(kPartitioned, "[clients.storefront]", "[clients.orders]")) ==
        "topology/p.toml:24: client 'orders' has the name of another service, client or tap");
  CHECK(partition_error_of(with(kPartitioned, "[clients.storefront]", "[clients.\"orders.7\"]")).find("has a '.'") !=
        std::string::npos);
  CHECK(partition_error_of(with(kPartitioned, "tcp://127.0.0.1:7100", "tcp://127.0.0.1:65500")) ==
        "topology/p.toml:5: service 'orders.1' commands endpoint 'tcp://127.0.0.1:65600' has a port beyond 65535 "
        "(instance K listens on the port + 100 × K)");
  auto t = parse_topology(with(kPartitioned, "key = \"order_id\"", "key = \"order_id\"\nkeys = { GetOrder = \"*\" }"),
                          "topology/p.toml");
  REQUIRE(t);
  CHECK(t->find("orders.1")->key_rule() == "order_id; GetOrder=*");
}
