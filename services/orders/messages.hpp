// orders: its wire contract — the commands it accepts, the events it emits, the
// queries it answers.
#pragma once

#include <troupe/domain/message.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shop {

// commands
struct PlaceOrder {
  std::string order_id;
  std::string customer;
  std::string sku;
  std::int64_t quantity = 0;
  TROUPE_MESSAGE(PlaceOrder, order_id, customer, sku, quantity)
};

struct CancelOrder {
  std::string order_id;
  std::string reason;
  TROUPE_MESSAGE(CancelOrder, order_id, reason)
};

// events
struct OrderPlaced {
  std::string order_id;
  std::string customer;
  std::string sku;
  std::int64_t quantity = 0;
  std::int64_t amount = 0;  // cents
  TROUPE_MESSAGE(OrderPlaced, order_id, customer, sku, quantity, amount)
};

struct OrderConfirmed {
  std::string order_id;
  std::string customer;
  TROUPE_MESSAGE(OrderConfirmed, order_id, customer)
};

struct OrderCancelled {
  std::string order_id;
  std::string customer;
  std::string reason;
  TROUPE_MESSAGE(OrderCancelled, order_id, customer, reason)
};

// queries
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

struct GetOrder {
  std::string order_id;
  using Reply = OrderView;
  TROUPE_MESSAGE(GetOrder, order_id)
};

struct OrderList {
  std::vector<OrderView> orders;
  TROUPE_MESSAGE(OrderList, orders)
};

// Pages of at most `limit` orders with order_id > `after`, in order_id order.
struct ListOrders {
  std::optional<std::string> after;   // absent: from the start
  std::optional<std::int64_t> limit;  // 1..500 (more is 500); absent: 500
  using Reply = OrderList;
  TROUPE_MESSAGE(ListOrders, after, limit)
};

}  // namespace shop
