// The shop's decisions, pure: no sockets, no store (STYLE.md: domain logic alone).
#include "../../services/inventory/inventory.hpp"
#include "../../services/notifications/notifications.hpp"
#include "../../services/orders/orders.hpp"
#include "../../services/payments/payments.hpp"
#include "../../services/shipping/shipping.hpp"
#include "../../services/shop/paging.hpp"

#include <catch2/catch.hpp>

using namespace shop;

namespace {
Seed seed() {
  Seed s;
  s.skus["KB"] = {10, 4900};
  s.customers["alice"] = 100000;
  return s;
}
}  // namespace

TEST_CASE("orders: placing prices the order from the seed and is idempotent", "[shop][orders]") {
  auto r = orders::place(std::nullopt, {"o-1", "alice", "KB", 2}, seed());
  REQUIRE(r);
  REQUIRE(*r);
  CHECK((*r)->amount == 9800);
  CHECK((*r)->status == "placed");
  auto again = orders::place(**r, {"o-1", "alice", "KB", 2}, seed());
  REQUIRE(again);
  CHECK_FALSE(*again);
  SECTION("an unknown SKU costs nothing here: inventory refuses it") {
    auto u = orders::place(std::nullopt, {"o-2", "alice", "NOPE", 1}, seed());
    REQUIRE(u);
    CHECK((*u)->amount == 0);
  }
}

TEST_CASE("orders: what no service could act on is refused with the reason", "[shop][orders]") {
  auto r = orders::place(std::nullopt, {"o-1", "alice", "KB", 0}, seed());
  REQUIRE_FALSE(r);
  CHECK(r.error().message() == "PlaceOrder o-1: quantity must be positive, got 0");
  CHECK_FALSE(orders::place(std::nullopt, {"", "alice", "KB", 1}, seed()));
  CHECK_FALSE(orders::place(std::nullopt, {"o-3", "", "KB", 1}, seed()));
}

TEST_CASE("orders: the first terminal outcome wins, later ones change nothing", "[shop][orders]") {
  OrderView o{"o-1", "alice", "KB", 1, 4900, "placed", ""};
  auto c = orders::cancel(o, "changed my mind");
  REQUIRE(c);
  CHECK(c->status == "cancelled");
  CHECK_FALSE(orders::confirm(*c));
  CHECK_FALSE(orders::cancel(*c, "again"));
  auto ok = orders::confirm(o);
  REQUIRE(ok);
  CHECK_FALSE(orders::cancel(*ok, "too late"));
}

TEST_CASE("inventory: reserving takes stock on hand, or says why not", "[shop][inventory]") {
  StockItem kb{"KB", 10, 10, 0, 0};
  OrderPlaced placed{"o-1", "alice", "KB", 4, 19600};
  auto out = inventory::reserve(kb, std::nullopt, placed);
  auto* r = std::get_if<inventory::Reserved>(&out);
  REQUIRE(r);
  CHECK(r->stock.on_hand == 6);
  CHECK(r->stock.reserved == 4);
  CHECK(r->event.amount == 19600);
  CHECK(std::holds_alternative<std::monostate>(inventory::reserve(kb, r->reservation, placed)));

  auto scarce = inventory::reserve(StockItem{"KB", 10, 3, 7, 0}, std::nullopt, placed);
  REQUIRE(std::get_if<inventory::Rejected>(&scarce));
  CHECK(std::get<inventory::Rejected>(scarce).event.reason == "only 3 of KB on hand, 4 wanted");
  auto unknown = inventory::reserve(std::nullopt, std::nullopt, placed);
  CHECK(std::get<inventory::Rejected>(unknown).event.reason == "unknown SKU 'KB'");
}

TEST_CASE("inventory: release and commit keep on hand + reserved + shipped constant", "[shop][inventory]") {
  StockItem s{"KB", 10, 6, 4, 0};
  Reservation held{"o-1", "KB", 4, "held"};
  auto total = [](const StockItem& x) { return x.on_hand + x.reserved + x.shipped; };

  auto released = inventory::release(s, held);
  REQUIRE(released);
  CHECK(released->reservation.state == "released");
  CHECK(released->stock.on_hand == 10);
  CHECK(total(released->stock) == 10);
  CHECK_FALSE(inventory::release(released->stock, released->reservation));  // twice: no change
  CHECK_FALSE(inventory::commit(released->stock, released->reservation));   // shipped after cancel: no

  auto committed = inventory::commit(s, held);
  REQUIRE(committed);
  CHECK(committed->stock.shipped == 4);
  CHECK(total(committed->stock) == 10);
  auto returned = inventory::release(committed->stock, committed->reservation);  // cancelled after shipping
  REQUIRE(returned);
  CHECK(returned->reservation.state == "returned");
  CHECK(returned->stock.shipped == 0);
  CHECK(total(returned->stock) == 10);
}

TEST_CASE("payments: charge once, decline without credit, refund a cancelled capture", "[shop][payments]") {
  Account a{"alice", 10000, 10000, 0, 0};
  StockReserved r{"o-1", "alice", "KB", 1, 4900};
  auto c = payments::charge(a, std::nullopt, r);
  REQUIRE(c);
  REQUIRE(c->captured);
  CHECK(c->account->balance == 5100);
  CHECK_FALSE(payments::charge(*c->account, c->payment, r));  // again: nothing

  auto poor = payments::charge(Account{"erin", 3000, 3000, 0, 0}, std::nullopt, StockReserved{"o-2", "erin", "KB", 1, 4900});
  REQUIRE(poor);
  REQUIRE(poor->declined);
  CHECK(poor->declined->reason == "credit 3000 is less than 4900");
  CHECK_FALSE(poor->account);

  auto refund = payments::cancel(*c->account, c->payment, OrderCancelled{"o-1", "alice", "changed"});
  REQUIRE(refund);
  REQUIRE(refund->refunded);
  CHECK(refund->refunded->amount == 4900);
  CHECK(refund->account->balance == 10000);
  CHECK(refund->account->balance + refund->account->captured - refund->account->refunded == a.initial);
  CHECK_FALSE(payments::cancel(*refund->account, refund->payment, OrderCancelled{"o-1", "alice", "again"}));
}

TEST_CASE("payments: a cancellation that arrives first means nothing is charged", "[shop][payments]") {
  auto first = payments::cancel(Account{"alice", 10000, 10000, 0, 0}, std::nullopt, OrderCancelled{"o-1", "alice", "x"});
  REQUIRE(first);
  CHECK(first->payment.cancelled);
  CHECK_FALSE(payments::charge(Account{"alice", 10000, 10000, 0, 0}, first->payment,
                               StockReserved{"o-1", "alice", "KB", 1, 4900}));
}

TEST_CASE("shipping: one shipment per paid order, none after a cancellation", "[shop][shipping]") {
  auto s = shipping::schedule(std::nullopt, PaymentCaptured{"o-1", "alice", 4900});
  REQUIRE(s);
  CHECK(s->shipment_id == "shp-o-1");
  CHECK_FALSE(shipping::schedule(*s, PaymentCaptured{"o-1", "alice", 4900}));
  auto cancelled = shipping::cancel(*s, OrderCancelled{"o-1", "alice", "x"});
  REQUIRE(cancelled);
  CHECK(cancelled->status == "cancelled");
  auto tombstone = shipping::cancel(std::nullopt, OrderCancelled{"o-2", "alice", "x"});
  REQUIRE(tombstone);
  CHECK_FALSE(shipping::schedule(*tombstone, PaymentCaptured{"o-2", "alice", 1}));
}

TEST_CASE("notifications: one message per outcome, keyed by order and kind", "[shop][notifications]") {
  auto n = notifications::refunded(PaymentRefunded{"o-1", "alice", 4905});
  CHECK(n.key == "o-1:refunded");
  CHECK(n.text == "Dear alice, 49.05 for order o-1 was refunded.");
  CHECK(notifications::cancelled(OrderCancelled{"o-1", "bob", "stock: gone"}).text ==
        "Dear bob, your order o-1 was cancelled (stock: gone).");
}

TEST_CASE("seed: a seed file loads from text, and mistakes are named by line", "[shop][seed]") {
  auto s = parse_seed("[skus.KB]\nstock = 5\nprice = 100\n[customers.alice]  # caf\xc3\xa9\ncredit = 7\n", "seed.toml");
  REQUIRE(s);
  CHECK(s->skus.at("KB").price == 100);
  CHECK(s->customers.at("alice") == 7);
  auto negative = parse_seed("[skus.KB]\nstock = -5\nprice = 100\n[customers.a]\ncredit = 7\n", "seed.toml");
  REQUIRE_FALSE(negative);
  CHECK(negative.error().message() == "seed.toml:2: 'stock' of sku 'KB' must not be negative");
  // toml++ 3.3 has undefined behaviour on such a name (see topology_loader_test.cpp).
  auto accented = parse_seed("[skus.KB]\nstock = 5\nprice = 100\n[customers.\"jos\xc3\xa9\"]\ncredit = 7\n", "seed.toml");
  REQUIRE_FALSE(accented);
  CHECK(accented.error().message() ==
        "seed.toml:4: non-ASCII character in a key (names are A-Z a-z 0-9 _ -, and ASCII in quotes)");
}

TEST_CASE("shop listings: a page holds 1 to 500 entries; a limit of 0 or less is refused", "[shop][paging]") {
  auto refused = page_limit("ListOrders", 0);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == troupe::Rejection::Code::invalid);
  CHECK(refused.error().message() == "ListOrders: limit must be 1..500, got 0");
  REQUIRE_FALSE(page_limit("GetBalance", -3));
  CHECK(page_limit("GetBalance", -3).error().message() == "GetBalance: limit must be 1..500, got -3");
  CHECK(*page_limit("ListOrders", std::nullopt) == 500);
  CHECK(*page_limit("ListOrders", 1) == 1);
  CHECK(*page_limit("ListOrders", 500) == 500);
  CHECK(*page_limit("ListOrders", 100000) == 500);
}
