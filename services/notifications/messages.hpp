// notifications: its wire contract (it emits nothing: it records what it would send).
#pragma once

#include <troupe/domain/message.hpp>

#include "../shop/version.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shop {

// A message notifications would send to a customer.
struct Notification {
  std::string key;  // order_id + ":" + kind
  std::string order_id;
  std::string customer;
  std::string text;
#if TROUPE_SHOP_VERSION >= 2
  std::optional<std::string> channel = "email";  // version 2: how the customer is told
  TROUPE_MESSAGE(Notification, key, order_id, customer, text, channel)
#else
  TROUPE_MESSAGE(Notification, key, order_id, customer, text)
#endif
};

// A page of notifications.
struct NotificationList {
  std::vector<Notification> notifications;
#if TROUPE_SHOP_VERSION >= 2
  static constexpr std::uint32_t kSchemaVersion = 2;
#endif
  TROUPE_MESSAGE(NotificationList, notifications)
};

// Pages of notifications with key > `after` (query to notifications).
struct ListNotifications {
  std::optional<std::string> after;   // absent: from the start
  std::optional<std::int64_t> limit;  // 1..500 (more is 500); absent: 500
  using Reply = NotificationList;
  TROUPE_MESSAGE(ListNotifications, after, limit)
};

}  // namespace shop
