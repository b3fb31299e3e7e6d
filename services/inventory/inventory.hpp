// inventory: the decisions, pure — reserving stock for an order, releasing it when the
// saga fails or is cancelled, committing it when the order ships.
#pragma once

#include "../orders/messages.hpp"
#include "messages.hpp"

#include <optional>
#include <variant>

namespace shop::inventory {

// What reserving does: either a reservation (and the stock it takes) or a refusal.
struct Reserved {
  StockItem stock;
  Reservation reservation;
  StockReserved event;
};
struct Rejected {
  StockRejected event;
};
using ReserveOutcome = std::variant<std::monostate, Reserved, Rejected>;  // monostate: already decided

ReserveOutcome reserve(const std::optional<StockItem>& stock, const std::optional<Reservation>& existing,
                       const OrderPlaced& order);

// A change to one SKU and one reservation, with the event it announces (if any).
struct Change {
  StockItem stock;
  Reservation reservation;
  std::optional<StockReleased> released;
};

// Release after a declined payment or a cancellation: a held reservation goes back on
// hand; a committed one (already shipped) is returned. Anything else: no change.
std::optional<Change> release(const StockItem& stock, const Reservation& reservation);

// Commit when the shipment is scheduled: held -> shipped. Anything else: no change.
std::optional<Change> commit(const StockItem& stock, const Reservation& reservation);

}  // namespace shop::inventory
