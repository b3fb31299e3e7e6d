// inventory: its wire contract.
#pragma once

#include <troupe/domain/message.hpp>

#include "../shop/version.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shop {

// --- events

// Stock for an order is held (event of inventory). payments charges the customer next.
struct StockReserved {
  std::string order_id;
  std::string customer;
  std::string sku;
  std::int64_t quantity = 0;
  std::int64_t amount = 0;
#if TROUPE_SHOP_VERSION >= 2
  std::optional<std::string> warehouse = "main";  // version 2: where the stock is held
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(StockReserved, order_id, customer, sku, quantity, amount, warehouse)
#else
  TROUPE_MESSAGE(StockReserved, order_id, customer, sku, quantity, amount)
#endif
};

// An order's sku is unknown or short of stock (event of inventory). orders cancels the
// order.
struct StockRejected {
  std::string order_id;
  std::string sku;
  std::string reason;
  TROUPE_MESSAGE(StockRejected, order_id, sku, reason)
};

// Stock held for a cancelled order is available again (event of inventory).
struct StockReleased {
  std::string order_id;
  std::string sku;
  std::int64_t quantity = 0;
  TROUPE_MESSAGE(StockReleased, order_id, sku, quantity)
};

// --- queries

// One sku's stock.
struct StockItem {
  std::string sku;
  std::int64_t initial = 0;
  std::int64_t on_hand = 0;   // available to reserve
  std::int64_t reserved = 0;  // held for orders in flight
  std::int64_t shipped = 0;   // committed to shipments
  TROUPE_MESSAGE(StockItem, sku, initial, on_hand, reserved, shipped)
};

// Stock held for one order.
struct Reservation {
  std::string order_id;
  std::string sku;
  std::int64_t quantity = 0;
  std::string state;  // held | released | committed | returned
  TROUPE_MESSAGE(Reservation, order_id, sku, quantity, state)
};

// Every sku's stock, and a page of reservations.
struct StockReport {
  std::vector<StockItem> items;
  std::vector<Reservation> reservations;  // a page: order_id > after
  TROUPE_MESSAGE(StockReport, items, reservations)
};

// Asks inventory for its stock and a page of its reservations (query).
struct GetStock {
  std::optional<std::string> after;   // reservations page; absent: from the start
  std::optional<std::int64_t> limit;  // 1..500 (more is 500); absent: 500
  using Reply = StockReport;
  TROUPE_MESSAGE(GetStock, after, limit)
};

}  // namespace shop
