// libFuzzer target: the shop's seed loader on arbitrary text. Never a crash; every
// rejection names the file and a line; accepted amounts are never negative.
#include "shop/seed.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto seed = shop::parse_seed(text, "fuzz-seed.toml");
  if (!seed) {
    const troupe::Rejection& r = seed.error();
    if (r.where.rfind("fuzz-seed.toml:", 0) != 0 || r.what.empty()) std::abort();
    return 0;
  }
  for (const auto& [_, sku] : seed->skus)
    if (sku.stock < 0 || sku.price < 0) std::abort();
  for (const auto& [_, credit] : seed->customers)
    if (credit < 0) std::abort();
  return 0;
}
