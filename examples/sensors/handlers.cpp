// The sensors mesh's handlers around the pure rules (rules.hpp).
#include "handlers.hpp"

#include "rules.hpp"

#include <algorithm>
#include <thread>

namespace sensors {
namespace {

constexpr std::int64_t kMaxPage = 500;

template <troupe::Message T>
std::vector<T> page(const troupe::StateView& state, std::string_view table, const std::optional<std::string>& after,
                    std::optional<std::int64_t> limit) {
  const auto n = static_cast<std::size_t>(std::clamp<std::int64_t>(limit.value_or(kMaxPage), 1, kMaxPage));
  std::vector<T> out;
  state.for_each_after<T>(table, after.value_or(""), [&](std::string_view, const T& v) {
    out.push_back(v);
    return out.size() < n;
  });
  return out;
}

}  // namespace

void install_sensor(troupe::Handlers& node) { node.publishes<Reading>(); }

void install_aggregator(troupe::Handlers& node) {
  node.publishes<WindowClosed>();
  node.on<Reading>([](const Reading& r, troupe::Context& ctx) {
    auto [open, closed] = add(ctx.state().load<Window>("windows", r.sensor), r);
    ctx.state().save("windows", r.sensor, open);
    if (closed) ctx.emit(*closed, r.sensor);
  });
}

void install_alerts(troupe::Handlers& node) {
  node.publishes<AlertRaised>();
  node.sends<Actuate>("actuator");
  node.on<WindowClosed>([](const WindowClosed& w, troupe::Context& ctx) {
    auto alert = alert_for(w);
    // One alert per window, also when a restarted aggregator closes a window again.
    if (!alert || ctx.state().load<AlertRaised>("alerts", alert->alert_id)) return;
    ctx.state().save("alerts", alert->alert_id, *alert);
    ctx.emit(*alert, alert->alert_id);
    ctx.send("actuator", Actuate{alert->alert_id, "cool " + alert->sensor}, alert->alert_id);
  });
  node.on<Actuated>([](const Actuated& a, troupe::Context& ctx) {
    auto alert = ctx.state().load<AlertRaised>("alerts", a.alert_id);
    if (!alert) return;
    alert->acknowledged = true;
    ctx.state().save("alerts", a.alert_id, *alert);
  });
  node.on_query<ListAlerts>([](const ListAlerts& q, const troupe::QueryContext& ctx) -> troupe::Result<AlertList> {
    return AlertList{page<AlertRaised>(ctx.state(), "alerts", q.after, q.limit)};
  });
}

void install_actuator(troupe::Handlers& node, std::chrono::milliseconds acting) {
  node.publishes<Actuated>();
  node.on_command<Actuate>([acting](const Actuate& c, troupe::Context& ctx) {
    auto done = ctx.state().load<Actuated>("actions", c.alert_id).value_or(Actuated{c.alert_id, c.action, 0});
    std::this_thread::sleep_for(acting);  // the device acts here
    ++done.times;                          // a second application would show as 2
    ctx.state().save("actions", c.alert_id, done);
    ctx.emit(done, c.alert_id);
  });
  node.on_query<ListActions>([](const ListActions& q, const troupe::QueryContext& ctx) -> troupe::Result<ActionList> {
    return ActionList{page<Actuated>(ctx.state(), "actions", q.after, q.limit)};
  });
}

}  // namespace sensors
