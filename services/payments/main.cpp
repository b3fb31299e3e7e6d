// payments: charges customers for reserved stock, refunds cancelled orders.
//   reacts to: inventory/StockReserved, orders/OrderCancelled
//   emits:     PaymentCaptured, PaymentDeclined, PaymentRefunded
//   answers:   GetBalance
#include "../shop/service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return shop::service_main(argc, argv, "payments", "charges customers for reserved stock",
                            shop::payments::install);
}
