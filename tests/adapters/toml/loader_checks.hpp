// Shared by the topology loader's tests: a topology text with one piece replaced, and the
// error a text is refused with.
#pragma once

#include <troupe/adapters/toml/topology_loader.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace loader_checks {

// `text` with the first `from` replaced by `to` (which must be there).
inline std::string with(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

// The message `text` is refused with, loaded as `file`.
inline std::string refusal(const std::string& text, const std::string& file) {
  auto r = troupe::toml::parse_topology(text, file);
  REQUIRE_FALSE(r);
  return r.error().message();
}

}  // namespace loader_checks
