#include <troupe/tools/mesh_json.hpp>

#include <troupe/runtime/client.hpp>

#include <ctime>
#include <iomanip>
#include <sstream>

namespace troupe::tools {

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

std::int64_t micros(const std::string& t) {
  if (t.size() < 19) return 0;
  std::tm tm{};
  std::istringstream in(t.substr(0, 19));
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return 0;
  std::int64_t us = 0;
  if (t.size() >= 26 && t[19] == '.') {
    for (int i = 20; i < 26; ++i) {
      if (t[i] < '0' || t[i] > '9') return 0;
      us = us * 10 + (t[i] - '0');
    }
  }
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000 + us;
}

nlohmann::json merge_replies(std::vector<std::pair<std::string, nlohmann::json>> replies, bool by_instance) {
  if (replies.size() == 1) return std::move(replies.front().second);
  nlohmann::json merged = by_instance ? nlohmann::json::object() : nlohmann::json();
  for (auto& [instance, part] : replies) {
    if (by_instance) {
      merged[instance] = std::move(part);
    } else if (merged.is_null()) {
      merged = std::move(part);
    } else if (merged.is_object() && part.is_object()) {
      for (auto& [k, v] : part.items())
        if (v.is_array() && merged.contains(k) && merged[k].is_array())
          for (auto& row : v) merged[k].push_back(std::move(row));
    }
  }
  return merged;
}

std::vector<std::string> ask_of(const Client& client, const std::string& service, const std::string& type,
                                std::string_view payload) {
  auto instances = client.topology().instances(service);
  if (instances.size() <= 1 || (type.rfind('$', 0) != 0 && client.route(service, type, payload)))
    return {service};
  std::vector<std::string> out;
  for (const auto* i : instances) out.push_back(i->name);
  return out;
}

}  // namespace troupe::tools
