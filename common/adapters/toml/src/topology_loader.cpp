// TOML topology loader: schema-checked, so a mistyped key fails with its name and line.
#include <troupe/adapters/toml/topology_loader.hpp>

#include <troupe/adapters/toml/screen.hpp>

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace troupe::toml {
namespace {

using Code = Rejection::Code;

constexpr std::int64_t kMaxPerSecond = 1'000'000'000;

struct Parser {
  std::string file;
  std::optional<Rejection> error;

  int line_of(const ::toml::node& n) const { return static_cast<int>(n.source().begin.line); }

  bool fail(int line, std::string what, Code code = Code::invalid) {
    if (!error) error = reject(code, file + ":" + std::to_string(line), std::move(what));
    return false;
  }

  bool only_keys(const ::toml::table& t, std::string_view where, std::set<std::string_view> keys) {
    for (auto&& [k, v] : t)
      if (!keys.count(k.str()))
        return fail(line_of(v), "unknown key '" + std::string(k.str()) + "' in " + std::string(where));
    return true;
  }

  bool get_string(const ::toml::table& t, std::string_view key, std::string& out, bool required,
                  int table_line, std::string_view where) {
    const ::toml::node* n = t.get(key);
    if (!n) {
      if (required)
        return fail(table_line, std::string(where) + " has no '" + std::string(key) + "'", Code::missing);
      return true;
    }
    if (!n->is_string())
      return fail(line_of(*n), "'" + std::string(key) + "' in " + std::string(where) +
                                   " must be a string", Code::wrong_type);
    out = **n->as_string();
    return true;
  }

  template <class Int>
  bool get_int(const ::toml::table& t, std::string_view key, Int& out, std::int64_t min,
               std::int64_t max) {
    const ::toml::node* n = t.get(key);
    if (!n) return true;
    if (!n->is_integer())
      return fail(line_of(*n), "'" + std::string(key) + "' must be an integer", Code::wrong_type);
    std::int64_t v = **n->as_integer();
    if (v < min || v > max)
      return fail(line_of(*n), "'" + std::string(key) + "' must be between " + std::to_string(min) +
                                   " and " + std::to_string(max) + ", got " + std::to_string(v));
    out = static_cast<Int>(v);
    return true;
  }

  bool get_names(const ::toml::node& n, std::string_view what, std::vector<std::string>& out) {
    const ::toml::array* a = n.as_array();
    if (!a) return fail(line_of(n), std::string(what) + " must be an array of strings", Code::wrong_type);
    for (auto&& e : *a) {
      if (!e.is_string())
        return fail(line_of(e), std::string(what) + " must be an array of strings", Code::wrong_type);
      std::string name = **e.as_string();
      if (!valid_name(name))
        return fail(line_of(e), "'" + name + "' in " + std::string(what) +
                                    " is not a valid name (no spaces, not starting with '$')");
      if (std::find(out.begin(), out.end(), name) != out.end())
        return fail(line_of(e), "'" + name + "' is listed twice in " + std::string(what));
      out.push_back(std::move(name));
    }
    return true;
  }

  bool mesh(const ::toml::table& t, int line, Topology& topo) {
    if (!only_keys(t, "[mesh]",
                   {"name", "state_dir", "heartbeat_ms", "security", "durability", "synchronous", "commit",
                    "batch_max", "batch_delay_us", "retention_events", "retention_command_ids",
                    "max_message_bytes", "max_field_bytes", "max_dead_letters", "max_dead_letter_bytes",
                    "client_queries_per_second", "client_commands_per_second", "seed", "host", "keys_dir"}))
      return false;
    auto& d = topo.defaults;
    std::string durability = "durable", synchronous = "full", commit = "inline";
    std::int64_t heartbeat = d.heartbeat.count(), delay = d.batch_delay.count();
    if (!get_string(t, "name", topo.mesh, true, line, "[mesh]") ||
        !get_string(t, "state_dir", d.state_dir, false, line, "[mesh]") ||
        !get_string(t, "security", d.security, false, line, "[mesh]") ||
        !get_string(t, "durability", durability, false, line, "[mesh]") ||
        !get_string(t, "synchronous", synchronous, false, line, "[mesh]") ||
        !get_string(t, "commit", commit, false, line, "[mesh]") ||
        !get_string(t, "seed", d.seed, false, line, "[mesh]") ||
        !get_string(t, "host", d.host, false, line, "[mesh]") ||
        !get_string(t, "keys_dir", d.keys_dir, false, line, "[mesh]") ||
        !get_int(t, "heartbeat_ms", heartbeat, 10, 3'600'000) ||
        !get_int(t, "batch_max", d.batch_max, 1, 100'000) ||
        !get_int(t, "batch_delay_us", delay, 0, 1'000'000) ||
        !get_int(t, "retention_events", d.retention_events, 1, std::int64_t{1} << 40) ||
        !get_int(t, "retention_command_ids", d.retention_command_ids, 1, std::int64_t{1} << 40) ||
        !get_int(t, "max_message_bytes", d.max_message_bytes, 1024, std::int64_t{1} << 30) ||
        !get_int(t, "max_field_bytes", d.max_field_bytes, 1, std::int64_t{1} << 30) ||
        !get_int(t, "max_dead_letters", d.max_dead_letters, 1, std::int64_t{1} << 40) ||
        !get_int(t, "max_dead_letter_bytes", d.max_dead_letter_bytes, 1024, std::int64_t{1} << 40) ||
        !get_int(t, "client_queries_per_second", d.client_queries_per_second, 0, kMaxPerSecond) ||
        !get_int(t, "client_commands_per_second", d.client_commands_per_second, 0, kMaxPerSecond))
      return false;
    d.heartbeat = std::chrono::milliseconds(heartbeat);
    d.batch_delay = std::chrono::microseconds(delay);
    auto line_of_key = [&](std::string_view k) { return t.get(k) ? line_of(*t.get(k)) : line; };
    if (durability == "durable") d.durability = Durability::durable;
    else if (durability == "memory") d.durability = Durability::memory;
    else return fail(line_of_key("durability"), "durability must be \"durable\" or \"memory\", got \"" + durability + "\"");
    if (synchronous == "full") d.synchronous = Synchronous::full;
    else if (synchronous == "normal") d.synchronous = Synchronous::normal;
    else return fail(line_of_key("synchronous"), "synchronous must be \"full\" or \"normal\", got \"" + synchronous + "\"");
    if (commit == "pipelined") d.pipelined_commit = true;
    else if (commit == "inline") d.pipelined_commit = false;
    else return fail(line_of_key("commit"), "commit must be \"pipelined\" or \"inline\", got \"" + commit + "\"");
    if (d.pipelined_commit && d.synchronous != Synchronous::full)
      return fail(line_of_key("commit"), "commit = \"pipelined\" needs synchronous = \"full\": with \"" +
                                             synchronous + "\" no commit is fsynced, so there is nothing to pipeline");
    if (d.security != "none" && d.security != "curve")
      return fail(line_of_key("security"), "security must be \"none\" or \"curve\", got \"" + d.security + "\"");
    return true;
  }

  bool routes(const ::toml::node& n, std::string_view what, std::vector<std::pair<std::string, std::pair<std::vector<std::string>, int>>>& out) {
    const ::toml::table* t = n.as_table();
    if (!t) return fail(line_of(n), std::string(what) + " must be a table of service = [types]", Code::wrong_type);
    for (auto&& [k, v] : *t) {
      std::vector<std::string> types;
      if (!get_names(v, std::string(what) + "." + std::string(k.str()), types)) return false;
      out.push_back({std::string(k.str()), {std::move(types), line_of(v)}});
    }
    return true;
  }

  bool service(std::string name, const ::toml::table& t, ServiceSpec& s) {
    s.name = std::move(name);
    s.line = line_of(t);
    std::string where = "[services." + s.name + "]";
    if (!only_keys(t, where, {"events", "commands", "queries", "publishes", "accepts", "answers",
                              "reacts_to", "sends", "expose", "public_key", "partitions", "key", "keys"}))
      return false;
    if (s.name.find('.') != std::string::npos)
      return fail(s.line, "service name '" + s.name + "' has a '.', which names the instances of a partitioned "
                          "service (orders.0, orders.1, ...)");
    if (!get_int(t, "partitions", s.partitions, 1, 256) || !get_string(t, "key", s.key, false, s.line, where))
      return false;
    if (const ::toml::node* n = t.get("key")) s.key_line = line_of(*n);
    if (const ::toml::node* n = t.get("keys")) {
      const ::toml::table* k = n->as_table();
      if (!k) return fail(line_of(*n), "keys in " + where + " must be a table of TYPE = \"field\" (or \"*\")", Code::wrong_type);
      for (auto&& [type, field] : *k) {
        if (!field.is_string())
          return fail(line_of(field), "keys." + std::string(type.str()) + " in " + where + " must be a field name or \"*\"",
                      Code::wrong_type);
        s.keys.push_back({std::string(type.str()), **field.as_string()});
        if (s.keys.back().second.empty())
          return fail(line_of(field), "keys." + std::string(type.str()) + " in " + where +
                                          " is empty: name the field, or \"*\" for every instance");
      }
    }
    if (t.get("key") && s.key.empty())
      return fail(s.key_line, "key in " + where + " is empty: name the payload field that carries the key");
    if (s.partitions > 1 && s.key.empty() && s.keys.empty())
      return fail(t.get("partitions") ? line_of(*t.get("partitions")) : s.line,
                  where + " has partitions = " + std::to_string(s.partitions) +
                      " but no key: say which payload field routes a message (key = \"order_id\")",
                  Code::missing);
    if (!public_key(t, s.public_key, s.line, where)) return false;
    if (const ::toml::node* n = t.get("expose")) {
      const ::toml::table* x = n->as_table();
      std::string xwhere = where + ".expose";
      if (!x) return fail(line_of(*n), "expose must be a table of events/commands/queries endpoints", Code::wrong_type);
      if (!only_keys(*x, xwhere, {"events", "commands", "queries"}) ||
          !get_string(*x, "events", s.expose.events, false, s.line, xwhere) ||
          !get_string(*x, "commands", s.expose.commands, false, s.line, xwhere) ||
          !get_string(*x, "queries", s.expose.queries, false, s.line, xwhere))
        return false;
    }
    // A partitioned service may list an endpoint per instance (instances on hosts of
    // their own): an array of exactly `partitions` strings.
    for (auto [key, field] : {std::pair{"events", &Endpoints::events}, std::pair{"commands", &Endpoints::commands},
                              std::pair{"queries", &Endpoints::queries}}) {
      const ::toml::node* n = t.get(key);
      if (!n || !n->is_array()) {
        if (!get_string(t, key, s.endpoints.*field, true, s.line, where)) return false;
        continue;
      }
      const ::toml::array& a = *n->as_array();
      if (s.partitions < 2 || a.size() != static_cast<std::size_t>(s.partitions))
        return fail(line_of(*n), std::string(key) + " in " + where + " lists " + std::to_string(a.size()) +
                                     " endpoints: a list is one per partition (partitions = " +
                                     std::to_string(s.partitions) + ")");
      s.instance_endpoints.resize(a.size());
      for (std::size_t k = 0; k < a.size(); ++k) {
        if (!a[k].is_string())
          return fail(line_of(a[k]), std::string(key) + " in " + where + " must list strings", Code::wrong_type);
        s.instance_endpoints[k].*field = **a[k].as_string();
      }
      s.endpoints.*field = s.instance_endpoints[0].*field;
    }
    for (auto [key, list] : {std::pair{"publishes", &s.publishes}, std::pair{"accepts", &s.accepts},
                             std::pair{"answers", &s.answers}})
      if (const ::toml::node* n = t.get(key))
        if (!get_names(*n, s.name + "." + key, *list)) return false;
    if (const ::toml::node* n = t.get("reacts_to")) {
      std::vector<std::pair<std::string, std::pair<std::vector<std::string>, int>>> r;
      if (!routes(*n, s.name + ".reacts_to", r)) return false;
      for (auto& [pub, tl] : r) {
        if (pub.find('.') != std::string::npos)
          return fail(tl.second, s.name + " reacts to '" + pub + "': name the service, not one of its instances");
        s.reacts_to.push_back({pub, std::move(tl.first), tl.second});
      }
    }
    if (const ::toml::node* n = t.get("sends")) {
      std::vector<std::pair<std::string, std::pair<std::vector<std::string>, int>>> r;
      if (!routes(*n, s.name + ".sends", r)) return false;
      for (auto& [target, tl] : r) {
        if (target.find('.') != std::string::npos)
          return fail(tl.second, s.name + " sends to '" + target +
                                     "': name the service, not one of its instances (commands are routed by key)");
        s.sends.push_back({target, std::move(tl.first), tl.second});
      }
    }
    return true;
  }

  // A CURVE public key in Z85: 40 characters of the Z85 alphabet.
  bool public_key(const ::toml::table& t, std::string& out, int line, const std::string& where) {
    if (!get_string(t, "public_key", out, false, line, where)) return false;
    static constexpr std::string_view kZ85 =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (!out.empty() && (out.size() != 40 || out.find_first_not_of(kZ85) != std::string::npos))
      return fail(line_of(*t.get("public_key")),
                  "public_key in " + where + " must be a CURVE public key in Z85 (40 characters)");
    return true;
  }

  // [limits.TYPE]: whether TYPE is a type of the mesh is check_topology's to say.
  bool limits(std::string type, const ::toml::table& t, TypeLimits& l, const MeshDefaults& defaults) {
    l.type = std::move(type);
    l.line = line_of(t);
    std::string where = "[limits." + l.type + "]";
    if (!valid_name(l.type))
      return fail(l.line, "'" + l.type + "' in " + where + " is not a valid message type name");
    if (!only_keys(t, where, {"max_field_bytes"})) return false;
    l.max_field_bytes = defaults.max_field_bytes;
    return get_int(t, "max_field_bytes", l.max_field_bytes, 1, std::int64_t{1} << 30);
  }

  bool client(std::string name, const ::toml::table& t, ClientSpec::Role role, ClientSpec& c,
              const MeshDefaults& defaults) {
    c.name = std::move(name);
    c.role = role;
    c.line = line_of(t);
    std::string where = std::string(role == ClientSpec::Role::tap ? "[taps." : "[clients.") + c.name + "]";
    if (role == ClientSpec::Role::tap) {
      if (!only_keys(t, where, {"public_key"})) return false;
    } else {
      c.queries_per_second = defaults.client_queries_per_second;
      c.commands_per_second = defaults.client_commands_per_second;
      if (!only_keys(t, where, {"public_key", "commands", "queries", "events", "queries_per_second",
                                "commands_per_second"}) ||
          !get_int(t, "queries_per_second", c.queries_per_second, 0, kMaxPerSecond) ||
          !get_int(t, "commands_per_second", c.commands_per_second, 0, kMaxPerSecond))
        return false;
    }
    if (!public_key(t, c.public_key, c.line, where)) return false;
    for (auto [key, list] : {std::pair{"commands", &c.commands}, std::pair{"queries", &c.queries},
                             std::pair{"events", &c.events}})
      if (const ::toml::node* n = t.get(key)) {
        const ::toml::array* a = n->as_array();
        if (!a) return fail(line_of(*n), std::string(key) + " in " + where + " must be an array of service names", Code::wrong_type);
        for (auto&& e : *a) {
          if (!e.is_string()) return fail(line_of(e), std::string(key) + " in " + where + " must be an array of service names", Code::wrong_type);
          list->push_back(**e.as_string());
        }
      }
    return true;
  }
};

void substitute(std::string& s, std::string_view var, std::string_view value) {
  for (auto at = s.find(var); at != std::string::npos; at = s.find(var, at + value.size()))
    s.replace(at, var.size(), value);
}

// A service declared with partitions = N becomes its N instances (orders.0 …), each
// with endpoints of its own; a reaction to a partitioned publisher becomes one per
// instance (each is a stream of its own). Sends and client lists keep naming the
// declared service: a command is routed to an instance when it is sent.
Result<void> expand_partitions(Topology& topo) {
  std::vector<ServiceSpec> out;
  for (auto& s : topo.services) {
    const auto taken = s.taken_types();
    for (const auto& [type, field] : s.keys) {
      bool known = s.answers_type(type) || std::find(taken.begin(), taken.end(), type) != taken.end();
      if (!known)
        return reject(Code::invalid, topo.file + ":" + std::to_string(s.line),
                      "[services." + s.name + "] keys names '" + type +
                          "', which the service does not accept, answer or react to");
    }
    if (!s.partitioned()) {
      out.push_back(std::move(s));
      continue;
    }
    if (s.key.empty()) {
      // No default key: every type the instances take must have one of its own.
      for (const auto& type : taken)
        if (std::none_of(s.keys.begin(), s.keys.end(), [&](const auto& k) { return k.first == type; }))
          return reject(Code::missing, topo.file + ":" + std::to_string(s.line),
                        "[services." + s.name + "] is partitioned and has no default key: name the key of " + type +
                            " in keys (or set key = \"FIELD\")");
    }
    for (int k = 0; k < s.partitions; ++k) {
      ServiceSpec p = s;
      p.group = s.name;
      p.partition = k;
      p.name = s.name + "." + std::to_string(k);
      for (auto* e : {&p.endpoints.events, &p.endpoints.commands, &p.endpoints.queries, &p.expose.events,
                      &p.expose.commands, &p.expose.queries})
        if (!e->empty()) *e = partition_endpoint(*e, s.name, k);
      // Listed per instance: as listed (an endpoint not listed is derived as above).
      if (!s.instance_endpoints.empty()) {
        const Endpoints& listed = s.instance_endpoints[k];
        for (auto field : {&Endpoints::events, &Endpoints::commands, &Endpoints::queries})
          if (!(listed.*field).empty()) p.endpoints.*field = listed.*field;
      }
      if (!s.public_key.empty())
        return reject(Code::invalid, topo.file + ":" + std::to_string(s.line),
                      "[services." + s.name + "] is partitioned: each instance has a key pair of its own, "
                      "so public_key cannot name one (leave it out and use the keys directory)");
      out.push_back(std::move(p));
    }
  }
  for (auto& s : out) {
    std::vector<Subscription> subs;
    for (auto& sub : s.reacts_to) {
      bool partitioned = false;
      for (const auto& p : out)
        if (p.group == sub.publisher) {
          subs.push_back({p.name, sub.types, sub.line});
          partitioned = true;
        }
      if (!partitioned) subs.push_back(std::move(sub));
    }
    s.reacts_to = std::move(subs);
  }
  topo.services = std::move(out);
  return {};
}

}  // namespace

Result<Topology> parse_topology(std::string_view text, std::string name, const LoadOptions& options,
                                std::vector<std::string>* warnings) {
  Parser p{name, std::nullopt};
  if (auto screened = screen_toml(text, name); !screened) return screened.error();
  ::toml::table root;
  try {
    root = ::toml::parse(text, name);
  } catch (const ::toml::parse_error& e) {
    return reject(Code::malformed, name + ":" + std::to_string(e.source().begin.line),
                  std::string(e.description()));
  }
  Topology topo;
  topo.file = name;
  for (auto&& [k, v] : root)
    if (k.str() != "mesh" && k.str() != "services" && k.str() != "clients" && k.str() != "taps" &&
        k.str() != "limits")
      return reject(Code::invalid, name + ":" + std::to_string(p.line_of(v)),
                    "unknown table '" + std::string(k.str()) +
                        "' (expected [mesh], [services.NAME], [clients.NAME], [taps.NAME] and [limits.TYPE])");
  const ::toml::table* mesh = root["mesh"].as_table();
  if (!mesh) return reject(Code::missing, name + ":1", "no [mesh] table");
  if (!p.mesh(*mesh, p.line_of(*mesh), topo)) return *p.error;
  if (options.state_dir) topo.defaults.state_dir = *options.state_dir;

  const ::toml::table* services = root["services"].as_table();
  if (!services) return reject(Code::missing, name + ":1", "no [services.NAME] tables");
  for (auto&& [k, v] : *services) {
    const ::toml::table* t = v.as_table();
    if (!t) return reject(Code::wrong_type, name + ":" + std::to_string(p.line_of(v)),
                          "services." + std::string(k.str()) + " must be a table");
    ServiceSpec s;
    if (!p.service(std::string(k.str()), *t, s)) return *p.error;
    for (auto* e : {&s.endpoints.events, &s.endpoints.commands, &s.endpoints.queries, &s.expose.events,
                    &s.expose.commands, &s.expose.queries})
      substitute(*e, "{state_dir}", topo.defaults.state_dir);
    for (auto& i : s.instance_endpoints)
      for (auto* e : {&i.events, &i.commands, &i.queries}) substitute(*e, "{state_dir}", topo.defaults.state_dir);
    topo.services.push_back(std::move(s));
  }
  if (auto expanded = expand_partitions(topo); !expanded) return expanded.error();
  for (auto [table, role] : {std::pair{"clients", ClientSpec::Role::client}, std::pair{"taps", ClientSpec::Role::tap}}) {
    const ::toml::node* group = root.get(table);
    if (!group) continue;
    if (!group->is_table())
      return reject(Code::wrong_type, name + ":" + std::to_string(p.line_of(*group)),
                    std::string(table) + " must be tables [" + table + ".NAME]");
    for (auto&& [k, v] : *group->as_table()) {
      const ::toml::table* t = v.as_table();
      if (!t) return reject(Code::wrong_type, name + ":" + std::to_string(p.line_of(v)),
                            std::string(table) + "." + std::string(k.str()) + " must be a table");
      ClientSpec c;
      if (!p.client(std::string(k.str()), *t, role, c, topo.defaults)) return *p.error;
      topo.clients.push_back(std::move(c));
    }
  }
  if (const ::toml::node* group = root.get("limits")) {
    if (!group->is_table())
      return reject(Code::wrong_type, name + ":" + std::to_string(p.line_of(*group)),
                    "limits must be tables [limits.TYPE]");
    for (auto&& [k, v] : *group->as_table()) {
      const ::toml::table* t = v.as_table();
      if (!t) return reject(Code::wrong_type, name + ":" + std::to_string(p.line_of(v)),
                            "limits." + std::string(k.str()) + " must be a table [limits." + std::string(k.str()) + "]");
      TypeLimits l;
      if (!p.limits(std::string(k.str()), *t, l, topo.defaults)) return *p.error;
      topo.limits.push_back(std::move(l));
    }
  }
  substitute(topo.defaults.keys_dir, "{state_dir}", topo.defaults.state_dir);
  if (topo.curve() && topo.defaults.keys_dir.empty())
    return reject(Code::invalid, name + ":" + std::to_string(p.line_of(*mesh)), "security \"curve\" needs a keys_dir");
  std::stable_sort(topo.services.begin(), topo.services.end(),
            [](const ServiceSpec& a, const ServiceSpec& b) { return a.line < b.line; });
  std::sort(topo.limits.begin(), topo.limits.end(),
            [](const TypeLimits& a, const TypeLimits& b) { return a.line < b.line; });

  if (!options.check) return topo;
  for (auto& issue : check_topology(topo)) {
    if (issue.severity == TopologyIssue::Severity::error) {
      auto colon = issue.message.find(": ");
      return reject(Code::invalid, issue.message.substr(0, colon), issue.message.substr(colon + 2));
    }
    if (warnings) warnings->push_back(issue.message);
  }
  return topo;
}

Result<Topology> load_topology(const std::string& path, const LoadOptions& options,
                               std::vector<std::string>* warnings) {
  std::ifstream in(path);
  if (!in) return reject(Code::missing, path, "cannot read the topology file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_topology(ss.str(), path, options, warnings);
}

}  // namespace troupe::toml
