// inventory: reserves stock for placed orders, releases or commits it as sagas end.
//   reacts to: orders/OrderPlaced, orders/OrderCancelled, payments/PaymentDeclined,
//              shipping/ShipmentScheduled
//   emits:     StockReserved, StockRejected, StockReleased
//   answers:   GetStock
#include "../shop/service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return shop::service_main(argc, argv, "inventory", "reserves stock for placed orders",
                            shop::inventory::install);
}
