#!/usr/bin/python3
"""shipping, written in Python: schedules a shipment for every paid order.
A drop-in replacement for the C++ shipping service (services/shipping/): the same
topology entry, messages and behaviour, on troupe's Python peer (python/troupe/).

  reacts to: payments/PaymentCaptured, orders/OrderCancelled
  emits:     ShipmentScheduled
  answers:   ListShipments

    services/shipping-py/shipping.py [--topology topology/shop.toml] [--state-dir DIR] [--contract]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "python"))

import troupe  # noqa: E402
from troupe import int64, message, optional, string, vector  # noqa: E402

# The wire contract (services/shipping/messages.hpp and the publishers' headers).
PaymentCaptured = message("PaymentCaptured", order_id=string, customer=string, amount=int64)
OrderCancelled = message("OrderCancelled", order_id=string, customer=string, reason=string)
ShipmentScheduled = message("ShipmentScheduled", order_id=string, shipment_id=string)
Shipment = message("Shipment", order_id=string, shipment_id=string, status=string)
ShipmentList = message("ShipmentList", shipments=vector(Shipment))
ListShipments = message("ListShipments", after=optional(string), limit=optional(int64))

SHIPMENTS = "shipments"
MAX_PAGE = 500


def build(topology, state_dir):
    node = troupe.Node(topology, "shipping", state_dir)
    node.publishes(ShipmentScheduled)

    @node.on(PaymentCaptured)
    def schedule(paid, ctx):
        if ctx.load(SHIPMENTS, paid["order_id"]) is not None:
            return  # already scheduled, or cancelled first: nothing to ship
        shipment = {"order_id": paid["order_id"], "shipment_id": "shp-" + paid["order_id"], "status": "scheduled"}
        ctx.save(SHIPMENTS, paid["order_id"], shipment)
        ctx.emit(ShipmentScheduled, {"order_id": shipment["order_id"], "shipment_id": shipment["shipment_id"]},
                 paid["order_id"])

    @node.on(OrderCancelled)
    def cancel(cancelled, ctx):
        shipment = ctx.load(SHIPMENTS, cancelled["order_id"])
        if shipment is None:
            shipment = {"order_id": cancelled["order_id"], "shipment_id": "", "status": "cancelled"}
        elif shipment["status"] == "cancelled":
            return
        ctx.save(SHIPMENTS, cancelled["order_id"], dict(shipment, status="cancelled"))

    @node.on_query(ListShipments, ShipmentList)
    def list_shipments(q, ctx):
        limit = q["limit"]
        if limit is not None and limit <= 0:
            raise troupe.Invalid(f"limit must be 1..{MAX_PAGE}, got {limit}")
        return {"shipments": ctx.scan(SHIPMENTS, q["after"] or "", min(limit or MAX_PAGE, MAX_PAGE))}

    return node


if __name__ == "__main__":
    sys.exit(troupe.service_main("shipping", "schedules a shipment for every paid order", build))
