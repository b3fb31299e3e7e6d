// The shop as seen from outside: every order, reservation, payment and shipment,
// fetched page by page with the services' own queries (for verify, load, chaos).
#pragma once

#include "../../services/inventory/messages.hpp"
#include "../../services/orders/messages.hpp"
#include "../../services/payments/messages.hpp"
#include "../../services/shipping/messages.hpp"

#include <troupe/runtime/client.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace troupe::cli {

struct ShopSnapshot {
  std::map<std::string, shop::OrderView> orders;
  std::map<std::string, shop::Reservation> reservations;
  std::vector<shop::StockItem> stock;
  std::map<std::string, shop::Payment> payments;
  std::vector<shop::Account> accounts;
  std::map<std::string, shop::Shipment> shipments;
};

// Fills `out`; returns the first error, if a service did not answer.
std::optional<std::string> snapshot(Client& client, ShopSnapshot& out);

int verify_shop(Client& client, const Topology& t, int settle_ms, bool quiet);

}  // namespace troupe::cli
