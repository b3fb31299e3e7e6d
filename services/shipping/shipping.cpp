// shipping: pure decisions.
#include "shipping.hpp"

namespace shop::shipping {

std::optional<Shipment> schedule(const std::optional<Shipment>& existing, const PaymentCaptured& paid) {
  if (existing) return std::nullopt;
  return Shipment{paid.order_id, "shp-" + paid.order_id, "scheduled"};
}

std::optional<Shipment> cancel(const std::optional<Shipment>& existing, const OrderCancelled& c) {
  if (!existing) return Shipment{c.order_id, "", "cancelled"};
  if (existing->status == "cancelled") return std::nullopt;
  Shipment next = *existing;
  next.status = "cancelled";
  return next;
}

}  // namespace shop::shipping
