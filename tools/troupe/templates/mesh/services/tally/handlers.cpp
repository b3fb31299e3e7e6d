// tally: reacts to greeter's Greeted, publishes Counted, answers GetCount.
#include "handlers.hpp"

#include "tally.hpp"

namespace {{mesh_ns}}::tally {
namespace {
constexpr std::string_view kTable = "counts";
}

void install(troupe::Handlers& node) {
  node.publishes<Counted>();
  // Each event is applied once, in order, with its state change and its emits in one
  // transaction: a restart neither loses nor doubles a count.
  node.on<greeter::Greeted>([](const greeter::Greeted& e, troupe::Context& ctx) {
    auto counted = count(ctx.state().load<Counted>(kTable, e.name), e);
    ctx.state().save(kTable, e.name, counted);
    ctx.emit(counted);
  });
  node.on_query<GetCount>([](const GetCount& q, const troupe::QueryContext& ctx) -> troupe::Result<Counted> {
    return ctx.state().load<Counted>(kTable, q.name).value_or(Counted{q.name, 0});
  });
}

}  // namespace {{mesh_ns}}::tally
