// shipping: its wire contract.
#pragma once

#include <troupe/domain/message.hpp>

#include "../shop/version.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shop {

// The order's shipment is scheduled (event of shipping). orders confirms the order and
// inventory commits its stock.
struct ShipmentScheduled {
  std::string order_id;
  std::string shipment_id;
#if TROUPE_SHOP_VERSION >= 2
  std::optional<std::string> carrier = "post";  // version 2: who delivers it
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(ShipmentScheduled, order_id, shipment_id, carrier)
#else
  TROUPE_MESSAGE(ShipmentScheduled, order_id, shipment_id)
#endif
};

// One order's shipment.
struct Shipment {
  std::string order_id;
  std::string shipment_id;
  std::string status;  // scheduled | cancelled (an order cancelled before or after scheduling)
  TROUPE_MESSAGE(Shipment, order_id, shipment_id, status)
};

// A page of shipments.
struct ShipmentList {
  std::vector<Shipment> shipments;
  TROUPE_MESSAGE(ShipmentList, shipments)
};

// Pages of shipments with order_id > `after` (query to shipping).
struct ListShipments {
  std::optional<std::string> after;   // absent: from the start
  std::optional<std::int64_t> limit;  // 1..500 (more is 500); absent: 500
  using Reply = ShipmentList;
  TROUPE_MESSAGE(ListShipments, after, limit)
};

}  // namespace shop
