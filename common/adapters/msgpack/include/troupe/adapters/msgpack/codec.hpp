// The msgpack codec: envelopes and typed payloads to and from bytes (docs/protocol.md).
// Decoding is safe on hostile input: explicit limits bound memory and recursion, and
// every failure is a returned Rejection naming the message, its size, and the field.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <troupe/domain/envelope.hpp>
#include <troupe/domain/message.hpp>
#include <troupe/domain/result.hpp>
#include <troupe/domain/topology.hpp>

namespace troupe::codec {

// Bounds applied while decoding; anything beyond them is rejected before it is
// allocated. The defaults suit messages up to 1 MiB.
struct Limits {
  std::size_t max_bytes = 1u << 20;      // whole encoded value
  std::size_t max_depth = 32;            // nesting of arrays and maps
  std::size_t max_string = 1u << 20;     // bytes in one string
  std::size_t max_binary = 1u << 20;     // bytes in one binary
  std::size_t max_array = 1u << 16;      // elements in one array
  std::size_t max_map = 1u << 16;        // entries in one map
};

// The limits a node of `topology` decodes a payload of `type` with: max_message_bytes
// in all, the type's max_field_bytes per string and binary. A sender that reads a
// payload the receiver will read (a partition key) reads it within the same.
Limits payload_limits(const Topology& topology, std::string_view type);

// Limits for an envelope: small and flat.
inline constexpr Limits kEnvelopeLimits{4096, 2, 1024, 0, 16, 64};

// Encodes the envelope as a msgpack map with a fixed key order.
std::string encode_envelope(const Envelope& envelope);

// What makes an envelope one its receivers would refuse (kEnvelopeLimits: a string over
// 1024 bytes, the whole over 4096), e.g. "its correlationid of 61440 bytes is over the
// limit of 1024 bytes per string"; nullopt when it fits. `encoded` is its size as
// encode_envelope wrote it. A sender checks before it sends or commits.
std::optional<std::string> envelope_over_limits(const Envelope& envelope, std::size_t encoded);

// Decodes an envelope. Unknown keys are ignored (forward compatibility); a missing
// required key (specversion, id, source, type, kind) is rejected by name.
// Envelopes written as troupe writes them (a flat map of strings and unsigned integers)
// are read straight from the bytes; anything else goes through the general decoder,
// which words every rejection. Both accept and refuse the same inputs.
Result<Envelope> decode_envelope(std::string_view bytes, const Limits& limits = kEnvelopeLimits);

namespace detail {
// The general decoder alone (through msgpack-c's object tree), for differential tests.
Result<Envelope> decode_envelope_tree(std::string_view bytes, const Limits& limits = kEnvelopeLimits);
}  // namespace detail

// Encodes a typed message as a msgpack map keyed by field name.
template <Message T>
std::string encode(const T& message);

// Decodes a typed message. Unknown keys are ignored; a missing field is rejected
// unless it is a std::optional. Errors read like
// "OrderPlaced (35 bytes): field 'quantity': expected integer, got string".
template <Message T>
Result<T> decode(std::string_view bytes, const Limits& limits = {});

// Checks that `bytes` is exactly one well-formed msgpack value within `limits`;
// `name` is used in the rejection ("payload (12 bytes): truncated").
Result<void> validate(std::string_view bytes, std::string_view name, const Limits& limits = {});

// The partition key of a payload (docs/protocol.md §7.10): the top-level field `field`
// of the payload map, a string as its bytes, an integer in decimal; "" when the field is
// absent or nil. Any other kind of value, or a payload that is no map, is refused
// naming the message and the field.
Result<std::string> partition_key(std::string_view bytes, std::string_view name, std::string_view field,
                                  const Limits& limits = {});

}  // namespace troupe::codec

#include <troupe/adapters/msgpack/detail/payload.hpp>
