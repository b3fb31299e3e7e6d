// UUIDv7 generation with per-thread state: no locks, monotonic within a thread.
#include <troupe/domain/id.hpp>

#include <array>
#include <chrono>
#include <random>

namespace troupe {
namespace {

struct Generator {
  std::mt19937_64 rng;
  std::int64_t last_ms = -1;
  std::uint16_t counter = 0;  // 12 bits used: rand_a as a monotonic counter

  Generator() {
    std::random_device rd;
    std::seed_seq seed{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    rng.seed(seed);
  }
};

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string new_id() {
  thread_local Generator gen;
  std::int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  if (ms > gen.last_ms) {
    gen.last_ms = ms;
    gen.counter = static_cast<std::uint16_t>(gen.rng() & 0x3ff);  // leave room to count up
  } else {
    // Same millisecond (or the clock stepped back): keep ids increasing on this thread.
    if (++gen.counter > 0xfff) {
      ++gen.last_ms;
      gen.counter = 0;
    }
    ms = gen.last_ms;
  }
  std::array<std::uint8_t, 16> b{};
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | ((gen.counter >> 8) & 0x0f));
  b[7] = static_cast<std::uint8_t>(gen.counter & 0xff);
  std::uint64_t r = gen.rng();
  for (int i = 8; i < 16; ++i) b[i] = static_cast<std::uint8_t>(r >> (8 * (i - 8)));
  b[8] = static_cast<std::uint8_t>(0x80 | (b[8] & 0x3f));  // RFC 9562 variant

  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0x0f]);
  }
  return out;
}

std::optional<std::int64_t> id_unix_ms(std::string_view id) {
  if (id.size() != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' ||
      id[14] != '7')
    return std::nullopt;
  std::int64_t ms = 0;
  int digits = 0;
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    int v = hex_value(id[i]);
    if (v < 0) return std::nullopt;
    if (digits++ < 12) ms = (ms << 4) | v;
  }
  return ms;
}

}  // namespace troupe
