#include "{{name}}.hpp"

namespace {{mesh_ns}}::{{name}} {

troupe::Result<{{Name}}Recorded> record(const Record{{Name}}& command) {
  if (command.key.empty()) return troupe::reject(troupe::Rejection::Code::invalid, "Record{{Name}}", "an empty key");
  return {{Name}}Recorded{command.key, command.value};
}

}  // namespace {{mesh_ns}}::{{name}}
