// shipping: the decisions, pure — schedule a shipment once an order is paid, unless it
// was cancelled first; cancel a scheduled shipment when its order is cancelled.
#pragma once

#include "../orders/messages.hpp"
#include "../payments/messages.hpp"
#include "messages.hpp"

#include <optional>

namespace shop::shipping {

// The shipment to schedule, or nullopt (already scheduled, or the order was cancelled).
std::optional<Shipment> schedule(const std::optional<Shipment>& existing, const PaymentCaptured& paid);

// The shipment record after a cancellation (a tombstone if none was scheduled yet).
std::optional<Shipment> cancel(const std::optional<Shipment>& existing, const OrderCancelled& cancelled);

}  // namespace shop::shipping
