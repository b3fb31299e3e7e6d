// shipping: schedules a shipment for every paid order.
//   reacts to: payments/PaymentCaptured, orders/OrderCancelled
//   emits:     ShipmentScheduled
//   answers:   ListShipments
#include "../shop/service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return shop::service_main(argc, argv, "shipping", "schedules a shipment for every paid order",
                            shop::shipping::install);
}
