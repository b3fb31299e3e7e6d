// orders: its wire contract — the commands it accepts, the events it emits, the
// queries it answers.
#pragma once

#include <troupe/domain/message.hpp>

#include "../shop/version.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shop {

// --- commands

// Places an order (command, sent to orders by a storefront or `troupe send`). Starts the
// order saga with OrderPlaced, or is refused (an empty order_id or customer, a quantity
// outside 1..1000000). An unknown sku is placed and then cancelled (StockRejected).
// Sending the same order_id again is applied once.
struct PlaceOrder {
  std::string order_id;        // chosen by the client; the saga's correlation id
  std::string customer;        // whose credit pays (payments declines an unknown one)
  std::string sku;             // what is ordered (inventory rejects an unknown one)
  std::int64_t quantity = 0;   // 1..1000000
  TROUPE_MESSAGE(PlaceOrder, order_id, customer, sku, quantity)
};

// Cancels an order that has not ended yet (command to orders). Ends its saga with
// OrderCancelled; an order that already ended stays as it is. Refused for an unknown
// order_id.
struct CancelOrder {
  std::string order_id;
  std::string reason;  // "" for "cancelled by the customer"
  TROUPE_MESSAGE(CancelOrder, order_id, reason)
};

// --- events

// An order was accepted (event of orders). inventory reserves its stock next.
struct OrderPlaced {
  std::string order_id;
  std::string customer;
  std::string sku;
  std::int64_t quantity = 0;
  std::int64_t amount = 0;  // cents
#if TROUPE_SHOP_VERSION >= 2
#ifdef TROUPE_SHOP_RETYPED
  std::optional<std::int64_t> channel;  // the mistake: version 2 writes a string
#else
  std::optional<std::string> channel = "web";  // version 2: the storefront the order came from
#endif
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(OrderPlaced, order_id, customer, sku, quantity, amount, channel)
#else
  TROUPE_MESSAGE(OrderPlaced, order_id, customer, sku, quantity, amount)
#endif
};

// The order's saga ended well: stock reserved, payment captured, shipment scheduled
// (event of orders; one of the two events that end a saga). notifications tells the
// customer.
struct OrderConfirmed {
  std::string order_id;
  std::string customer;
  TROUPE_MESSAGE(OrderConfirmed, order_id, customer)
};

// The order's saga ended without a sale (event of orders; one of the two events that
// end a saga): stock was short, the payment was declined, or the customer cancelled.
// inventory releases what it held, payments refunds what it captured, shipping cancels
// the shipment, notifications tells the customer.
struct OrderCancelled {
  std::string order_id;
  std::string customer;
  std::string reason;
  TROUPE_MESSAGE(OrderCancelled, order_id, customer, reason)
};

// --- queries

// An order as orders keeps it.
struct OrderView {
  std::string order_id;
  std::string customer;
  std::string sku;
  std::int64_t quantity = 0;
  std::int64_t amount = 0;
  std::string status;  // placed | confirmed | cancelled
  std::string reason;
  TROUPE_MESSAGE(OrderView, order_id, customer, sku, quantity, amount, status, reason)
};

// Asks orders for one order (query). Refused for an unknown order_id.
struct GetOrder {
  std::string order_id;
  using Reply = OrderView;
  TROUPE_MESSAGE(GetOrder, order_id)
};

// A page of orders.
struct OrderList {
  std::vector<OrderView> orders;
  TROUPE_MESSAGE(OrderList, orders)
};

// Pages of at most `limit` orders with order_id > `after`, in order_id order (query to
// orders). An empty page is the end.
struct ListOrders {
  std::optional<std::string> after;   // absent: from the start
  std::optional<std::int64_t> limit;  // 1..500 (more is 500); absent: 500
  using Reply = OrderList;
  TROUPE_MESSAGE(ListOrders, after, limit)
};

}  // namespace shop
