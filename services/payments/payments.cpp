// payments: pure decisions.
#include "payments.hpp"

namespace shop::payments {

std::optional<Outcome> charge(const std::optional<Account>& account, const std::optional<Payment>& existing,
                              const StockReserved& r) {
  if (existing) return std::nullopt;
  Outcome out;
  out.payment = Payment{r.order_id, r.customer, 0, 0, false};
  if (!account) {
    out.declined = PaymentDeclined{r.order_id, r.customer, "unknown customer '" + r.customer + "'"};
    return out;
  }
  if (account->balance < r.amount) {
    out.declined = PaymentDeclined{r.order_id, r.customer,
                                   "credit " + std::to_string(account->balance) + " is less than " +
                                       std::to_string(r.amount)};
    return out;
  }
  Account next = *account;
  next.balance -= r.amount;
  next.captured += r.amount;
  out.account = next;
  out.payment.captured = r.amount;
  out.captured = PaymentCaptured{r.order_id, r.customer, r.amount};
  return out;
}

std::optional<Outcome> cancel(const std::optional<Account>& account, const std::optional<Payment>& existing,
                              const OrderCancelled& c) {
  Outcome out;
  if (!existing) {
    out.payment = Payment{c.order_id, c.customer, 0, 0, true};
    return out;
  }
  std::int64_t due = existing->captured - existing->refunded;
  if (due <= 0 || !account) return std::nullopt;
  Account next = *account;
  next.balance += due;
  next.refunded += due;
  out.account = next;
  out.payment = *existing;
  out.payment.refunded += due;
  out.refunded = PaymentRefunded{c.order_id, c.customer, due};
  return out;
}

}  // namespace shop::payments
