// greeter's rules, pure: no sockets, no store, no clock — tested in tests/greeter_test.cpp.
#pragma once

#include "messages.hpp"

#include <troupe/domain/result.hpp>

namespace {{mesh_ns}}::greeter {

// The greeting for a Greet; a name that is empty or longer than 100 bytes is refused
// (the command becomes a dead letter, with this reason).
troupe::Result<Greeted> greet(const Greet& command);

}  // namespace {{mesh_ns}}::greeter
