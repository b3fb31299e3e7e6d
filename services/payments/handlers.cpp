// payments: handlers around the pure decisions in payments.hpp.
#include "handlers.hpp"

#include "../shop/paging.hpp"
#include "payments.hpp"

namespace shop::payments {
namespace {

constexpr std::string_view kAccounts = "accounts", kPayments = "payments";

void store(troupe::Context& ctx, const Outcome& o) {
  if (o.account) ctx.state().save(kAccounts, o.account->customer, *o.account);
  ctx.state().save(kPayments, o.payment.order_id, o.payment);
  if (o.captured) ctx.emit(*o.captured, o.payment.order_id);
  if (o.declined) ctx.emit(*o.declined, o.payment.order_id);
  if (o.refunded) ctx.emit(*o.refunded, o.payment.order_id);
}

}  // namespace

void install(troupe::Handlers& node, const Seed& seed) {
  node.publishes<PaymentCaptured, PaymentDeclined, PaymentRefunded>();
  node.initialize([&seed](troupe::StateView& state) {
    for (const auto& [customer, credit] : seed.customers)
      if (!state.load<Account>(kAccounts, customer))
        state.save(kAccounts, customer, Account{customer, credit, credit, 0, 0});
  });
  node.on<StockReserved>([](const StockReserved& e, troupe::Context& ctx) {
    auto o = charge(ctx.state().load<Account>(kAccounts, e.customer), ctx.state().load<Payment>(kPayments, e.order_id), e);
    if (o) store(ctx, *o);
  });
  node.on<OrderCancelled>([](const OrderCancelled& e, troupe::Context& ctx) {
    auto o = cancel(ctx.state().load<Account>(kAccounts, e.customer), ctx.state().load<Payment>(kPayments, e.order_id), e);
    if (o) store(ctx, *o);
  });
  node.on_query<GetBalance>([](const GetBalance& q, const troupe::QueryContext& ctx) -> troupe::Result<BalanceReport> {
    auto limit = page_limit("GetBalance", q.limit);
    if (!limit) return limit.error();
    BalanceReport out;
    ctx.state().for_each<Account>(kAccounts, [&](std::string_view, const Account& a) { out.accounts.push_back(a); });
    out.payments = page<Payment>(ctx.state(), kPayments, q.after.value_or(""), *limit);
    return out;
  });
}

}  // namespace shop::payments
