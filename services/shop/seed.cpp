// Seed file loader (TOML): [skus.NAME] stock/price, [customers.NAME] credit.
#include "seed.hpp"

#include <troupe/adapters/toml/screen.hpp>

#include <toml++/toml.h>

#include <fstream>
#include <sstream>

namespace shop {
namespace {

using Code = troupe::Rejection::Code;

troupe::Rejection at(const std::string& path, const toml::node& n, std::string what, Code code = Code::invalid) {
  return troupe::reject(code, path + ":" + std::to_string(n.source().begin.line), std::move(what));
}

}  // namespace

troupe::Result<Seed> load_seed(const std::string& path) {
  std::ifstream in(path);
  if (!in) return troupe::reject(Code::missing, path, "cannot read the seed file");
  std::stringstream text;
  text << in.rdbuf();
  return parse_seed(text.str(), path);
}

troupe::Result<Seed> parse_seed(std::string_view text, const std::string& path) {
  if (auto screened = troupe::toml::screen_toml(text, path); !screened) return screened.error();
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return troupe::reject(Code::malformed, path + ":" + std::to_string(e.source().begin.line),
                          std::string(e.description()));
  }
  Seed seed;
  for (auto&& [k, v] : root) {
    if (k.str() != "skus" && k.str() != "customers")
      return at(path, v, "unknown table '" + std::string(k.str()) + "' (expected [skus.NAME] and [customers.NAME])");
  }
  auto number = [&](const toml::table& t, std::string_view key, const std::string& where,
                    std::int64_t& out) -> std::optional<troupe::Rejection> {
    const toml::node* n = t.get(key);
    if (!n) return at(path, t, where + " has no '" + std::string(key) + "'", Code::missing);
    if (!n->is_integer()) return at(path, *n, "'" + std::string(key) + "' of " + where + " must be an integer", Code::wrong_type);
    out = **n->as_integer();
    if (out < 0) return at(path, *n, "'" + std::string(key) + "' of " + where + " must not be negative");
    return std::nullopt;
  };
  if (auto* skus = root["skus"].as_table()) {
    for (auto&& [k, v] : *skus) {
      std::string where = "sku '" + std::string(k.str()) + "'";
      auto* t = v.as_table();
      if (!t) return at(path, v, where + " must be a table with stock and price", Code::wrong_type);
      for (auto&& [key, val] : *t)
        if (key.str() != "stock" && key.str() != "price")
          return at(path, val, "unknown key '" + std::string(key.str()) + "' in " + where);
      SkuSeed s;
      if (auto e = number(*t, "stock", where, s.stock)) return *e;
      if (auto e = number(*t, "price", where, s.price)) return *e;
      seed.skus.emplace(std::string(k.str()), s);
    }
  }
  if (auto* customers = root["customers"].as_table()) {
    for (auto&& [k, v] : *customers) {
      std::string where = "customer '" + std::string(k.str()) + "'";
      auto* t = v.as_table();
      if (!t) return at(path, v, where + " must be a table with credit", Code::wrong_type);
      for (auto&& [key, val] : *t)
        if (key.str() != "credit") return at(path, val, "unknown key '" + std::string(key.str()) + "' in " + where);
      std::int64_t credit = 0;
      if (auto e = number(*t, "credit", where, credit)) return *e;
      seed.customers.emplace(std::string(k.str()), credit);
    }
  }
  if (seed.skus.empty()) return troupe::reject(Code::missing, path + ":1", "no [skus.NAME] in the seed");
  if (seed.customers.empty()) return troupe::reject(Code::missing, path + ":1", "no [customers.NAME] in the seed");
  return seed;
}

}  // namespace shop
