// notifications: handlers around the pure decisions in notifications.hpp.
#include "handlers.hpp"

#include "../shop/paging.hpp"
#include "notifications.hpp"

namespace shop::notifications {
namespace {
constexpr std::string_view kTable = "notifications";
void record(troupe::Context& ctx, const Notification& n) { ctx.state().save(kTable, n.key, n); }
}  // namespace

void install(troupe::Handlers& node, const Seed&) {
  node.on<OrderConfirmed>([](const OrderConfirmed& e, troupe::Context& ctx) { record(ctx, confirmed(e)); });
  node.on<OrderCancelled>([](const OrderCancelled& e, troupe::Context& ctx) { record(ctx, cancelled(e)); });
  node.on<PaymentRefunded>([](const PaymentRefunded& e, troupe::Context& ctx) { record(ctx, refunded(e)); });
  node.on_query<ListNotifications>([](const ListNotifications& q,
                                      const troupe::QueryContext& ctx) -> troupe::Result<NotificationList> {
    auto limit = page_limit("ListNotifications", q.limit);
    if (!limit) return limit.error();
    NotificationList out;
    out.notifications = page<Notification>(ctx.state(), kTable, q.after.value_or(""), *limit);
    return out;
  });
}

}  // namespace shop::notifications
