#include "watch.hpp"

#include <troupe/runtime/builtin.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/tools/mesh_json.hpp>

#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <fnmatch.h>

#include <algorithm>

namespace troupe::gateway {

using Clock = std::chrono::steady_clock;

bool Filter::matches(const Record& r) const {
  if (!type.empty() && type != "*" && fnmatch(type.c_str(), r.type.c_str(), 0) != 0) return false;
  if (!kind.empty() && kind != r.kind) return false;
  if (!correlation.empty() && correlation != r.envelope.correlationid) return false;
  // A partitioned service's name stands for its instances.
  auto named = [&](const std::string& who) {
    return std::find(services.begin(), services.end(), who) != services.end() ||
           std::find(services.begin(), services.end(), service_of(who)) != services.end();
  };
  if (!services.empty() && !named(r.source) && !named(r.target)) return false;
  return true;
}

void Subscriber::push(std::shared_ptr<const Delivered> r) {
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= capacity_ || bytes_ + r->text.size() > max_bytes_) {
      ++dropped_;
      if (dropped_total_) dropped_total_->fetch_add(1, std::memory_order_relaxed);
      return;
    }
    bytes_ += r->text.size();
    queue_.push_back(std::move(r));
  }
  cv_.notify_one();
}

std::vector<std::shared_ptr<const Delivered>> Subscriber::take(std::chrono::milliseconds timeout,
                                                               std::uint64_t& dropped) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || dropped_ || woken_; });
  woken_ = false;
  std::vector<std::shared_ptr<const Delivered>> out(queue_.begin(), queue_.end());
  queue_.clear();
  bytes_ = 0;
  dropped = dropped_;
  dropped_ = 0;
  return out;
}

void Subscriber::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_all();
}

Hub::Hub(const Topology& topology, Options options, zmq::context_t& context)
    : topology_(topology), options_(std::move(options)), context_(context) {
  for (const auto& s : topology_.services)
    for (const auto& type : s.publishes) reactors_[{s.name, type}] = tools::reactors(topology_, s.name, type);
}

Hub::~Hub() { stop(); }

void Hub::start() { thread_ = std::thread([this] { run(); }); }

void Hub::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  for (auto& s : subscribers_) s->wake();
}

std::shared_ptr<Subscriber> Hub::subscribe(Filter filter, std::size_t capacity, std::size_t max_bytes,
                                           std::atomic<std::uint64_t>* dropped_total) {
  auto s = std::make_shared<Subscriber>(std::move(filter), capacity, max_bytes, dropped_total);
  std::lock_guard lock(mutex_);
  subscribers_.push_back(s);
  return s;
}

void Hub::unsubscribe(const std::shared_ptr<Subscriber>& s) {
  std::lock_guard lock(mutex_);
  std::erase(subscribers_, s);
}

std::map<std::pair<std::string, std::string>, std::uint64_t> Hub::edge_counts() const {
  std::lock_guard lock(mutex_);
  return edges_;
}

void Hub::for_each_saga(
    const std::function<bool(const std::string&, const std::vector<tools::SagaEvent>&)>& keep) {
  std::lock_guard lock(mutex_);
  for (auto it = sagas_.begin(); it != sagas_.end();) it = keep(it->first, it->second) ? std::next(it) : sagas_.erase(it);
  std::erase_if(saga_order_, [&](const std::string& id) { return !sagas_.count(id); });
}

HubStats Hub::stats() const {
  std::lock_guard lock(mutex_);
  auto s = stats_;
  s.subscribers = subscribers_.size();
  s.sagas = sagas_.size();
  return s;
}

void Hub::deliver(Record r) {
  std::string text = tools::dump(r.json);
  auto shared = std::make_shared<const Delivered>(Delivered{std::move(r), std::move(text)});
  const Record& rec = shared->record;
  std::lock_guard lock(mutex_);
  ++stats_.received;
  if (rec.kind == "event") {
    if (auto it = reactors_.find({rec.source, rec.type}); it != reactors_.end())
      for (const auto& service : it->second) ++edges_[{rec.source, service}];
  } else if (rec.kind == "command") {
    std::string from = topology_.find(rec.source) ? rec.source : "outside";
    ++edges_[{from, rec.target}];
  }
  const std::string& correlation = rec.envelope.correlationid;
  if (rec.kind == "event" && !correlation.empty() && correlation.size() <= options_.max_correlation) {
    auto [it, fresh] = sagas_.try_emplace(correlation);
    if (fresh) {
      saga_order_.push_back(correlation);
      while (sagas_.size() > options_.max_sagas && !saga_order_.empty()) {  // the oldest go first
        if (sagas_.erase(saga_order_.front())) ++stats_.sagas_forgotten;
        saga_order_.pop_front();
      }
    }
    if (auto s = sagas_.find(correlation); s != sagas_.end() && s->second.size() < options_.max_saga_events)
      s->second.push_back({rec.envelope, nlohmann::json()});
  }
  for (auto& s : subscribers_) {
    if (!s->filter().matches(rec)) continue;
    s->push(shared);
  }
}

void Hub::run() {
  zmq::socket_t sub(context_, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvhwm, 100000);  // beyond this the services drop for this tap, never block
  sub.set(zmq::sockopt::linger, 0);
  try {
    for (const auto& s : topology_.services) {
      for (const auto& type : s.publishes) sub.set(zmq::sockopt::subscribe, type + " ");
      sub.set(zmq::sockopt::subscribe, builtin::kTapTopic);
      curve_client(sub, topology_, s.name, options_.identity);
      sub.connect(topology_.external(s).events);
    }
  } catch (const std::exception& e) {
    // Said on /readyz, in the picture and on the dashboard, not only in the log: every
    // stream would stay empty.
    spdlog::error("gateway: cannot watch the mesh as '{}': {}", options_.identity, e.what());
    std::lock_guard lock(mutex_);
    stats_.error = "the gateway's tap cannot watch the mesh as '" + options_.identity + "': " + e.what();
    return;
  }
  zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
  while (!stop_) {
    zmq::poll(&item, 1, std::chrono::milliseconds(100));
    for (int n = 0; n < 1000 && !stop_; ++n) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(sub, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      std::vector<std::string_view> views;
      for (const auto& f : frames) views.push_back(f.to_string_view());
      std::optional<Record> r;
      try {
        r = tools::read_tap(views);
      } catch (const std::exception& e) {  // what a peer sent must not end the tap
        spdlog::warn("gateway: a tap message could not be read: {}", e.what());
        continue;
      }
      if (!r) continue;
      if (auto n = gaps_.missed(*r)) {
        std::lock_guard lock(mutex_);
        stats_.tap_missed += n;
      }
      // The gateway's and other tools' own built-in queries are not the mesh's traffic.
      if (r->kind == "query" && r->envelope.type.starts_with('$')) continue;
      deliver(std::move(*r));
    }
  }
}

View::View(const Topology& topology, Options options, Hub& hub, zmq::context_t& context)
    : topology_(topology), options_(std::move(options)), hub_(hub), context_(context) {
  // Edges: every (publisher -> reacting service) and (sender -> receiver) of the
  // topology, and "outside" -> each service that accepts commands.
  std::map<std::pair<std::string, std::string>, nlohmann::json> edges;
  for (const auto& s : topology_.services) {
    for (const auto& sub : s.reacts_to) {
      auto& e = edges[{sub.publisher, s.name}];
      e["kind"] = "event";
      for (const auto& t : sub.types) e["types"].push_back(t);
    }
    for (const auto& route : s.sends) {
      auto& e = edges[{s.name, route.target}];
      if (!e.contains("kind")) e["kind"] = "command";
      for (const auto& t : route.types) e["types"].push_back(t);
    }
    if (!s.accepts.empty()) {
      auto& e = edges[{"outside", s.name}];
      e["kind"] = "command";
      e["types"] = s.accepts;
    }
  }
  edges_ = nlohmann::json::array();
  for (auto& [key, e] : edges) {
    e["from"] = key.first;
    e["to"] = key.second;
    edges_.push_back(std::move(e));
  }
}

View::~View() { stop(); }

void View::start() { thread_ = std::thread([this] { run(); }); }

void View::stop() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

nlohmann::json View::picture(std::uint64_t* version) const {
  std::lock_guard lock(mutex_);
  if (version) *version = version_;
  return picture_;
}

bool View::ready() const {
  std::lock_guard lock(mutex_);
  return ready_;
}

bool View::fresh() const {
  std::lock_guard lock(mutex_);
  return version_ && Clock::now() - made_ < std::chrono::seconds(3);
}

std::uint64_t View::wait_newer(std::uint64_t version, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return version_ > version || stop_; });
  return version_;
}

void View::run() {
  Client client(topology_, "gateway", &context_);
  client.set_identity(options_.identity);
  while (!stop_) {
    auto started = Clock::now();
    nlohmann::json p;
    try {
      p = round(client);
    } catch (const std::exception& e) {
      spdlog::error("gateway: the mesh's picture failed: {}", e.what());
    }
    {
      std::lock_guard lock(mutex_);
      if (!p.is_null()) {
        ready_ = p.value("ready", false);
        picture_ = std::move(p);
        made_ = Clock::now();
        ++version_;
      }
    }
    cv_.notify_all();
    std::unique_lock lock(mutex_);
    cv_.wait_until(lock, started + options_.period, [&] { return stop_.load(); });
  }
}

nlohmann::json View::round(Client& client) {
  auto now = Clock::now();
  double dt = last_round_ == Clock::time_point{} ? 0 : std::chrono::duration<double>(now - last_round_).count();
  auto ask = std::min(options_.period, std::chrono::milliseconds(700));
  tools::Positions positions;
  nlohmann::json services = nlohmann::json::array();
  bool all = true;
  for (const auto& s : topology_.services) {
    nlohmann::json j{{"name", s.name}};
    auto h = client.query_raw(s.name, std::string(builtin::kHealth), std::string(1, '\x80'), ask);
    if (!h) {
      all = false;
      j["state"] = "not answering";
      j["answering"] = false;
      if (auto known = last_positions_.find(s.name); known != last_positions_.end()) positions[s.name] = known->second;
      services.push_back(std::move(j));
      continue;
    }
    auto health = tools::to_json(h->payload);
    std::uint64_t head = 0;
    try {  // one service's odd reply costs its own row, not the picture
      auto decoded = codec::decode<builtin::Health>(h->payload);
      if (!decoded) throw std::runtime_error(decoded.error().message());
      positions[s.name] = last_positions_[s.name] = tools::applied_from_health(health);
      std::uint64_t lag = 0;
      for (const auto& u : decoded->upstreams) lag += u.lag;
      head = decoded->head;
      j["answering"] = true;
      j["state"] = decoded->state;
      j["version"] = decoded->version;
      j["uptime_s"] = decoded->uptime_s;
      j["head"] = head;
      j["lag"] = lag;
      j["dead_letters"] = decoded->dead_letters;
      j["upstreams"] = health["upstreams"];
      if (decoded->store_error) j["store_error"] = *decoded->store_error;
    } catch (const std::exception& e) {
      all = false;
      j["answering"] = false;
      j["state"] = "unreadable $health: " + std::string(e.what()).substr(0, 200);
      services.push_back(std::move(j));
      continue;
    }
    if (auto last = last_heads_.find(s.name); dt > 0 && last != last_heads_.end() && head >= last->second)
      j["events_per_s"] = (head - last->second) / dt;
    else
      j["events_per_s"] = 0.0;
    last_heads_[s.name] = head;
    services.push_back(std::move(j));
  }

  auto counts = hub_.edge_counts();
  nlohmann::json edge_list = edges_;
  for (auto& e : edge_list) {
    std::pair<std::string, std::string> key{e["from"], e["to"]};
    std::uint64_t n = counts.count(key) ? counts[key] : 0;
    std::uint64_t before = last_edges_.count(key) ? last_edges_[key] : 0;
    e["total"] = n;
    e["rate"] = dt > 0 && n >= before ? (n - before) / dt : 0.0;
  }
  last_edges_ = std::move(counts);
  last_round_ = now;

  // Sagas: each tracked one waits on someone, or is done (and forgotten after a while).
  auto now_us = tools::micros(rfc3339_now());
  std::size_t in_flight = 0;
  std::vector<std::pair<double, nlohmann::json>> stuck;
  hub_.for_each_saga([&](const std::string& id, const std::vector<tools::SagaEvent>& events) {
    auto w = tools::waits(topology_, events, positions, now_us);
    double newest = 0;
    for (const auto& e : events) newest = std::max(newest, static_cast<double>(tools::micros(e.env.time)));
    if (w.empty()) return (now_us - newest) / 1000.0 < options_.forget_after.count();
    ++in_flight;
    double longest = 0;
    nlohmann::json waits = nlohmann::json::array();
    for (const auto& x : w) {
      longest = std::max(longest, x.waited_s);
      waits.push_back(x.json());
    }
    if (longest * 1000 >= options_.stuck_after.count())
      stuck.emplace_back(longest, nlohmann::json{{"correlationid", id}, {"waiteds", longest}, {"waits", waits},
                                                 {"events", events.size()}});
    return true;
  });
  std::sort(stuck.begin(), stuck.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  nlohmann::json stuck_list = nlohmann::json::array();
  for (std::size_t i = 0; i < stuck.size() && i < 50; ++i) stuck_list.push_back(std::move(stuck[i].second));

  auto hs = hub_.stats();
  return {{"mesh", topology_.mesh},
          {"time", rfc3339_now()},
          {"ready", all && hs.error.empty()},
          {"services", services},
          {"edges", edge_list},
          {"sagas",
           {{"tracked", hs.sagas},
            {"in_flight", in_flight},
            {"stuck_count", stuck.size()},
            {"stuck", stuck_list},
            {"forgotten", hs.sagas_forgotten},
            {"stuck_after_s", options_.stuck_after.count() / 1000.0}}},
          {"tap",
           {{"received", hs.received},
            {"missed", hs.tap_missed},
            {"sse_clients", hs.subscribers},
            {"error", hs.error.empty() ? nlohmann::json() : nlohmann::json(hs.error)}}}};
}

}  // namespace troupe::gateway
