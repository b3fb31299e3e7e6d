// greeter's messages: what it accepts and what it publishes. Each is a plain struct
// described by TROUPE_MESSAGE (its wire name and fields); other services include this
// header to react to them.
#pragma once

#include <troupe/domain/message.hpp>

#include <string>

namespace {{mesh_ns}}::greeter {

// Asks greeter to greet someone (command).
struct Greet {
  std::string name;
  TROUPE_MESSAGE(Greet, name)
};

// Someone was greeted (event).
struct Greeted {
  std::string name;
  std::string greeting;
  TROUPE_MESSAGE(Greeted, name, greeting)
};

}  // namespace {{mesh_ns}}::greeter
