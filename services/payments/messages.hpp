// payments: its wire contract.
#pragma once

#include <troupe/domain/message.hpp>

#include "../shop/version.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shop {

// --- events

// The order's amount was taken from the customer's credit (event of payments).
// shipping schedules the shipment next.
struct PaymentCaptured {
  std::string order_id;
  std::string customer;
  std::int64_t amount = 0;
#if TROUPE_SHOP_VERSION >= 2
  std::optional<std::string> method = "credit";  // version 2: how it was paid
  static constexpr std::uint32_t kSchemaVersion = 2;
  TROUPE_MESSAGE(PaymentCaptured, order_id, customer, amount, method)
#else
  TROUPE_MESSAGE(PaymentCaptured, order_id, customer, amount)
#endif
};

// The customer's credit does not cover the order (event of payments). orders cancels
// the order and inventory releases its stock.
struct PaymentDeclined {
  std::string order_id;
  std::string customer;
  std::string reason;
  TROUPE_MESSAGE(PaymentDeclined, order_id, customer, reason)
};

// A captured amount went back to the customer after the order was cancelled (event of
// payments). notifications tells the customer.
struct PaymentRefunded {
  std::string order_id;
  std::string customer;
  std::int64_t amount = 0;
  TROUPE_MESSAGE(PaymentRefunded, order_id, customer, amount)
};

// --- queries

// One customer's credit.
struct Account {
  std::string customer;
  std::int64_t initial = 0;
  std::int64_t balance = 0;
  std::int64_t captured = 0;
  std::int64_t refunded = 0;
  TROUPE_MESSAGE(Account, customer, initial, balance, captured, refunded)
};

// What payments did for one order.
struct Payment {
  std::string order_id;
  std::string customer;
  std::int64_t captured = 0;
  std::int64_t refunded = 0;
  bool cancelled = false;  // the order was cancelled before any capture
  TROUPE_MESSAGE(Payment, order_id, customer, captured, refunded, cancelled)
};

// Every customer's credit, and a page of payments.
struct BalanceReport {
  std::vector<Account> accounts;
  std::vector<Payment> payments;  // a page: order_id > after
  TROUPE_MESSAGE(BalanceReport, accounts, payments)
};

// Asks payments for every account and a page of its payments (query).
struct GetBalance {
  std::optional<std::string> after;   // absent: from the start
  std::optional<std::int64_t> limit;  // 1..500 (more is 500); absent: 500
  using Reply = BalanceReport;
  TROUPE_MESSAGE(GetBalance, after, limit)
};

}  // namespace shop
