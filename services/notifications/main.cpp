// notifications: records the message each customer would receive.
//   reacts to: orders/OrderConfirmed, orders/OrderCancelled, payments/PaymentRefunded
//   emits:     nothing
//   answers:   ListNotifications
#include "../shop/service_main.hpp"
#include "handlers.hpp"

int main(int argc, char** argv) {
  return shop::service_main(argc, argv, "notifications", "records the message each customer would receive",
                            shop::notifications::install);
}
