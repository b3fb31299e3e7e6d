// The shop's seed data: SKUs with stock and price, customers with credit. Named by
// the topology's [mesh] seed, so every run starts from the same, reproducible state.
#pragma once

#include <troupe/domain/result.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace shop {

struct SkuSeed {
  std::int64_t stock = 0;
  std::int64_t price = 0;  // in cents
};

struct Seed {
  std::map<std::string, SkuSeed> skus;
  std::map<std::string, std::int64_t> customers;  // customer -> credit in cents
};

// Reads a seed file; every problem names file:line.
troupe::Result<Seed> load_seed(const std::string& path);

// The same from text; `name` stands for the file in messages.
troupe::Result<Seed> parse_seed(std::string_view text, const std::string& name);

}  // namespace shop
