// greeter: accepts Greet, publishes Greeted.
#include "handlers.hpp"

#include "greeter.hpp"

namespace {{mesh_ns}}::greeter {

void install(troupe::Handlers& node) {
  node.publishes<Greeted>();
  // A refused command is kept as a dead letter (troupe deadletters list greeter); an
  // accepted one emits its event in the same transaction that records it as done.
  node.on_command<Greet>([](const Greet& command, troupe::Context& ctx) -> troupe::Result<void> {
    auto greeted = greet(command);
    if (!greeted) return greeted.error();
    ctx.emit(*greeted);
    return {};
  });
}

}  // namespace {{mesh_ns}}::greeter
