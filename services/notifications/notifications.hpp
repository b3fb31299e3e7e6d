// notifications: the decisions, pure — the message a customer would receive.
#pragma once

#include "../orders/messages.hpp"
#include "../payments/messages.hpp"
#include "messages.hpp"

namespace shop::notifications {

Notification confirmed(const OrderConfirmed& e);
Notification cancelled(const OrderCancelled& e);
Notification refunded(const PaymentRefunded& e);

}  // namespace shop::notifications
