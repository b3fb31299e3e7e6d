// The shop's five services in the simulator, with their own handlers (shop.hpp).
#include "shop.hpp"

#include "inventory/handlers.hpp"
#include "notifications/handlers.hpp"
#include "orders/handlers.hpp"
#include "payments/handlers.hpp"
#include "shipping/handlers.hpp"
#include "shop/invariants.hpp"

#include "notifications/messages.hpp"

#include <set>
#include <stdexcept>

namespace troupe::sim {

const shop::Seed& shop_seed() {
  static const shop::Seed seed = [] {
    shop::Seed s;
    s.skus["sku-a"] = {40, 500};  // runs out: later orders are refused for stock
    s.skus["sku-b"] = {100000, 1500};
    s.skus["sku-c"] = {100000, 100};
    s.customers["alice"] = 1000000000;
    s.customers["bob"] = 30000;  // runs out of credit: payments are declined
    s.customers["carol"] = 1000000000;
    return s;
  }();
  return seed;
}

const std::vector<ShopService>& shop_services() {
  static const std::vector<ShopService> services{
      {"orders", {"inventory", "payments", "shipping"}},
      {"inventory", {"orders", "payments", "shipping"}},
      {"payments", {"inventory", "orders"}},
      {"shipping", {"payments", "orders"}},
      {"notifications", {"orders", "payments"}},
  };
  return services;
}

Service::Service(const std::string& name) {
  static const std::map<std::string, void (*)(Handlers&, const shop::Seed&)> installs{
      {"orders", shop::orders::install},     {"inventory", shop::inventory::install},
      {"payments", shop::payments::install}, {"shipping", shop::shipping::install},
      {"notifications", shop::notifications::install}};
  installs.at(name)(*this, shop_seed());
}

std::vector<std::string> Service::reactions() const {
  std::vector<std::string> v;
  for (const auto& [t, _] : events_) v.push_back(t);
  return v;
}

std::vector<std::string> Service::accepted() const {
  std::vector<std::string> v;
  for (const auto& [t, _] : commands_) v.push_back(t);
  return v;
}

void Service::on_event_raw(std::string_view type, EventHandler handler) { events_[std::string(type)] = std::move(handler); }
void Service::on_command_raw(std::string_view type, EventHandler handler) {
  commands_[std::string(type)] = std::move(handler);
}
void Service::on_query_raw(std::string_view type, QueryHandler handler) { queries_[std::string(type)] = std::move(handler); }
void Service::initialize(const std::function<void(StateView&)>& f) { initializers_.push_back(f); }

void Service::stage_event(const Envelope& cause, std::string_view type, std::string payload, std::string correlation) {
  emitted_.push_back({std::string(type), std::move(payload), correlation.empty() ? cause.correlationid : correlation});
}

void Service::stage_command(const Envelope&, std::string_view target, std::string_view type, std::string, std::string) {
  throw std::logic_error("a shop service sent " + std::string(type) + " to " + std::string(target) +
                         ": the simulated shop has no commands between services");
}

std::optional<std::string> Service::get(std::string_view table, std::string_view key) {
  if (auto w = writes_.find({std::string(table), std::string(key)}); w != writes_.end()) return w->second;
  auto t = disk_->tables.find(table);
  if (t == disk_->tables.end()) return std::nullopt;
  auto v = t->second.find(key);
  if (v == t->second.end()) return std::nullopt;
  return v->second;
}

void Service::put(std::string_view table, std::string_view key, std::string_view value) {
  writes_[{std::string(table), std::string(key)}] = std::string(value);
}

void Service::erase(std::string_view table, std::string_view key) {
  writes_[{std::string(table), std::string(key)}] = std::nullopt;
}

void Service::scan(std::string_view table, const std::function<bool(std::string_view, std::string_view)>& visit) {
  scan_after(table, {}, visit);
}

void Service::scan_after(std::string_view table, std::string_view after_key,
                         const std::function<bool(std::string_view, std::string_view)>& visit) {
  // The committed rows with this message's writes over them.
  std::map<std::string, std::string, std::less<>> rows;
  if (auto t = disk_->tables.find(table); t != disk_->tables.end())
    for (auto it = t->second.upper_bound(after_key); it != t->second.end(); ++it) rows.insert(*it);
  for (const auto& [at, value] : writes_)
    if (at.first == table && at.second > after_key) {
      if (value) rows[at.second] = *value;
      else rows.erase(at.second);
    }
  for (const auto& [k, v] : rows)
    if (!visit(k, v)) return;
}

Service::Outcome Service::apply(Disk& disk, bool command, const Envelope& env, const std::string& payload) {
  Outcome out;
  auto& handlers = command ? commands_ : events_;
  auto h = handlers.find(env.type);
  if (h == handlers.end()) return out;
  out.handled = true;
  disk_ = &disk;
  writes_.clear();
  emitted_.clear();
  Context ctx(*this, env, *this);
  auto result = h->second(env, payload, ctx);
  if (!result) {
    out.rejected = result.error().message();
  } else {
    for (auto& [at, value] : writes_) disk.write(at.first, at.second, std::move(value));
    out.events = std::move(emitted_);
  }
  writes_.clear();
  emitted_.clear();
  return out;
}

void Service::seed(Disk& disk) {
  disk_ = &disk;
  writes_.clear();
  StateView view(*this);
  for (auto& f : initializers_) f(view);
  for (auto& [at, value] : writes_) disk.write(at.first, at.second, std::move(value));
  writes_.clear();
}

Result<std::string> Service::query(Disk& disk, const std::string& type, const std::string& payload) {
  auto h = queries_.find(type);
  if (h == queries_.end()) return reject(Rejection::Code::invalid, type, "no such query");
  disk_ = &disk;
  writes_.clear();
  Envelope env = make_envelope("sim", type, Kind::query);
  QueryContext ctx(env, *this);
  return h->second(env, payload, ctx);
}

std::vector<std::string> shop_violations(World& world) {
  shop::Snapshot snap;
  auto ask = [&world](const std::string& service, const auto& query) {
    using Reply = typename std::decay_t<decltype(query)>::Reply;
    Node& n = world.node(service);
    auto bytes = n.service->query(n.disk, std::string(std::decay_t<decltype(query)>::kType), codec::encode(query));
    if (!bytes) return Result<Reply>(bytes.error());
    return codec::decode<Reply>(*bytes);
  };
  if (auto error = shop::fetch(ask, snap)) return {"the snapshot failed: " + *error};
  shop::Tally tally;
  std::vector<std::string> v;
  for (auto& x : shop::violations(snap, tally)) v.push_back(std::move(x.text));
  // Every ended order told its customer (the notifications service's own listing).
  std::set<std::string> told;
  if (auto error = shop::pages<shop::ListNotifications>(ask, "notifications", [&](shop::NotificationList& p) {
        for (const auto& n : p.notifications) told.insert(n.key);
        return std::pair{p.notifications.size(), p.notifications.empty() ? "" : p.notifications.back().key};
      }))
    return {"the snapshot failed: " + *error};
  for (const auto& [id, o] : snap.orders)
    if ((o.status == "confirmed" || o.status == "cancelled") && !told.count(id + ":" + o.status))
      v.push_back("order " + id + ": " + o.status + " but its customer was never told");
  // A run that never ended a saga one of the ways, or never refused, checked less than it says.
  if (tally.confirmed == 0 || tally.cancelled == 0)
    v.push_back("the run ended " + std::to_string(tally.confirmed) + " orders confirmed and " +
                std::to_string(tally.cancelled) + " cancelled: one of the ways was never checked");
  if (world.node("orders").rejected == 0) v.push_back("orders refused nothing: the rejection path was never taken");
  world.note("the shop at rest: " + std::to_string(snap.orders.size()) + " orders, " + std::to_string(tally.confirmed) +
             " confirmed, " + std::to_string(tally.cancelled) + " cancelled");
  return v;
}

}  // namespace troupe::sim
