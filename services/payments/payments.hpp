// payments: the decisions, pure — charging a customer for reserved stock, refunding a
// cancelled order that was charged.
#pragma once

#include "../inventory/messages.hpp"
#include "../orders/messages.hpp"
#include "messages.hpp"

#include <optional>

namespace shop::payments {

struct Outcome {
  std::optional<Account> account;  // changed account, if any
  Payment payment;
  std::optional<PaymentCaptured> captured;
  std::optional<PaymentDeclined> declined;
  std::optional<PaymentRefunded> refunded;
};

// Charge for reserved stock; nullopt when this order was already charged, declined or
// cancelled (a cancellation that arrives first wins: nothing is charged).
std::optional<Outcome> charge(const std::optional<Account>& account, const std::optional<Payment>& existing,
                              const StockReserved& reserved);

// A cancellation: refund what was captured, or remember the order so that a later
// StockReserved charges nothing. nullopt when there is nothing to change.
std::optional<Outcome> cancel(const std::optional<Account>& account, const std::optional<Payment>& existing,
                              const OrderCancelled& cancelled);

}  // namespace shop::payments
