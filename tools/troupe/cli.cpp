// Shared helpers of the `troupe` command.
#include "cli.hpp"

#include <cstdlib>
#include <iostream>

namespace troupe::cli {

void add_common(CLI::App& app, Common& c) {
  app.add_option("--topology,-t", c.topology, "topology file")->capture_default_str();
  app.add_option("--state-dir", c.state_dir, "override the topology's state directory");
  app.add_option("--timeout", c.timeout_ms, "milliseconds to wait for an answer")->capture_default_str();
  app.add_option("--identity", c.identity,
                 "CURVE identity to present, a [clients.NAME] or [taps.NAME] of the topology "
                 "(default: $TROUPE_IDENTITY, else cli; tap for troupe tap)");
}

std::string identity(const Common& c, const char* fallback) {
  if (!c.identity.empty()) return c.identity;
  if (const char* env = std::getenv("TROUPE_IDENTITY"); env && *env) return env;
  return fallback;
}

std::optional<Topology> load(const Common& c, bool check) {
  toml::LoadOptions o;
  if (!c.state_dir.empty()) o.state_dir = c.state_dir;
  o.check = check;
  auto t = toml::load_topology(c.topology, o);
  if (!t) {
    std::cerr << "troupe: " << t.error().message() << '\n';
    return std::nullopt;
  }
  return std::move(*t);
}

std::string to_msgpack(const nlohmann::json& j) {
  auto v = nlohmann::json::to_msgpack(j);
  return std::string(v.begin(), v.end());
}

nlohmann::json to_json(std::string_view bytes) {
  try {
    return nlohmann::json::from_msgpack(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    return nlohmann::json{{"$undecodable", e.what()}, {"bytes", bytes.size()}};
  }
}

std::string dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<nlohmann::json> parse_json(const std::string& text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::cerr << "troupe: " << what << " is not JSON: " << e.what() << '\n';
    return std::nullopt;
  }
}

std::string short_fields(const nlohmann::json& data, std::size_t width) {
  std::string out;
  if (!data.is_object()) return out;
  for (const auto& [k, v] : data.items()) {
    if (k == "order_id") continue;
    if (out.size() > width) {
      out += " …";
      break;
    }
    out += (out.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : dump(v));
  }
  return printable(out);
}

nlohmann::json cloudevent(const Envelope& e, std::string_view payload) { return cloudevent_json(e, to_json(payload)); }

nlohmann::json cloudevent_json(const Envelope& e, nlohmann::json data) {
  nlohmann::json j{{"specversion", e.specversion}, {"id", e.id},     {"source", e.source},
                   {"type", e.type},               {"time", e.time}, {"datacontenttype", "application/json"},
                   {"kind", std::string(to_string(e.kind))}};
  if (e.sequence) j["sequence"] = e.sequence;
  if (!e.correlationid.empty()) j["correlationid"] = e.correlationid;
  if (!e.causationid.empty()) j["causationid"] = e.causationid;
  if (!e.traceparent.empty()) j["traceparent"] = e.traceparent;
  j["schemaversion"] = e.schemaversion;
  j["data"] = std::move(data);
  return j;
}

}  // namespace troupe::cli
