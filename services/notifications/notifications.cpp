// notifications: pure decisions.
#include "notifications.hpp"

namespace shop::notifications {
namespace {
std::string money(std::int64_t cents) {
  std::string c = std::to_string(cents % 100);
  return std::to_string(cents / 100) + "." + (c.size() < 2 ? "0" + c : c);
}
}  // namespace

Notification confirmed(const OrderConfirmed& e) {
  return {e.order_id + ":confirmed", e.order_id, e.customer,
          "Dear " + e.customer + ", your order " + e.order_id + " is confirmed and on its way."};
}

Notification cancelled(const OrderCancelled& e) {
  return {e.order_id + ":cancelled", e.order_id, e.customer,
          "Dear " + e.customer + ", your order " + e.order_id + " was cancelled (" + e.reason + ")."};
}

Notification refunded(const PaymentRefunded& e) {
  return {e.order_id + ":refunded", e.order_id, e.customer,
          "Dear " + e.customer + ", " + money(e.amount) + " for order " + e.order_id + " was refunded."};
}

}  // namespace shop::notifications
