#include "greeter.hpp"

namespace {{mesh_ns}}::greeter {

troupe::Result<Greeted> greet(const Greet& command) {
  if (command.name.empty() || command.name.size() > 100)
    return troupe::reject(troupe::Rejection::Code::invalid, "Greet", "a name is 1 to 100 bytes");
  return Greeted{command.name, "hello, " + command.name};
}

}  // namespace {{mesh_ns}}::greeter
