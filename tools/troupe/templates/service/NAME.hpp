// {{name}}'s rules, pure: no sockets, no store, no clock — tested in tests/{{name}}_test.cpp.
#pragma once

#include "messages.hpp"

#include <troupe/domain/result.hpp>

namespace {{mesh_ns}}::{{name}} {

// What recording `command` publishes; an empty key is refused (the command becomes a
// dead letter, with this reason).
troupe::Result<{{Name}}Recorded> record(const Record{{Name}}& command);

}  // namespace {{mesh_ns}}::{{name}}
