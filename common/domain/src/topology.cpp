// Topology look-ups and the cross-reference check behind `troupe check`.
#include <troupe/domain/topology.hpp>

#include <troupe/domain/schema.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace troupe {
namespace {

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

bool ServiceSpec::publishes_type(std::string_view type) const { return contains(publishes, type); }

std::string ServiceSpec::key_field(std::string_view type) const {
  for (const auto& [t, field] : keys)
    if (t == type) return field == "*" ? "" : field;
  return key;
}

std::string ServiceSpec::key_rule() const {
  std::string out = key;
  for (const auto& [type, field] : keys) out += "; " + type + "=" + field;
  return out;
}

std::vector<std::string> ServiceSpec::taken_types() const {
  std::vector<std::string> out = accepts;
  for (const auto& sub : reacts_to)
    for (const auto& type : sub.types)
      if (!contains(out, type)) out.push_back(type);
  return out;
}

std::string_view service_of(std::string_view name) {
  auto dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(0, dot);
}

std::string partition_record_mismatch(const ServiceSpec& s, const std::optional<std::string>& count,
                                      const std::optional<std::string>& key_rule) {
  const std::string want = std::to_string(s.partitions);
  if (count && *count != want) return "written by " + *count + " partition(s) and the topology now says " + want;
  if (s.partitioned() && key_rule && *key_rule != s.key_rule())
    return "written with the partition key \"" + *key_rule + "\" and the topology now says \"" + s.key_rule() + "\"";
  return {};
}

std::string other_layout_store(const std::string& state_dir, const ServiceSpec& s) {
  return state_dir + "/" + std::string(s.service()) + (s.partitioned() ? ".db" : ".0.db");
}

std::vector<const ServiceSpec*> Topology::instances(std::string_view service) const {
  std::vector<const ServiceSpec*> out;
  for (const auto& s : services)
    if (s.name == service || (!s.group.empty() && s.group == service)) out.push_back(&s);
  return out;
}

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

int partition_of(std::string_view key, int partitions) {
  if (partitions <= 1) return 0;
  return static_cast<int>(fnv1a64(key) % static_cast<std::uint64_t>(partitions));
}

std::string partition_endpoint(std::string_view endpoint, std::string_view service, int k) {
  std::string e(endpoint), n = std::to_string(k);
  if (auto at = e.find("{partition}"); at != std::string::npos) {
    for (; at != std::string::npos; at = e.find("{partition}", at + n.size())) e.replace(at, 11, n);
    return e;
  }
  if (e.rfind("tcp://", 0) == 0) {
    auto colon = e.rfind(':');
    if (colon == std::string::npos || colon < 6) return e;
    const std::string port = e.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5) return e;
    return e.substr(0, colon + 1) + std::to_string(std::stoi(port) + 100 * k);
  }
  auto scheme = e.find("://");
  auto at = service.empty() ? std::string::npos : e.rfind(service);
  if (at != std::string::npos && scheme != std::string::npos && at > scheme)
    return e.insert(at + service.size(), "." + n);
  return e + "." + n;
}
bool ServiceSpec::accepts_type(std::string_view type) const { return contains(accepts, type); }
bool ServiceSpec::answers_type(std::string_view type) const { return contains(answers, type); }

Endpoints Topology::external(const ServiceSpec& s) const {
  Endpoints e = s.endpoints;
  if (!s.expose.events.empty()) e.events = s.expose.events;
  if (!s.expose.commands.empty()) e.commands = s.expose.commands;
  if (!s.expose.queries.empty()) e.queries = s.expose.queries;
  return e;
}

std::size_t Topology::max_field_bytes(std::string_view type) const {
  for (const auto& l : limits)
    if (l.type == type) return l.max_field_bytes;
  return defaults.max_field_bytes;
}

const ServiceSpec* Topology::find(std::string_view name) const {
  for (const auto& s : services)
    if (s.name == name) return &s;
  return nullptr;
}

ServiceSpec* Topology::find(std::string_view name) {
  for (auto& s : services)
    if (s.name == name) return &s;
  return nullptr;
}

bool supported_transport(std::string_view e) {
  for (std::string_view scheme : {"tcp://", "ipc://", "inproc://"})
    if (e.substr(0, scheme.size()) == scheme && e.size() > scheme.size()) return true;
  return false;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.front() == '$' || name.size() > 128) return false;
  return std::none_of(name.begin(), name.end(),
                      [](char c) { return c == ' ' || static_cast<unsigned char>(c) < 0x21; });
}

bool file_name(std::string_view name) {
  return !name.empty() && name.front() != '.' && name.find('/') == std::string_view::npos &&
         name.find('\\') == std::string_view::npos;
}

std::vector<TopologyIssue> check_topology(const Topology& t) {
  std::vector<TopologyIssue> out;
  auto at = [&](int line) { return t.file + ":" + std::to_string(line) + ": "; };
  auto error = [&](int line, std::string msg) {
    out.push_back({TopologyIssue::Severity::error, at(line) + std::move(msg)});
  };
  auto warning = [&](int line, std::string msg) {
    out.push_back({TopologyIssue::Severity::warning, at(line) + std::move(msg)});
  };

  if (t.services.empty()) error(1, "the mesh has no services");

  std::map<std::string, std::string> endpoint_owner;
  std::set<std::string> names;
  for (const auto& s : t.services) {
    if (!names.insert(s.name).second) error(s.line, "service '" + s.name + "' is declared twice");
    if (!valid_name(s.name) || !file_name(s.name))
      error(s.line, "service name '" + s.name + "' is not a valid name (it names files: no '/', no leading '.')");
    for (auto [role, e] : {std::pair{"events", &s.endpoints.events},
                           std::pair{"commands", &s.endpoints.commands},
                           std::pair{"queries", &s.endpoints.queries},
                           std::pair{"exposed events", &s.expose.events},
                           std::pair{"exposed commands", &s.expose.commands},
                           std::pair{"exposed queries", &s.expose.queries}}) {
      bool exposed = std::string_view(role).rfind("exposed", 0) == 0;
      if (e->empty() && exposed) continue;
      if (e->empty()) {
        error(s.line, "service '" + s.name + "' has no " + role + " endpoint");
        continue;
      }
      if (e->rfind("tcp://", 0) == 0) {
        auto colon = e->rfind(':');
        auto port = colon == std::string::npos ? std::string() : e->substr(colon + 1);
        if (!port.empty() && port.find_first_not_of("0123456789") == std::string::npos &&
            (port.size() > 5 || std::stoi(port) > 65535)) {
          error(s.line, "service '" + s.name + "' " + role + " endpoint '" + *e + "' has a port beyond 65535" +
                            (s.partitioned() ? " (instance K listens on the port + 100 × K)" : ""));
          continue;
        }
      }
      if (!supported_transport(*e)) {
        error(s.line, "service '" + s.name + "' " + role + " endpoint '" + *e +
                          "' is not tcp://, ipc:// or inproc://");
        continue;
      }
      auto [it, fresh] = endpoint_owner.emplace(*e, s.name + " " + role);
      if (!fresh && e->find('*') == std::string::npos)
        error(s.line, "service '" + s.name + "' " + role + " endpoint '" + *e +
                          "' is already used by " + it->second);
    }
    for (const auto* list : {&s.publishes, &s.accepts, &s.answers})
      for (const auto& type : *list)
        if (!valid_name(type))
          error(s.line, "service '" + s.name + "': '" + type + "' is not a valid message type name");
  }

  std::set<std::pair<std::string, std::string>> consumed;  // (publisher, type)
  for (const auto& s : t.services) {
    for (const auto& sub : s.reacts_to) {
      const ServiceSpec* pub = t.find(sub.publisher);
      if (!pub) {
        error(sub.line, "service '" + s.name + "' reacts to unknown service '" + sub.publisher + "'");
        continue;
      }
      for (const auto& type : sub.types) {
        if (!pub->publishes_type(type))
          error(sub.line, "service '" + s.name + "' reacts to '" + type + "' of '" +
                              sub.publisher + "', which '" + sub.publisher + "' does not publish");
        consumed.emplace(sub.publisher, type);
      }
    }
    for (const auto& route : s.sends) {
      auto targets = t.instances(route.target);
      const ServiceSpec* target = targets.empty() ? nullptr : targets.front();
      if (!target) {
        error(route.line, "service '" + s.name + "' sends to unknown service '" + route.target + "'");
        continue;
      }
      for (const auto& type : route.types)
        if (!target->accepts_type(type))
          error(route.line, "service '" + s.name + "' sends '" + type + "' to '" + route.target +
                                "', which '" + route.target + "' does not accept");
    }
  }
  for (const auto& s : t.services)
    if (!s.group.empty()) names.insert(s.group);  // a partitioned service's own name is taken too
  for (const auto& c : t.clients) {
    const char* what = c.role == ClientSpec::Role::tap ? "tap" : "client";
    if (!valid_name(c.name) || !file_name(c.name))
      error(c.line, std::string(what) + " name '" + c.name + "' is not a valid name (it names key files: no '/', no leading '.')");
    else if (c.name.find('.') != std::string::npos)
      error(c.line, std::string(what) + " name '" + c.name + "' has a '.', which names instances of partitioned services");
    if (!names.insert(c.name).second)
      error(c.line, std::string(what) + " '" + c.name + "' has the name of another service, client or tap");
    for (const auto* list : {&c.commands, &c.queries, &c.events})
      for (const auto& target : *list)
        if (target != "*" && t.instances(target).empty())
          error(c.line, std::string(what) + " '" + c.name + "' names unknown service '" + target + "'");
  }
  for (const auto& l : t.limits) {
    bool known = std::any_of(t.services.begin(), t.services.end(), [&](const ServiceSpec& s) {
      return s.publishes_type(l.type) || s.accepts_type(l.type) || s.answers_type(l.type);
    });
    if (!known)
      error(l.line, "[limits." + l.type + "] names '" + l.type +
                        "', which no service publishes, accepts or answers");
  }
  for (const auto& s : t.services)
    if (s.partition == 0)  // a partitioned service is said once, by its name
      for (const auto& type : s.publishes)
        if (!consumed.count({s.name, type}))
          warning(s.line, "service '" + s.service() + "' publishes '" + type +
                              "', which no service reacts to");
  return out;
}



std::vector<TopologyIssue> check_partition_keys(const Topology& t, const ServiceSpec& s,
                                                const schema::Contract& contract) {
  std::vector<TopologyIssue> out;
  if (!s.partitioned()) return out;
  // Every message an instance takes by key must carry the key: a type without the field
  // would all go to the one instance that owns the empty key.
  for (const auto& type : s.taken_types()) {
    const std::string field = s.key_field(type);
    auto m = contract.messages.find(type);
    if (field.empty() || m == contract.messages.end()) continue;
    const auto& props = m->second.shape.properties;
    auto p = std::find_if(props.begin(), props.end(), [&](const schema::Property& x) { return x.name == field; });
    using K = schema::Shape::Kind;
    if (p != props.end() && (p->shape.kind == K::string || p->shape.kind == K::integer)) continue;
    out.push_back({TopologyIssue::Severity::error,
                   t.file + ":" + std::to_string(s.key_line ? s.key_line : s.line) + ": service '" + s.service() +
                       "' is partitioned by '" + field + "', but " + type +
                       (p == props.end() ? " has no field '" + field + "'"
                                         : "'s field '" + field + "' is neither a string nor an integer") +
                       " (name its key in keys = { " + type + " = \"FIELD\" }, or \"*\" for every instance)"});
  }
  return out;
}

bool ClientSpec::may(const std::vector<std::string>& list, std::string_view service) const {
  // "orders" names every instance of a partitioned orders (orders.0, orders.1, …).
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& s) { return s == "*" || s == service || s == service_of(service); });
}

Admission Topology::admission(const ServiceSpec& service) const {
  Admission a;
  auto add = [](std::vector<std::string>& v, const std::string& name) {
    if (std::find(v.begin(), v.end(), name) == v.end()) v.push_back(name);
  };
  for (const auto& s : services) {
    for (const auto& sub : s.reacts_to)
      if (sub.publisher == service.name) {
        add(a.events, s.name);
        add(a.queries, s.name);
      }
    for (const auto& route : s.sends)
      if (route.target == service.name || route.target == service.group) {
        add(a.commands, s.name);
        add(a.events, s.name);
      }
  }
  for (const auto& c : clients) {
    if (c.role == ClientSpec::Role::tap) {
      add(a.events, c.name);
      continue;
    }
    if (c.may(c.events, service.name)) add(a.events, c.name);
    if (c.may(c.commands, service.name)) add(a.commands, c.name);
    if (c.may(c.queries, service.name)) add(a.queries, c.name);
  }
  return a;
}

const ClientSpec* Topology::find_client(std::string_view name) const {
  for (const auto& c : clients)
    if (c.name == name) return &c;
  return nullptr;
}

std::vector<std::string> Topology::identities() const {
  std::vector<std::string> out;
  for (const auto& s : services) out.push_back(s.name);
  for (const auto& c : clients) out.push_back(c.name);
  return out;
}

}  // namespace troupe
