#include <troupe/tools/saga.hpp>

#include <troupe/runtime/builtin.hpp>
#include <troupe/tools/mesh_json.hpp>

#include <algorithm>
#include <cstdio>

namespace troupe::tools {

Applied applied_from_health(const nlohmann::json& health) {
  Applied out;
  if (!health.is_object() || !health.contains("upstreams") || !health["upstreams"].is_array()) return out;
  for (const auto& u : health["upstreams"])
    if (u.is_object() && u.contains("publisher") && u["publisher"].is_string())
      out[u["publisher"].get<std::string>()] = u.value("position", std::uint64_t{0});
  return out;
}

std::string Wait::text() const {
  std::string out = service + " has not reacted to " + printable(type) + " #" + std::to_string(sequence);
  if (position) out += " (it has applied " + publisher + " up to #" + std::to_string(*position) + ")";
  else out += " (" + service + " is not answering)";
  return out;
}

std::string Wait::line() const {
  if (waited_s < 0) return "waiting (clock skew): " + text();
  char since[32];
  std::snprintf(since, sizeof since, "waiting %.1f s: ", waited_s);
  return since + text();
}

nlohmann::json Wait::json() const {
  nlohmann::json j{{"service", service},   {"publisher", publisher}, {"type", type},
                   {"sequence", sequence}, {"correlationid", correlation}, {"text", text()}};
  j["position"] = position ? nlohmann::json(*position) : nlohmann::json();
  if (waited_s < 0) j["clockskew"] = true;
  else j["waiteds"] = waited_s;
  return j;
}

std::vector<std::string> reactors(const Topology& t, const std::string& publisher, const std::string& type) {
  std::vector<std::string> out;
  for (const auto& s : t.services)
    for (const auto& sub : s.reacts_to)
      if (sub.publisher == publisher && std::find(sub.types.begin(), sub.types.end(), type) != sub.types.end())
        out.push_back(s.name);
  return out;
}

std::vector<Wait> waits(const Topology& t, const std::vector<SagaEvent>& events, const Positions& positions,
                        std::int64_t now_us) {
  std::vector<Wait> out;
  for (const auto& e : events) {
    if (e.env.kind != Kind::event || e.env.sequence == 0) continue;
    for (const auto& service : reactors(t, e.env.source, e.env.type)) {
      Wait w{service, e.env.source, e.env.type, e.env.correlationid, e.env.sequence, std::nullopt,
             (now_us - micros(e.env.time)) / 1e6};
      if (auto p = positions.find(service); p != positions.end()) {
        auto a = p->second.find(e.env.source);
        w.position = a == p->second.end() ? 0 : a->second;
        if (*w.position >= e.env.sequence) continue;
      }
      out.push_back(std::move(w));
    }
  }
  return out;
}

const char* mark(const std::string& type) {
  for (const char* w : {"Declined", "Rejected", "Failed"})
    if (type.find(w) != std::string::npos) return "failure";
  for (const char* w : {"Cancelled", "Released", "Refunded", "Returned", "Compensat"})
    if (type.find(w) != std::string::npos) return "compensation";
  return "";
}

Saga collect_saga(Client& client, const std::string& id, std::chrono::milliseconds timeout) {
  Saga saga{id, {}, {}, {}};
  for (const auto& s : client.topology().services) {
    auto r = client.query_raw(s.name, std::string(builtin::kTrace), codec::encode(builtin::TraceRequest{id, 1000}),
                              timeout);
    if (!r) {
      saga.unreachable.push_back(s.name);
      continue;
    }
    for (std::size_t i = 0; i + 1 < r->extra.size(); i += 2)
      if (auto env = codec::decode_envelope(r->extra[i])) saga.events.push_back({*env, to_json(r->extra[i + 1])});
    auto h = client.query_raw(s.name, std::string(builtin::kHealth), std::string(1, '\x80'), timeout);
    if (h) saga.positions[s.name] = applied_from_health(to_json(h->payload));
  }
  std::stable_sort(saga.events.begin(), saga.events.end(),
                   [](const SagaEvent& a, const SagaEvent& b) { return a.env.time < b.env.time; });
  return saga;
}

nlohmann::json saga_json(const Topology& t, const Saga& saga, std::int64_t now_us) {
  std::map<std::string, const SagaEvent*> by_id;
  for (const auto& e : saga.events) by_id[e.env.id] = &e;
  nlohmann::json events = nlohmann::json::array();
  for (const auto& e : saga.events) {
    auto j = cloudevent_json(e.env, e.data);
    if (auto cause = by_id.find(e.env.causationid); cause != by_id.end()) {
      double ms = (micros(e.env.time) - micros(cause->second->env.time)) / 1000.0;
      if (ms < 0) j["clockskew"] = true;
      else j["hopms"] = ms;
    }
    if (*mark(e.env.type)) j["mark"] = mark(e.env.type);
    events.push_back(std::move(j));
  }
  nlohmann::json waiting = nlohmann::json::array();
  for (const auto& w : waits(t, saga.events, saga.positions, now_us)) waiting.push_back(w.json());
  nlohmann::json out{{"correlationid", saga.id}, {"events", events}, {"waiting", waiting},
                     {"unreachable", saga.unreachable}};
  if (waiting.empty() && !saga.events.empty()) {
    const auto& last = saga.events.back();
    out["outcome"] = {{"source", last.env.source}, {"type", last.env.type},
                      {"ms", (micros(last.env.time) - micros(saga.events.front().env.time)) / 1000.0}};
  } else {
    out["outcome"] = nullptr;
  }
  return out;
}

namespace {
std::chrono::milliseconds until(std::chrono::steady_clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                     deadline - std::chrono::steady_clock::now()));
}
}  // namespace

std::uint64_t outbox_head(Client& client, const std::string& service, std::chrono::milliseconds timeout) {
  auto r = client.query_raw(service, std::string(builtin::kReplay), codec::encode(builtin::ReplayRequest{1, 0, 1}),
                            timeout);
  if (!r) return 0;
  auto hdr = codec::decode<builtin::ReplayReply>(r->payload);
  return hdr ? hdr->head : 0;
}

Result<std::optional<nlohmann::json>> caused_in_outbox(Client& client, const std::string& service,
                                                       std::uint64_t& from, const std::string& id,
                                                       std::chrono::steady_clock::time_point deadline) {
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = client.query_raw(service, std::string(builtin::kReplay),
                              codec::encode(builtin::ReplayRequest{from, UINT64_MAX, 512}), until(deadline));
    if (!r) {
      if (r.error().code == Rejection::Code::refused) return r.error();
      return std::optional<nlohmann::json>{};
    }
    auto before = from;
    for (std::size_t i = 0; i + 1 < r->extra.size(); i += 2) {
      auto env = codec::decode_envelope(r->extra[i]);
      if (!env) continue;
      from = std::max(from, env->sequence + 1);
      if (env->causationid == id) return std::optional{cloudevent(*env, r->extra[i + 1])};
    }
    auto hdr = codec::decode<builtin::ReplayReply>(r->payload);
    if (!hdr || hdr->count == 0 || from > hdr->head || from == before) break;  // read to the head (or stuck)
  }
  return std::optional<nlohmann::json>{};
}

}  // namespace troupe::tools
