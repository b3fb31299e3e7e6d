// {{name}}: accepts Record{{Name}}, publishes {{Name}}Recorded, answers Get{{Name}}.
#include "handlers.hpp"

#include "{{name}}.hpp"

namespace {{mesh_ns}}::{{name}} {
namespace {
constexpr std::string_view kTable = "values";
}

void install(troupe::Handlers& node) {
  node.publishes<{{Name}}Recorded>();
  node.on_command<Record{{Name}}>([](const Record{{Name}}& command, troupe::Context& ctx) -> troupe::Result<void> {
    auto recorded = record(command);
    if (!recorded) return recorded.error();
    ctx.state().save(kTable, recorded->key, *recorded);
    ctx.emit(*recorded);
    return {};
  });
  node.on_query<Get{{Name}}>([](const Get{{Name}}& q, const troupe::QueryContext& ctx) -> troupe::Result<{{Name}}Recorded> {
    if (auto found = ctx.state().load<{{Name}}Recorded>(kTable, q.key)) return *found;
    return troupe::reject(troupe::Rejection::Code::invalid, "Get{{Name}}", "no key '" + q.key + "'");
  });
}

}  // namespace {{mesh_ns}}::{{name}}
