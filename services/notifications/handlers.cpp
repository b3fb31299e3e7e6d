// notifications: handlers around the pure decisions in notifications.hpp.
#include "handlers.hpp"

#include "notifications.hpp"

namespace shop::notifications {
namespace {
constexpr std::string_view kTable = "notifications";
void record(troupe::Context& ctx, const Notification& n) { ctx.state().save(kTable, n.key, n); }
}  // namespace

void install(troupe::Node& node, const Seed&) {
  node.on<OrderConfirmed>([](const OrderConfirmed& e, troupe::Context& ctx) { record(ctx, confirmed(e)); });
  node.on<OrderCancelled>([](const OrderCancelled& e, troupe::Context& ctx) { record(ctx, cancelled(e)); });
  node.on<PaymentRefunded>([](const PaymentRefunded& e, troupe::Context& ctx) { record(ctx, refunded(e)); });
  node.on_query<ListNotifications>([](const ListNotifications& q, const troupe::QueryContext& ctx) {
    NotificationList out;
    ctx.state().for_each<Notification>(kTable, [&](std::string_view key, const Notification& n) {
      if (key <= q.after.value_or("")) return true;
      out.notifications.push_back(n);
      return static_cast<std::int64_t>(out.notifications.size()) < q.limit.value_or(500);
    });
    return out;
  });
}

}  // namespace shop::notifications
