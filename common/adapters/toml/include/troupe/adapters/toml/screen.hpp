// A first look at TOML text before toml++ parses it: refuses, with file:line, the
// input on which the toml++ 3.3 of Debian 12 has undefined behaviour instead of a
// parse error (found by fuzz/topology_fuzz.cpp).
#pragma once

#include <string>
#include <string_view>

#include <troupe/domain/result.hpp>

namespace troupe::toml {

// toml++ 3.3 asks "is this horizontal whitespace?" of some characters with a generated
// table that reaches __builtin_unreachable for much of Latin-1, Latin Extended, Greek
// and Cyrillic (marzer/tomlplusplus#190, #295). It asks it of every character outside
// value strings and comments, of every character of a key (quoted ones too), and, in a
// multi-line basic string, of the character after a backslash and of the first one
// after a line-ending backslash. screen_toml rejects (Code::malformed, "name:line") a
// non-ASCII character in any of those places. TOML 1.0 allows none of them outside
// strings; the only valid TOML it refuses is non-ASCII in a quoted key or in those two
// string positions (write \uXXXX there instead). Everything else is left to toml++.
Result<void> screen_toml(std::string_view text, const std::string& name);

}  // namespace troupe::toml
