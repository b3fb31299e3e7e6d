// troupe compat's rules, one per breaking change the contract issue names, each shown
// breaking and each compatible counterpart shown passing; and the JSON Schema round trip
// the rules read their input through.
#include <troupe/adapters/json/contract.hpp>
#include <troupe/domain/compat.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

using namespace troupe;

namespace v1 {
struct Item {
  std::string sku;
  std::int64_t quantity = 0;
  TROUPE_MESSAGE(Item, sku, quantity)
};
struct OrderPlaced {
  std::string order_id;
  std::int64_t quantity = 0;
  std::optional<std::string> note;
  TROUPE_MESSAGE(OrderPlaced, order_id, quantity, note)
};
struct PlaceOrder {
  std::string order_id;
  std::optional<std::string> coupon;
  TROUPE_MESSAGE(PlaceOrder, order_id, coupon)
};
struct OrderView {
  std::string order_id;
  std::string status;
  std::vector<Item> items;
  TROUPE_MESSAGE(OrderView, order_id, status, items)
};
struct GetOrder {
  std::string order_id;
  using Reply = OrderView;
  TROUPE_MESSAGE(GetOrder, order_id)
};
}  // namespace v1

namespace v2_compatible {  // gained optional fields, schemaversion 2
struct OrderPlaced {
  std::string order_id;
  std::int64_t quantity = 0;
  std::optional<std::string> note;
  std::optional<std::string> gift_wrap;
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(OrderPlaced, order_id, quantity, note, gift_wrap)
};
}  // namespace v2_compatible

namespace v2_retyped_reader {  // a reader that takes v2's new field for a number
struct OrderPlaced {
  std::string order_id;
  std::int64_t quantity = 0;
  std::optional<std::string> note;
  std::optional<std::int64_t> gift_wrap;
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(OrderPlaced, order_id, quantity, note, gift_wrap)
};
}  // namespace v2_retyped_reader

namespace v2_retyped {
struct OrderPlaced {
  std::string order_id;
  std::string quantity;
  std::optional<std::string> note;
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(OrderPlaced, order_id, quantity, note)
};
}  // namespace v2_retyped

namespace v2_removed {
struct OrderPlaced {
  std::string order_id;
  std::optional<std::string> note;
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(OrderPlaced, order_id, note)
};
}  // namespace v2_removed

namespace v2_optional {  // quantity became optional
struct OrderPlaced {
  std::string order_id;
  std::optional<std::int64_t> quantity;
  std::optional<std::string> note;
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(OrderPlaced, order_id, quantity, note)
};
}  // namespace v2_optional

namespace v2_required {  // the command's optional coupon became required; a new required field
struct PlaceOrder {
  std::string order_id;
  std::string coupon;
  TROUPE_MESSAGE(PlaceOrder, order_id, coupon)
};
struct PlaceOrderWithCustomer {
  std::string order_id;
  std::optional<std::string> coupon;
  std::string customer;
  static constexpr std::string_view kType = "PlaceOrder";
  static constexpr auto fields() {
    using Self = PlaceOrderWithCustomer;
    return std::tuple{TROUPE_DETAIL_FIELD(order_id), TROUPE_DETAIL_FIELD(coupon), TROUPE_DETAIL_FIELD(customer)};
  }
};
}  // namespace v2_required

namespace v2_reply {  // the reply lost `status`; an item's quantity narrowed
struct Item {
  std::string sku;
  std::int32_t quantity = 0;
  TROUPE_MESSAGE(Item, sku, quantity)
};
struct OrderView {
  std::string order_id;
  std::vector<Item> items;
  TROUPE_MESSAGE(OrderView, order_id, items)
};
struct GetOrder {
  std::string order_id;
  using Reply = OrderView;
  TROUPE_MESSAGE(GetOrder, order_id)
};
}  // namespace v2_reply

namespace {

// The contract of `orders`: publishes E, accepts C, answers Q.
template <class E, class C, class Q>
schema::Contract orders() {
  schema::Contract c;
  c.service = "orders";
  c.messages[std::string(E::kType)] = schema::message_schema<E>();
  c.messages[std::string(C::kType)] = schema::message_schema<C>();
  c.messages[std::string(Q::kType)] = schema::message_schema<Q>();
  c.messages[std::string(Q::Reply::kType)] = schema::message_schema<typename Q::Reply>();
  c.publishes = {std::string(E::kType)};
  c.accepts = {std::string(C::kType)};
  c.answers[std::string(Q::kType)] = std::string(Q::Reply::kType);
  return c;
}

// inventory reads E.
template <class E>
schema::Contract inventory() {
  schema::Contract c;
  c.service = "inventory";
  c.messages[std::string(E::kType)] = schema::message_schema<E>();
  c.reads = {std::string(E::kType)};
  return c;
}

compat::Mesh mesh(schema::Contract o, schema::Contract i) {
  compat::Mesh m;
  m.services["orders"] = std::move(o);
  m.services["inventory"] = std::move(i);
  m.reacts_to["inventory"]["orders"] = {"OrderPlaced"};
  return m;
}

const compat::Mesh kOld = mesh(orders<v1::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(), inventory<v1::OrderPlaced>());

std::string all(const compat::Report& r) {
  std::string out;
  for (const auto& f : r.breaking) out += f.where + ": " + f.what + " | " + f.whom + "\n";
  return out;
}

}  // namespace

TEST_CASE("the same contract is compatible in every mode") {
  for (auto mode : {compat::Mode::backward, compat::Mode::forward, compat::Mode::full}) {
    auto r = compat::compare(kOld, kOld, mode);
    CHECK(r.breaking.empty());
    CHECK(r.notes.empty());
  }
}

TEST_CASE("an event that gained an optional field, with a new schemaversion, is compatible both ways") {
  auto n = mesh(orders<v2_compatible::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(), inventory<v1::OrderPlaced>());
  auto r = compat::compare(kOld, n, compat::Mode::full);
  INFO(all(r));
  CHECK(r.breaking.empty());
  CHECK(r.notes.empty());
  // and once the reader is upgraded too
  auto both = mesh(orders<v2_compatible::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(),
                   inventory<v2_compatible::OrderPlaced>());
  CHECK(compat::compare(kOld, both, compat::Mode::full).breaking.empty());
}

TEST_CASE("a retyped field that a consumer reads breaks it, naming the field, both builds and the consumer") {
  auto n = mesh(orders<v2_retyped::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(), inventory<v1::OrderPlaced>());
  auto r = compat::compare(kOld, n, compat::Mode::full);
  REQUIRE(r.breaking.size() == 1);
  CHECK(r.breaking[0].where == "event OrderPlaced of orders");
  CHECK_THAT(r.breaking[0].what, Catch::Contains("field 'quantity': written as string, read as integer (int64)"));
  CHECK_THAT(r.breaking[0].what, Catch::Contains("schemaversion 2"));
  CHECK_THAT(r.breaking[0].what, Catch::Contains("schemaversion 1"));
  CHECK_THAT(r.breaking[0].whom, Catch::Contains("inventory (old build)"));
  // backward alone: no new reader reads it yet (inventory is still v1), nothing breaks
  CHECK(compat::compare(kOld, n, compat::Mode::backward).breaking.empty());
}

TEST_CASE("a reader retyping the new field breaks; replacing it with a good build is compatible, the old break a note") {
  auto v2 = orders<v2_compatible::OrderPlaced, v1::PlaceOrder, v1::GetOrder>();
  auto deployed = mesh(v2, inventory<v1::OrderPlaced>());
  auto broken = mesh(v2, inventory<v2_retyped_reader::OrderPlaced>());
  auto r = compat::compare(deployed, broken, compat::Mode::full);
  REQUIRE(r.breaking.size() == 1);
  CHECK_THAT(r.breaking[0].what, Catch::Contains("field 'gift_wrap': written as string, read as integer (int64)"));
  CHECK_THAT(r.breaking[0].whom, Catch::Contains("inventory (new build)"));
  auto fixed = mesh(v2, inventory<v2_compatible::OrderPlaced>());
  auto fix = compat::compare(broken, fixed, compat::Mode::full);
  INFO(all(fix));
  CHECK(fix.breaking.empty());
  // the broken pair is gone with the fix; what is left to say is that the two builds of
  // inventory read OrderPlaced differently under one schemaversion
  REQUIRE(fix.notes.size() == 1);
  CHECK(fix.notes[0].where == "message OrderPlaced of inventory");
  CHECK_THAT(fix.notes[0].what, Catch::Contains("schemaversion is still 2"));
  // an unrelated change while the break is deployed: the break is a note, not this change's
  auto other = broken;
  other.services["orders"].accepts.push_back("Extra");
  other.services["orders"].messages["Extra"] = schema::message_schema<v1::Item>();
  auto unrelated = compat::compare(broken, other, compat::Mode::full);
  CHECK(unrelated.breaking.empty());
  REQUIRE(unrelated.notes.size() == 1);
  CHECK_THAT(unrelated.notes[0].whom, Catch::Contains("broken before this change"));
}

TEST_CASE("a removed field that a consumer requires breaks it; one nobody reads does not") {
  auto n = mesh(orders<v2_removed::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(), inventory<v1::OrderPlaced>());
  auto r = compat::compare(kOld, n, compat::Mode::forward);
  REQUIRE(r.breaking.size() == 1);
  CHECK_THAT(r.breaking[0].what, Catch::Contains("field 'quantity': required by the reader, no longer written"));
  // the same removal where the reader never read quantity
  auto reader_without = mesh(orders<v2_removed::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(),
                             inventory<v2_removed::OrderPlaced>());
  auto old_without = mesh(orders<v1::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(), inventory<v2_removed::OrderPlaced>());
  CHECK(compat::compare(old_without, reader_without, compat::Mode::full).breaking.empty());
}

TEST_CASE("a field a consumer requires that became optional breaks it") {
  auto n = mesh(orders<v2_optional::OrderPlaced, v1::PlaceOrder, v1::GetOrder>(), inventory<v1::OrderPlaced>());
  auto r = compat::compare(kOld, n, compat::Mode::full);
  REQUIRE(r.breaking.size() == 1);
  CHECK_THAT(r.breaking[0].what, Catch::Contains("field 'quantity': optional for the writer (may be absent), required by the reader"));
}

TEST_CASE("an optional field made required in a command breaks old clients") {
  auto n = mesh(orders<v1::OrderPlaced, v2_required::PlaceOrder, v1::GetOrder>(), inventory<v1::OrderPlaced>());
  auto r = compat::compare(kOld, n, compat::Mode::full);
  REQUIRE(r.breaking.size() == 1);
  CHECK(r.breaking[0].where == "command PlaceOrder to orders");
  CHECK_THAT(r.breaking[0].what, Catch::Contains("field 'coupon': optional for the writer"));
  CHECK_THAT(r.breaking[0].whom, Catch::Contains("orders (new build) reads what old clients send"));
  CHECK(compat::compare(kOld, n, compat::Mode::forward).breaking.empty());
}

TEST_CASE("a command whose request gained a required field breaks old clients, backward and full") {
  auto n = mesh(orders<v1::OrderPlaced, v2_required::PlaceOrderWithCustomer, v1::GetOrder>(), inventory<v1::OrderPlaced>());
  CHECK(compat::compare(kOld, n, compat::Mode::forward).breaking.empty());
  for (auto mode : {compat::Mode::backward, compat::Mode::full}) {
    auto r = compat::compare(kOld, n, mode);
    REQUIRE(r.breaking.size() == 1);
    CHECK_THAT(r.breaking[0].what, Catch::Contains("field 'customer': required by the reader, no longer written"));
  }
}

TEST_CASE("a reply that lost a field breaks old clients; a narrowed one breaks new clients of old builds") {
  auto n = mesh(orders<v1::OrderPlaced, v1::PlaceOrder, v2_reply::GetOrder>(), inventory<v1::OrderPlaced>());
  auto forward = compat::compare(kOld, n, compat::Mode::forward);
  INFO(all(forward));
  REQUIRE(forward.breaking.size() == 1);
  CHECK(forward.breaking[0].where == "reply OrderView to GetOrder of orders");
  CHECK_THAT(forward.breaking[0].what, Catch::Contains("field 'status': required by the reader, no longer written"));
  CHECK_THAT(forward.breaking[0].whom, Catch::Contains("old clients"));
  auto backward = compat::compare(kOld, n, compat::Mode::backward);
  INFO(all(backward));
  REQUIRE(backward.breaking.size() == 1);
  CHECK_THAT(backward.breaking[0].what, Catch::Contains("field 'items[].quantity': written as int64, read as int32"));
  CHECK(compat::compare(kOld, n, compat::Mode::full).breaking.size() == 2);
}

TEST_CASE("a removed event type some service reacts to, and removed commands and queries, break") {
  auto o = orders<v1::OrderPlaced, v1::PlaceOrder, v1::GetOrder>();
  o.publishes.clear();
  o.accepts.clear();
  o.answers.clear();
  auto n = mesh(o, inventory<v1::OrderPlaced>());
  n.services["orders"].publishes = {"OrderShipped"};  // it still declares what it publishes
  n.services["orders"].messages["OrderShipped"] = schema::message_schema<v1::Item>();
  auto r = compat::compare(kOld, n, compat::Mode::full);
  INFO(all(r));
  REQUIRE(r.breaking.size() == 3);
  CHECK_THAT(all(r), Catch::Contains("event OrderPlaced of orders: no longer published | inventory reacts to it"));
  CHECK_THAT(all(r), Catch::Contains("command PlaceOrder to orders: no longer accepted"));
  CHECK_THAT(all(r), Catch::Contains("query GetOrder to orders: no longer answered"));
}

TEST_CASE("integers: widening is read, narrowing and signedness are not; a number reads an integer") {
  using K = schema::Shape::Kind;
  auto integer = [](const char* f) { return schema::Shape{K::integer, f, "", {}, {}}; };
  schema::Shape number{K::number, "", "", {}, {}};
  CHECK(compat::read_problems(integer("int32"), integer("int64")).empty());
  CHECK(compat::read_problems(integer("uint32"), integer("int64")).empty());
  CHECK_FALSE(compat::read_problems(integer("int64"), integer("int32")).empty());
  CHECK_FALSE(compat::read_problems(integer("uint64"), integer("int64")).empty());
  CHECK_FALSE(compat::read_problems(integer("int8"), integer("uint64")).empty());
  CHECK(compat::read_problems(integer("int64"), number).empty());
  CHECK_FALSE(compat::read_problems(number, integer("int64")).empty());
}

namespace nils {
struct Old {
  std::vector<std::int64_t> counts;
  TROUPE_MESSAGE(Old, counts)
};
struct New {  // elements may now be nil
  std::vector<std::optional<std::int64_t>> counts;
  static constexpr std::string_view kType = "Old";
  static constexpr auto fields() {
    using Self = New;
    return std::tuple{TROUPE_DETAIL_FIELD(counts)};
  }
};
struct WithDefault {
  std::uint32_t max = 100;
  std::optional<std::string> note;
  static constexpr std::string_view kType = "WithDefault";
  static constexpr auto fields() {
    using Self = WithDefault;
    return std::tuple{TROUPE_DETAIL_DEFAULTED(max), TROUPE_DETAIL_FIELD(note)};
  }
};
struct W32 {
  std::int32_t n = 0;
  static constexpr std::string_view kType = "Tick";
  static constexpr auto fields() {
    using Self = W32;
    return std::tuple{TROUPE_DETAIL_FIELD(n)};
  }
};
struct W64 {
  std::int64_t n = 0;
  static constexpr std::string_view kType = "Tick";
  static constexpr auto fields() {
    using Self = W64;
    return std::tuple{TROUPE_DETAIL_FIELD(n)};
  }
};
}  // namespace nils

TEST_CASE("an element that may now be nil breaks a reader that does not take nil; a defaulted field is never nil") {
  auto w = schema::shape<nils::New>(), r = schema::shape<nils::Old>();
  CHECK_FALSE(w == r);
  auto problems = compat::read_problems(w, r);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "field 'counts[]': may be written as nil, which the reader does not take");
  CHECK(compat::read_problems(r, w).empty());
  auto j = json::to_json_schema(w);
  CHECK(j["properties"]["counts"]["items"]["type"] == json::Json::array({"integer", "null"}));
  CHECK(json::shape_from_json_schema(j) == w);

  auto d = json::to_json_schema(schema::shape<nils::WithDefault>());
  CHECK(d["properties"]["max"]["type"] == "integer");  // absent reads as 100, nil is refused
  CHECK(d["properties"]["note"]["type"] == json::Json::array({"string", "null"}));
  CHECK_FALSE(d.contains("required"));
}

TEST_CASE("when writer and reader both change, the mesh they end in is checked too") {
  // old: writer int32, reader int64 (fine); new: writer int64, reader int32 (broken),
  // while each cross pair reads fine: only the end state shows it.
  auto make = [](schema::MessageSchema writer, schema::MessageSchema reader) {
    compat::Mesh m;
    m.services["a"].service = "a";
    m.services["a"].messages["Tick"] = writer;
    m.services["a"].publishes = {"Tick"};
    m.services["b"].service = "b";
    m.services["b"].messages["Tick"] = reader;
    m.services["b"].reads = {"Tick"};
    m.reacts_to["b"]["a"] = {"Tick"};
    return m;
  };
  auto w32 = schema::message_schema<nils::W32>(), w64 = schema::message_schema<nils::W64>();
  auto r = compat::compare(make(w32, w64), make(w64, w32), compat::Mode::full);
  INFO(all(r));
  REQUIRE(r.breaking.size() == 1);
  CHECK_THAT(all(r), Catch::Contains("field 'n': written as int64, read as int32: not every value fits (written by "
                                     "the new build schemaversion 1, read by the new schemaversion 1)"));
}

TEST_CASE("a command a service sends is checked against its receiver, build by build") {
  // shipping sends PlaceOrder to orders; its new build writes coupon as a number.
  auto make = [](schema::MessageSchema sender_view) {
    compat::Mesh m = kOld;
    auto& shipping = m.services["shipping"];
    shipping.service = "shipping";
    shipping.messages["PlaceOrder"] = sender_view;
    shipping.sends["orders"] = {"PlaceOrder"};
    return m;
  };
  auto v1 = schema::message_schema<v1::PlaceOrder>();
  auto retyped = v1;
  retyped.shape.properties[1].shape = schema::Shape{schema::Shape::Kind::integer, "int64", "", {}, {}, true};
  auto r = compat::compare(make(v1), make(retyped), compat::Mode::full);
  INFO(all(r));
  REQUIRE(r.breaking.size() == 1);
  CHECK(r.breaking[0].where == "command PlaceOrder from shipping to orders");
  CHECK_THAT(r.breaking[0].what, Catch::Contains("field 'coupon': written as integer (int64), read as string"));
  CHECK_THAT(r.breaking[0].whom, Catch::Contains("orders (old build) reads it"));
  CHECK(compat::compare(make(v1), make(v1), compat::Mode::full).breaking.empty());
  // and the contract document keeps what a service sends
  auto c = make(retyped).services["shipping"];
  auto back = json::parse_contract(json::contract_text(c));
  CHECK(back.sends == c.sends);
  CHECK(back.messages == c.messages);
}

TEST_CASE("a schema that changed without a new schemaversion is a note, not a break") {
  auto changed = orders<v2_compatible::OrderPlaced, v1::PlaceOrder, v1::GetOrder>();
  changed.messages["OrderPlaced"].version = 1;
  auto r = compat::compare(kOld, mesh(changed, inventory<v1::OrderPlaced>()), compat::Mode::full);
  CHECK(r.breaking.empty());
  REQUIRE(r.notes.size() == 1);
  CHECK_THAT(r.notes[0].what, Catch::Contains("schemaversion is still 1"));
}

namespace {
struct Everything {
  bool flag = false;
  std::uint16_t small = 0;
  double ratio = 0;
  troupe::Bytes raw;
  std::optional<v1::Item> maybe;
  std::vector<std::int64_t> list;
  std::map<std::string, v1::Item> by_sku;
  std::pair<std::string, std::int64_t> pair;
  std::variant<std::int64_t, std::string> either;
  std::optional<std::variant<bool, std::string>> maybe_either;
  TROUPE_MESSAGE(Everything, flag, small, ratio, raw, maybe, list, by_sku, pair, either, maybe_either)
};
}  // namespace

TEST_CASE("every field type survives JSON Schema and back, as it survives a contract document") {
  auto shape = schema::shape<Everything>();
  auto j = json::to_json_schema(shape);
  CHECK(j["properties"]["small"]["format"] == "uint16");
  CHECK(j["properties"]["raw"]["format"] == "binary");
  CHECK(j["properties"]["maybe"]["type"] == json::Json::array({"object", "null"}));
  CHECK(j["required"].size() == 8);
  CHECK(json::shape_from_json_schema(j) == shape);

  auto c = orders<v1::OrderPlaced, v1::PlaceOrder, v1::GetOrder>();
  c.messages["Everything"] = schema::message_schema<Everything>();
  c.build = "0.1.0";
  auto back = json::parse_contract(json::contract_text(c));
  CHECK(back.messages == c.messages);
  CHECK(back.publishes == c.publishes);
  CHECK(back.answers == c.answers);
}

TEST_CASE("a contract document that names what it does not describe is refused, saying where") {
  CHECK_THROWS_WITH(json::parse_contract(R"({"service":"x","messages":{},"publishes":["Ghost"]})"),
                    Catch::Contains("contract.publishes: names 'Ghost'"));
  CHECK_THROWS_WITH(json::parse_contract(R"({"service":"x","messages":{"A":{"payload":{"type":"object","properties":{"n":{"type":"quaternion"}}}}}})"),
                    Catch::Contains("messages.A.payload.properties.n: type 'quaternion'"));
  CHECK_THROWS_WITH(json::parse_contract("not json"), Catch::Contains("not valid JSON"));
}
