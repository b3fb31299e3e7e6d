// Topology files: a good one loads; every mistake is named with file:line.
#include "loader_checks.hpp"

#include <troupe/adapters/toml/topology_loader.hpp>

#include <catch2/catch.hpp>

using troupe::toml::parse_topology;

namespace {

const char* kGood = R"(# a two-service mesh
[mesh]
name = "shop"
state_dir = "var/shop"
heartbeat_ms = 250

[services.orders]
events = "ipc://{state_dir}/orders.events"
commands = "tcp://127.0.0.1:5601"
queries = "inproc://orders.queries"
publishes = ["OrderPlaced", "OrderConfirmed"]
accepts = ["PlaceOrder"]
answers = ["GetOrder"]
reacts_to = { inventory = ["StockReserved"] }

[services.inventory]
events = "ipc://{state_dir}/inventory.events"
commands = "ipc://{state_dir}/inventory.commands"
queries = "ipc://{state_dir}/inventory.queries"
publishes = ["StockReserved"]
reacts_to = { orders = ["OrderPlaced"] }
)";

using loader_checks::with;

std::string error_of(const std::string& text) { return loader_checks::refusal(text, "topology/shop.toml"); }

}  // namespace

TEST_CASE("a good topology loads with its services in file order", "[topology]") {
  std::vector<std::string> warnings;
  auto t = parse_topology(kGood, "topology/shop.toml", {}, &warnings);
  REQUIRE(t);
  CHECK(t->mesh == "shop");
  CHECK(t->defaults.heartbeat.count() == 250);
  REQUIRE(t->services.size() == 2);
  CHECK(t->services[0].name == "orders");
  CHECK(t->services[0].endpoints.events == "ipc://var/shop/orders.events");
  CHECK(t->services[1].reacts_to[0].publisher == "orders");
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0] == "topology/shop.toml:7: service 'orders' publishes 'OrderConfirmed', which no service reacts to");
}

TEST_CASE("the state directory can be moved, and the endpoints move with it", "[topology]") {
  troupe::toml::LoadOptions o;
  o.state_dir = "/tmp/elsewhere";
  auto t = parse_topology(kGood, "x.toml", o);
  REQUIRE(t);
  CHECK(t->services[1].endpoints.queries == "ipc:///tmp/elsewhere/inventory.queries");
}

TEST_CASE("topology errors name the file and the line", "[topology]") {
  SECTION("an unknown publisher") {
    CHECK(error_of(with(kGood, "orders = [\"OrderPlaced\"]", "ordrs = [\"OrderPlaced\"]")) ==
          "topology/shop.toml:21: service 'inventory' reacts to unknown service 'ordrs'");
  }
  SECTION("a type the publisher does not publish") {
    CHECK(error_of(with(kGood, "orders = [\"OrderPlaced\"]", "orders = [\"OrderShipped\"]")) ==
          "topology/shop.toml:21: service 'inventory' reacts to 'OrderShipped' of 'orders', which "
          "'orders' does not publish");
  }
  SECTION("a mistyped key") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat = 250")) ==
          "topology/shop.toml:5: unknown key 'heartbeat' in [mesh]");
  }
  SECTION("a wrong type") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = \"fast\"")) ==
          "topology/shop.toml:5: 'heartbeat_ms' must be an integer");
  }
  SECTION("a missing endpoint") {
    CHECK(error_of(with(kGood, "queries = \"inproc://orders.queries\"\n", "")) ==
          "topology/shop.toml:7: [services.orders] has no 'queries'");
  }
  SECTION("an endpoint used twice") {
    CHECK(error_of(with(kGood, "ipc://{state_dir}/inventory.events", "ipc://{state_dir}/orders.events")) ==
          "topology/shop.toml:16: service 'inventory' events endpoint 'ipc://var/shop/orders.events' is "
          "already used by orders events");
  }
  SECTION("an unsupported transport") {
    CHECK(error_of(with(kGood, "tcp://127.0.0.1:5601", "udp://127.0.0.1:5601")) ==
          "topology/shop.toml:7: service 'orders' commands endpoint 'udp://127.0.0.1:5601' is not "
          "tcp://, ipc:// or inproc://");
  }
  SECTION("a type name with a space or a reserved $") {
    CHECK(error_of(with(kGood, "\"OrderConfirmed\"", "\"Order Confirmed\"")) ==
          "topology/shop.toml:11: 'Order Confirmed' in orders.publishes is not a valid name (no spaces, not "
          "starting with '$')");
  }
  SECTION("a TOML syntax error") {
    CHECK(error_of(with(kGood, "name = \"shop\"", "name = \"shop")).rfind("topology/shop.toml:3: ", 0) == 0);
  }
  SECTION("no mesh table") {
    CHECK(error_of("[services.a]\nevents=\"ipc://a\"\n") == "topology/shop.toml:1: no [mesh] table");
  }
}

TEST_CASE("a missing file is a clear error", "[topology]") {
  auto r = troupe::toml::load_topology("/nonexistent/shop.toml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message() == "/nonexistent/shop.toml: cannot read the topology file");
}

TEST_CASE("a curve topology names who may reach each endpoint", "[topology][security]") {
  std::string text = with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\nsecurity = \"curve\"") + R"(
[clients.storefront]
commands = ["orders"]
queries = ["*"]

[taps.ops]
)";
  auto t = parse_topology(text, "topology/shop.toml");
  REQUIRE(t);
  CHECK(t->curve());
  CHECK(t->defaults.keys_dir == "var/shop/keys");
  REQUIRE(t->clients.size() == 2);
  auto orders = t->admission(*t->find("orders"));
  // inventory reacts to orders: its events and its $replay queries; the tap watches.
  CHECK(orders.events == std::vector<std::string>{"inventory", "ops"});
  CHECK(orders.queries == std::vector<std::string>{"inventory", "storefront"});
  CHECK(orders.commands == std::vector<std::string>{"storefront"});
  auto inventory = t->admission(*t->find("inventory"));
  CHECK(inventory.commands.empty());  // nobody may send inventory commands
  CHECK(inventory.queries == std::vector<std::string>{"orders", "storefront"});
  CHECK(t->identities() == std::vector<std::string>{"orders", "inventory", "storefront", "ops"});
}

TEST_CASE("security mistakes name the file and the line", "[topology][security]") {
  SECTION("an unknown security") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\nsecurity = \"tls\"")) ==
          "topology/shop.toml:6: security must be \"none\" or \"curve\", got \"tls\"");
  }
  SECTION("a public key that is not Z85") {
    CHECK(error_of(with(kGood, "accepts = [\"PlaceOrder\"]", "accepts = [\"PlaceOrder\"]\npublic_key = \"short\"")) ==
          "topology/shop.toml:13: public_key in [services.orders] must be a CURVE public key in Z85 (40 characters)");
  }
  SECTION("a client naming an unknown service") {
    CHECK(error_of(std::string(kGood) + "\n[clients.app]\ncommands = [\"ordrs\"]\n") ==
          "topology/shop.toml:23: client 'app' names unknown service 'ordrs'");
  }
  SECTION("a client with the name of a service") {
    CHECK(error_of(std::string(kGood) + "\n[taps.orders]\n") ==
          "topology/shop.toml:23: tap 'orders' has the name of another service, client or tap");
  }
  SECTION("an unknown key in a client") {
    CHECK(error_of(std::string(kGood) + "\n[clients.app]\nsend = [\"orders\"]\n") ==
          "topology/shop.toml:24: unknown key 'send' in [clients.app]");
  }
  SECTION("an identity name that would leave the keys directory") {
    CHECK(error_of(std::string(kGood) + "\n[clients.\"../x\"]\n") ==
          "topology/shop.toml:23: client name '../x' is not a valid name (it names key files: no '/', no leading '.')");
  }
  SECTION("a tap may not send") {
    CHECK(error_of(std::string(kGood) + "\n[taps.ops]\ncommands = [\"orders\"]\n") ==
          "topology/shop.toml:24: unknown key 'commands' in [taps.ops]");
  }
}

TEST_CASE("limits have defaults, mesh-wide values and per-type overrides", "[topology][limits]") {
  SECTION("nothing said: the defaults, and every client unlimited") {
    auto t = parse_topology(std::string(kGood) + "\n[clients.app]\n", "topology/shop.toml");
    REQUIRE(t);
    CHECK(t->defaults.max_field_bytes == 65536);
    CHECK(t->defaults.max_dead_letters == 10000);
    CHECK(t->defaults.max_dead_letter_bytes == 67108864);
    CHECK(t->max_field_bytes("PlaceOrder") == 65536);
    CHECK(t->clients[0].queries_per_second == 0);
    CHECK(t->clients[0].commands_per_second == 0);
  }
  SECTION("mesh values, a type's own field limit, and a client's own rates over the mesh's") {
    std::string text = with(kGood, "heartbeat_ms = 250", R"(heartbeat_ms = 250
max_field_bytes = 4096
max_dead_letters = 500
max_dead_letter_bytes = 1048576
client_queries_per_second = 50
client_commands_per_second = 10)") + R"(
[limits.PlaceOrder]
max_field_bytes = 100

[clients.storefront]
queries_per_second = 20

[clients.cli]
commands_per_second = 0

[taps.ops]
)";
    auto t = parse_topology(text, "topology/shop.toml");
    REQUIRE(t);
    CHECK(t->defaults.max_field_bytes == 4096);
    CHECK(t->defaults.max_dead_letters == 500);
    CHECK(t->defaults.max_dead_letter_bytes == 1048576);
    CHECK(t->max_field_bytes("PlaceOrder") == 100);
    CHECK(t->max_field_bytes("OrderPlaced") == 4096);
    const auto* storefront = t->find_client("storefront");
    REQUIRE(storefront);
    CHECK(storefront->queries_per_second == 20);
    CHECK(storefront->commands_per_second == 10);
    const auto* cli = t->find_client("cli");
    CHECK(cli->queries_per_second == 50);
    CHECK(cli->commands_per_second == 0);
    const auto* ops = t->find_client("ops");
    CHECK(ops->queries_per_second == 0);
    CHECK(ops->commands_per_second == 0);
  }
}

TEST_CASE("limit mistakes name the file and the line", "[topology][limits]") {
  SECTION("a field limit that is not an integer") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\nmax_field_bytes = \"64k\"")) ==
          "topology/shop.toml:6: 'max_field_bytes' must be an integer");
  }
  SECTION("a dead-letter cap of zero") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\nmax_dead_letters = 0")) ==
          "topology/shop.toml:6: 'max_dead_letters' must be between 1 and 1099511627776, got 0");
  }
  SECTION("a negative mesh rate") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\nclient_queries_per_second = -1")) ==
          "topology/shop.toml:6: 'client_queries_per_second' must be between 0 and 1000000000, got -1");
  }
  SECTION("a client rate that is not an integer") {
    CHECK(error_of(std::string(kGood) + "\n[clients.app]\ncommands_per_second = 1.5\n") ==
          "topology/shop.toml:24: 'commands_per_second' must be an integer");
  }
  SECTION("a tap has no rates") {
    CHECK(error_of(std::string(kGood) + "\n[taps.ops]\nqueries_per_second = 5\n") ==
          "topology/shop.toml:24: unknown key 'queries_per_second' in [taps.ops]");
  }
  SECTION("limits of a type no service knows") {
    CHECK(error_of(std::string(kGood) + "\n[limits.PlaceOrdr]\nmax_field_bytes = 10\n") ==
          "topology/shop.toml:23: [limits.PlaceOrdr] names 'PlaceOrdr', which no service publishes, accepts or "
          "answers");
  }
  SECTION("an unknown key in a type's limits") {
    CHECK(error_of(std::string(kGood) + "\n[limits.PlaceOrder]\nmax_fields = 10\n") ==
          "topology/shop.toml:24: unknown key 'max_fields' in [limits.PlaceOrder]");
  }
  SECTION("a type's field limit of the wrong type") {
    CHECK(error_of(std::string(kGood) + "\n[limits.GetOrder]\nmax_field_bytes = true\n") ==
          "topology/shop.toml:24: 'max_field_bytes' must be an integer");
  }
  SECTION("limits that are not a table of tables") {
    CHECK(error_of(std::string(kGood) + "\n[limits]\nPlaceOrder = 10\n") ==
          "topology/shop.toml:24: limits.PlaceOrder must be a table [limits.PlaceOrder]");
  }
}

// toml++ 3.3 (Debian 12) classifies these characters with a table that reaches
// __builtin_unreachable (found by fuzz/topology_fuzz.cpp): the loader refuses them
// by line before toml++ sees them.
TEST_CASE("non-ASCII where TOML allows none is refused by line, never parsed", "[topology][hostile]") {
  SECTION("in a table name") {
    CHECK(error_of(with(kGood, "[services.inventory]", "[services.caf\xc3\xa9]")) ==
          "topology/shop.toml:16: non-ASCII character in a key (names are A-Z a-z 0-9 _ -, and ASCII "
          "in quotes)");
  }
  SECTION("in a quoted key") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "\"h\xce\xb5\" = 250")) ==
          "topology/shop.toml:5: non-ASCII character in a key (names are A-Z a-z 0-9 _ -, and ASCII "
          "in quotes)");
  }
  SECTION("after a value") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\xc2\xa7")) ==
          "topology/shop.toml:5: non-ASCII character outside a string or comment");
  }
  SECTION("alone, as in marzer/tomlplusplus#295") {
    CHECK(error_of("\xcc\xaa") == "topology/shop.toml:1: non-ASCII character in a key (names are A-Z "
                                  "a-z 0-9 _ -, and ASCII in quotes)");
  }
  SECTION("first after a line-ending backslash, as in marzer/tomlplusplus#190") {
    CHECK(error_of(with(kGood, "name = \"shop\"", "name = \"\"\"\\\n\xc2\xa7\"\"\"")) ==
          "topology/shop.toml:4: non-ASCII character first after a line-ending backslash in a "
          "multi-line string (escape it as \\uXXXX)");
  }
  SECTION("after text the scanner does not follow") {
    CHECK(error_of(with(kGood, "heartbeat_ms = 250", "= 250\n# \xc3\xa9")) ==
          "topology/shop.toml:6: non-ASCII character outside a string or comment");
  }
}

TEST_CASE("non-ASCII in comments and string values is fine", "[topology]") {
  auto t = parse_topology(with(with(kGood, "# a two-service mesh", "# un r\xc3\xa9seau \xce\xb1\xce\xb2"),
                               "state_dir = \"var/shop\"", "state_dir = \"var/caf\xc3\xa9\"  # \xc2\xa7"),
                          "topology/shop.toml");
  REQUIRE(t);
  CHECK(t->defaults.state_dir == "var/caf\xc3\xa9");
}

TEST_CASE("a commit is inline unless the mesh asks for it pipelined", "[topology]") {
  auto plain = troupe::toml::parse_topology(kGood, "topology/shop.toml");
  REQUIRE(plain);
  CHECK_FALSE(plain->defaults.pipelined_commit);
  auto pipelined = troupe::toml::parse_topology(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\ncommit = \"pipelined\""),
                                                "topology/shop.toml");
  REQUIRE(pipelined);
  CHECK(pipelined->defaults.pipelined_commit);
  CHECK(error_of(with(kGood, "heartbeat_ms = 250", "heartbeat_ms = 250\ncommit = \"later\"")) ==
        "topology/shop.toml:6: commit must be \"pipelined\" or \"inline\", got \"later\"");
  CHECK(error_of(with(kGood, "heartbeat_ms = 250",
                      "heartbeat_ms = 250\nsynchronous = \"normal\"\ncommit = \"pipelined\"")) ==
        "topology/shop.toml:7: commit = \"pipelined\" needs synchronous = \"full\": with \"normal\" no commit is "
        "fsynced, so there is nothing to pipeline");
}
