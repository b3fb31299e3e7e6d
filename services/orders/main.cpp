// orders: takes orders and closes each saga.
//   accepts:   PlaceOrder, CancelOrder
//   reacts to: inventory/StockRejected, payments/PaymentDeclined, shipping/ShipmentScheduled
//   emits:     OrderPlaced, OrderConfirmed, OrderCancelled
//   answers:   GetOrder, ListOrders
#include "../shop/service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return shop::service_main(argc, argv, "orders", "takes orders and closes each saga", shop::orders::install);
}
