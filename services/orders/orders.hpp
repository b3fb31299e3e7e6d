// orders: the decisions, pure — placing an order, and where each outcome takes it.
#pragma once

#include "../shop/seed.hpp"
#include "messages.hpp"

#include <troupe/domain/result.hpp>

#include <optional>

namespace shop::orders {

// A new order from a PlaceOrder: priced from the seed (an unknown SKU costs 0 and is
// refused by inventory). Rejects what no service could act on. nullopt when an order
// with that id already exists (placing is idempotent).
troupe::Result<std::optional<OrderView>> place(const std::optional<OrderView>& existing,
                                               const PlaceOrder& cmd, const Seed& seed);

// The order after a terminal outcome, or nullopt when it is already terminal (a late
// or racing outcome changes nothing).
std::optional<OrderView> confirm(const OrderView& order);
std::optional<OrderView> cancel(const OrderView& order, const std::string& reason);

bool terminal(const OrderView& order);

}  // namespace shop::orders
