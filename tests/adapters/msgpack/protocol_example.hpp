// The worked example of docs/protocol.md §5, shared by the byte-for-byte test and
// the cross-language probe.
#pragma once

#include <troupe/domain/envelope.hpp>
#include <troupe/domain/message.hpp>

#include <cstdint>
#include <string>

namespace example {

struct OrderPlaced {
  std::string order_id;
  std::string sku;
  std::int64_t quantity = 0;
  TROUPE_MESSAGE(OrderPlaced, order_id, sku, quantity)
};

inline troupe::Envelope envelope() {
  troupe::Envelope e;
  e.id = "0193c8f2-7a4b-7c3d-9e1f-0a1b2c3d4e5f";
  e.source = "orders";
  e.type = "OrderPlaced";
  e.time = "2026-11-27T18:00:00.000000Z";
  e.kind = troupe::Kind::event;
  e.sequence = 42;
  e.correlationid = "order-1";
  e.causationid = "0193c8f2-7a40-7000-8000-000000000001";
  return e;
}

inline OrderPlaced payload() { return {"order-1", "SKU-1", 2}; }

}  // namespace example
