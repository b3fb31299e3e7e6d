// Time-ordered identifiers (UUIDv7, RFC 9562) for messages, incarnations, orders.
// Generated without locks: each thread keeps its own generator state; ids made on
// one thread are strictly increasing, ids from different threads are unique with
// overwhelming probability (74 random bits per millisecond and thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace troupe {

// A new UUIDv7 in its canonical 36-character form, e.g.
// "0193c8f2-7a4b-7c3d-9e1f-0a1b2c3d4e5f".
std::string new_id();

// The Unix time in milliseconds encoded in a UUIDv7, or nullopt if `id` is not
// a canonical UUIDv7.
std::optional<std::int64_t> id_unix_ms(std::string_view id);

}  // namespace troupe
