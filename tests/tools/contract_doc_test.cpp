// The shop's AsyncAPI document, from the services' own registrations: every message of
// the topology is in it with its fields, and what troupe compat reads back from it is
// what the services declared.
#include "../../services/inventory/handlers.hpp"
#include "../../services/notifications/handlers.hpp"
#include "../../services/orders/handlers.hpp"
#include "../../services/payments/handlers.hpp"
#include "../../services/shipping/handlers.hpp"
#include "../../tools/troupe/contract_doc.hpp"
#include "../support/test_mesh.hpp"

#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/node.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <set>

using namespace troupe;

namespace {

std::map<std::string, schema::Contract> shop_contracts() {
  std::map<std::string, schema::Contract> out;
  auto record = [&](const std::string& name, void (*install)(Handlers&, const shop::Seed&)) {
    ContractRecorder r(name, std::string(kVersion));
    install(r, shop::Seed{});
    out[name] = r.contract();
  };
  record("orders", shop::orders::install);
  record("inventory", shop::inventory::install);
  record("payments", shop::payments::install);
  record("shipping", shop::shipping::install);
  record("notifications", shop::notifications::install);
  return out;
}

Topology shop_topology() {
  const char* root = std::getenv("TROUPE_SOURCE_ROOT");
  REQUIRE(root);
  auto t = toml::load_topology(std::string(root) + "/topology/shop.toml");
  REQUIRE(t);
  return *t;
}

}  // namespace

TEST_CASE("every message the shop's topology names is in the document, with its fields") {
  auto t = shop_topology();
  auto doc = contract::asyncapi(t, shop_contracts(), {});
  const auto& messages = doc["components"]["messages"];
  std::set<std::string> named;
  for (const auto& s : t.services) {
    named.insert(s.publishes.begin(), s.publishes.end());
    named.insert(s.accepts.begin(), s.accepts.end());
    named.insert(s.answers.begin(), s.answers.end());
  }
  for (const auto& type : named) {
    INFO(type);
    REQUIRE(messages.contains(type));
    CHECK(messages[type]["payload"]["type"] == "object");
  }
  CHECK(messages["PlaceOrder"]["payload"]["required"] == contract::Json::array({"order_id", "customer", "sku", "quantity"}));
  CHECK(messages["GetStock"]["payload"]["properties"].contains("after"));
  CHECK_FALSE(messages["GetStock"]["payload"].contains("required"));  // both optional
  CHECK(messages["OrderList"]["payload"]["properties"]["orders"]["items"]["title"] == "OrderView");
  CHECK(doc["operations"].contains("inventory-receive-orders-OrderPlaced"));
  CHECK(doc["operations"]["orders-receive-GetOrder"]["reply"]["messages"][0]["$ref"] ==
        "#/channels/orders-queries/messages/OrderView");
}

TEST_CASE("the document reads back as the contracts the services registered") {
  auto t = shop_topology();
  auto contracts = shop_contracts();
  auto mesh = contract::mesh_from_asyncapi(contract::asyncapi(t, contracts, {}));
  for (const auto& [name, c] : contracts) {
    INFO(name);
    const auto& back = mesh.services.at(name);
    CHECK(back.messages == c.messages);
    CHECK(std::set(back.publishes.begin(), back.publishes.end()) == std::set(c.publishes.begin(), c.publishes.end()));
    CHECK(std::set(back.accepts.begin(), back.accepts.end()) == std::set(c.accepts.begin(), c.accepts.end()));
    CHECK(back.answers == c.answers);
    CHECK(std::set(back.reads.begin(), back.reads.end()) == std::set(c.reads.begin(), c.reads.end()));
  }
  CHECK(mesh.reacts_to.at("orders").at("inventory") == std::vector<std::string>{"StockRejected"});
  CHECK(compat::compare(mesh, mesh, compat::Mode::full).breaking.empty());
}

TEST_CASE("a reader built with another schema than the publisher's is kept in the document") {
  auto t = shop_topology();
  auto contracts = shop_contracts();
  auto& read = contracts["inventory"].messages["OrderPlaced"];
  read.version = 7;
  read.shape.properties.pop_back();  // this inventory build does not know `amount`
  auto doc = contract::asyncapi(t, contracts, {});
  REQUIRE(doc["operations"]["inventory-receive-orders-OrderPlaced"].contains("x-troupe-reads"));
  auto mesh = contract::mesh_from_asyncapi(doc);
  CHECK(mesh.services.at("inventory").messages.at("OrderPlaced") == read);
  CHECK(mesh.services.at("orders").messages.at("OrderPlaced").version == 1);
}

TEST_CASE("a type the topology names that a service's contract lacks is an error naming both") {
  auto t = shop_topology();
  auto contracts = shop_contracts();
  contracts["orders"].messages.erase("CancelOrder");
  CHECK_THROWS_WITH(contract::asyncapi(t, contracts, {}),
                    Catch::Contains("service 'orders': the topology") && Catch::Contains("accepts 'CancelOrder'"));
  contracts.erase("payments");
  CHECK_THROWS_WITH(contract::asyncapi(t, contracts, {}), Catch::Contains("service 'payments': no contract"));
}

TEST_CASE("commands a service sends are send operations; a sender's own schema of one is kept") {
  auto t = testmesh::topology("ipc", "/tmp/unused", 1);
  std::map<std::string, schema::Contract> contracts;
  auto& pub = contracts["pub"];
  pub.service = "pub";
  pub.add<testmesh::Ping>();
  pub.add<testmesh::Emit>();
  pub.add<testmesh::GetApplied>();
  pub.add<testmesh::Applied>();
  pub.publishes = {"Ping"};
  pub.accepts = {"Emit"};
  pub.answers["GetApplied"] = "Applied";
  auto& sub = contracts["sub1"];
  sub = pub;
  sub.service = "sub1";
  sub.publishes.clear();
  sub.reads = {"Ping"};
  sub.sends["pub"] = {"Emit"};
  auto doc = contract::asyncapi(t, contracts, {});
  const auto& op = doc["operations"]["sub1-send-pub-Emit"];
  CHECK(op["action"] == "send");
  CHECK(op["channel"]["$ref"] == "#/channels/pub-commands");
  CHECK_FALSE(op.contains("x-troupe-writes"));  // the same schema as pub's
  auto mesh = contract::mesh_from_asyncapi(doc);
  CHECK(mesh.services.at("sub1").sends.at("pub") == std::vector<std::string>{"Emit"});

  contracts["sub1"].messages["Emit"].version = 2;  // the sender's build writes another version
  contracts["sub1"].messages["Emit"].shape.properties.pop_back();
  auto doc2 = contract::asyncapi(t, contracts, {});
  REQUIRE(doc2["operations"]["sub1-send-pub-Emit"].contains("x-troupe-writes"));
  // sub1 also accepts Emit: what it reads back is its one schema of the type
  auto mesh2 = contract::mesh_from_asyncapi(doc2);
  CHECK(mesh2.services.at("sub1").sends.at("pub") == std::vector<std::string>{"Emit"});
  CHECK(mesh2.services.at("pub").messages.at("Emit").version == 1);
}

TEST_CASE("descriptions come from the comments of messages.hpp") {
  auto d = contract::descriptions_from_header(R"(// --- events

// An order was accepted.
// Two lines.
struct OrderPlaced {
  std::string order_id;
  std::int64_t amount = 0;  // cents
  TROUPE_MESSAGE(OrderPlaced, order_id, amount)
};

struct Bare {
  std::string x;
};
)");
  CHECK(d["OrderPlaced"].text == "An order was accepted. Two lines.");
  CHECK(d["OrderPlaced"].fields["amount"] == "cents");
  CHECK(d["OrderPlaced"].fields.count("order_id") == 0);
  CHECK(d.count("Bare") == 0);
}

TEST_CASE("YAML output: nested maps and lists, strings JSON-quoted") {
  contract::Json j = {{"a", {{"b", 1}, {"$ref", "x: y"}}}, {"list", {{{"k", "v"}, {"k2", true}}, "s", contract::Json::array()}}, {"e", contract::Json::object()}};
  CHECK(contract::to_yaml(j) == "a:\n  b: 1\n  \"$ref\": \"x: y\"\nlist:\n  - k: \"v\"\n    k2: true\n  - \"s\"\n  - []\ne: {}\n");
  // keys a YAML reader would take for something else are quoted; bytes outside printable
  // ASCII are escaped
  contract::Json odd = {{"True", 1}, {"NULL", 2}, {"y", 3}, {"-1", 4}, {".inf", 5}, {"ok_key-1.x", 6},
                        {"s", "a\x7f\u00e9\u2028b"}};
  CHECK(contract::to_yaml(odd) ==
        "\"True\": 1\n\"NULL\": 2\n\"y\": 3\n\"-1\": 4\n\".inf\": 5\nok_key-1.x: 6\ns: \"a\\u007f\\u00e9\\u2028b\"\n");
}
