// tally's rules, pure: no sockets, no store, no clock — tested in tests/tally_test.cpp.
#pragma once

#include "../greeter/messages.hpp"
#include "messages.hpp"

#include <optional>

namespace {{mesh_ns}}::tally {

// The count after one more greeting of `greeted.name`, given what was counted before
// (nothing, the first time).
Counted count(const std::optional<Counted>& before, const greeter::Greeted& greeted);

}  // namespace {{mesh_ns}}::tally
