// {{name}}'s messages: what it accepts, publishes and answers.
#pragma once

#include <troupe/domain/message.hpp>

#include <string>

namespace {{mesh_ns}}::{{name}} {

// Asks {{name}} to record a value under a key (command).
struct Record{{Name}} {
  std::string key;
  std::string value;
  TROUPE_MESSAGE(Record{{Name}}, key, value)
};

// A value was recorded (event; also the reply to Get{{Name}} and the stored row).
struct {{Name}}Recorded {
  std::string key;
  std::string value;
  TROUPE_MESSAGE({{Name}}Recorded, key, value)
};

// Asks {{name}} for the value of a key (query).
struct Get{{Name}} {
  std::string key;
  using Reply = {{Name}}Recorded;
  TROUPE_MESSAGE(Get{{Name}}, key)
};

}  // namespace {{mesh_ns}}::{{name}}
