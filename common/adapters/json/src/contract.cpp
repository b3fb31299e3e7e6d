// Shapes to JSON Schema and back, contracts to JSON and back. What is read comes from
// peers ($schema answers) and files: every error names where, nesting is bounded.
#include <troupe/adapters/json/contract.hpp>

#include <set>

namespace troupe::json {
namespace {

using Kind = schema::Shape::Kind;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw ContractError(where + ": " + what);
}

Json with_null(Json j) {
  if (j.contains("anyOf")) {
    j["anyOf"].push_back(Json{{"type", "null"}});
  } else if (j.contains("type")) {
    j["type"] = Json::array({j["type"], "null"});
  }
  return j;
}

// The JSON Schema "type" of `j` without "null", or "" when it has none.
std::string plain_type(const Json& j, const std::string& where) {
  if (!j.contains("type")) return "";
  const Json& t = j["type"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    std::string found;
    for (const auto& e : t) {
      if (!e.is_string()) fail(where, "\"type\" holds a non-string");
      if (e == "null") continue;
      if (!found.empty()) fail(where, "\"type\" names more than one type besides null");
      found = e.get<std::string>();
    }
    return found;
  }
  fail(where, "\"type\" is neither a string nor an array");
}

}  // namespace

namespace {
Json plain_schema(const schema::Shape& s);
}

Json to_json_schema(const schema::Shape& s) { return s.nullable ? with_null(plain_schema(s)) : plain_schema(s); }

namespace {
Json plain_schema(const schema::Shape& s) {
  Json j = Json::object();
  switch (s.kind) {
    case Kind::boolean: j["type"] = "boolean"; break;
    case Kind::integer:
      j["type"] = "integer";
      j["format"] = s.format;
      if (s.format.rfind("uint", 0) == 0) j["minimum"] = 0;
      break;
    case Kind::number: j["type"] = "number"; j["format"] = "double"; break;
    case Kind::string: j["type"] = "string"; break;
    case Kind::bytes: j["type"] = "string"; j["format"] = "binary"; break;  // msgpack bin
    case Kind::array: j["type"] = "array"; j["items"] = to_json_schema(s.items.at(0)); break;
    case Kind::map:
      j["type"] = "object";
      j["additionalProperties"] = to_json_schema(s.items.at(0));
      break;
    case Kind::tuple: {
      j["type"] = "array";
      Json items = Json::array();
      for (const auto& i : s.items) items.push_back(to_json_schema(i));
      j["items"] = items;
      j["minItems"] = s.items.size();
      j["maxItems"] = s.items.size();
      break;
    }
    case Kind::any_of: {
      Json alts = Json::array();
      for (const auto& i : s.items) alts.push_back(to_json_schema(i));
      j["anyOf"] = alts;
      break;
    }
    case Kind::object: {
      j["type"] = "object";
      if (!s.title.empty()) j["title"] = s.title;
      Json props = Json::object();
      Json required = Json::array();
      for (const auto& p : s.properties) {
        props[p.name] = to_json_schema(p.shape);
        if (p.required) required.push_back(p.name);
      }
      j["properties"] = props;
      if (!required.empty()) j["required"] = required;
      break;
    }
  }
  return j;
}
}  // namespace

namespace {

// Deeper than any message troupe writes (the codec reads 32 levels of nesting).
constexpr int kMaxSchemaDepth = 64;

schema::Shape read_shape(const Json& j, const std::string& where, int depth);

schema::Shape read_sub(const Json& j, const std::string& where, int depth) {
  if (depth >= kMaxSchemaDepth) fail(where, "nested deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
  return read_shape(j, where, depth + 1);
}

bool admits_null(const Json& j) {
  if (j.contains("type")) {
    const Json& t = j["type"];
    if (t == "null") return true;
    if (t.is_array())
      for (const auto& e : t)
        if (e == "null") return true;
  }
  return false;
}

schema::Shape read_shape(const Json& j, const std::string& where, int depth) {
  if (!j.is_object()) fail(where, "a schema must be an object");
  schema::Shape s;
  if (j.contains("anyOf")) {
    s.kind = Kind::any_of;
    if (!j["anyOf"].is_array()) fail(where, "\"anyOf\" must be an array");
    std::size_t i = 0;
    for (const auto& alt : j["anyOf"]) {
      std::string at = where + ".anyOf[" + std::to_string(i++) + "]";
      if (alt.is_object() && alt.contains("type") && alt["type"] == "null") {
        s.nullable = true;
        continue;
      }
      s.items.push_back(read_sub(alt, at, depth));
    }
    return s;
  }
  s.nullable = admits_null(j);
  std::string type = plain_type(j, where);
  std::string format = j.contains("format") && j["format"].is_string() ? j["format"].get<std::string>() : "";
  if (type == "boolean") {
    s.kind = Kind::boolean;
  } else if (type == "integer") {
    s.kind = Kind::integer;
    s.format = format.empty() ? "int64" : format;
  } else if (type == "number") {
    s.kind = Kind::number;
  } else if (type == "string") {
    s.kind = format == "binary" ? Kind::bytes : Kind::string;
  } else if (type == "array") {
    if (!j.contains("items")) fail(where, "an array without \"items\"");
    if (j["items"].is_array()) {
      s.kind = Kind::tuple;
      std::size_t i = 0;
      for (const auto& item : j["items"]) s.items.push_back(read_sub(item, where + ".items[" + std::to_string(i++) + "]", depth));
    } else {
      s.kind = Kind::array;
      s.items.push_back(read_sub(j["items"], where + ".items", depth));
    }
  } else if (type == "object") {
    if (j.contains("additionalProperties") && j["additionalProperties"].is_object() && !j.contains("properties")) {
      s.kind = Kind::map;
      s.items.push_back(read_sub(j["additionalProperties"], where + ".additionalProperties", depth));
      return s;
    }
    s.kind = Kind::object;
    if (j.contains("title") && j["title"].is_string()) s.title = j["title"].get<std::string>();
    std::set<std::string> required;
    if (j.contains("required")) {
      if (!j["required"].is_array()) fail(where, "\"required\" must be an array");
      for (const auto& r : j["required"]) {
        if (!r.is_string()) fail(where, "\"required\" holds a non-string");
        required.insert(r.get<std::string>());
      }
    }
    if (j.contains("properties")) {
      if (!j["properties"].is_object()) fail(where, "\"properties\" must be an object");
      for (const auto& [name, sub] : j["properties"].items())
        s.properties.push_back({name, required.count(name) > 0, read_sub(sub, where + ".properties." + name, depth)});
    }
    for (const auto& r : required) {
      bool known = false;
      for (const auto& p : s.properties) known = known || p.name == r;
      if (!known) fail(where, "\"required\" names '" + r + "', which is not among its properties");
    }
  } else if (type.empty()) {
    fail(where, "a schema without \"type\" or \"anyOf\"");
  } else {
    fail(where, "type '" + type + "' is not one troupe writes");
  }
  return s;
}

}  // namespace

schema::Shape shape_from_json_schema(const Json& j, const std::string& where) { return read_shape(j, where, 0); }

Json to_json(const schema::Contract& c) {
  Json j = Json::object();
  j["service"] = c.service;
  j["build"] = c.build;
  Json messages = Json::object();
  for (const auto& [type, m] : c.messages)
    messages[type] = Json{{"schemaversion", m.version}, {"payload", to_json_schema(m.shape)}};
  j["messages"] = messages;
  j["publishes"] = c.publishes;
  j["accepts"] = c.accepts;
  Json answers = Json::object();
  for (const auto& [q, r] : c.answers) answers[q] = r;
  j["answers"] = answers;
  j["reads"] = c.reads;
  Json sends = Json::object();
  for (const auto& [target, types] : c.sends) sends[target] = types;
  j["sends"] = sends;
  return j;
}

schema::Contract contract_from_json(const Json& j) {
  if (!j.is_object()) fail("contract", "expected an object");
  auto str = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_string()) fail("contract", std::string("missing string '") + key + "'");
    return j[key].get<std::string>();
  };
  auto names = [&](const char* key) {
    std::vector<std::string> out;
    if (!j.contains(key)) return out;
    if (!j[key].is_array()) fail("contract", std::string("'") + key + "' must be an array of type names");
    for (const auto& e : j[key]) {
      if (!e.is_string()) fail(std::string("contract.") + key, "holds a non-string");
      out.push_back(e.get<std::string>());
    }
    return out;
  };
  schema::Contract c;
  c.service = str("service");
  c.build = j.contains("build") && j["build"].is_string() ? j["build"].get<std::string>() : "";
  if (!j.contains("messages") || !j["messages"].is_object()) fail("contract", "missing object 'messages'");
  for (const auto& [type, m] : j["messages"].items()) {
    std::string where = "messages." + type;
    if (!m.is_object() || !m.contains("payload")) fail(where, "expected an object with 'payload'");
    schema::MessageSchema ms;
    ms.type = type;
    if (m.contains("schemaversion")) {
      if (!m["schemaversion"].is_number_unsigned()) fail(where, "'schemaversion' must be an unsigned integer");
      ms.version = m["schemaversion"].get<std::uint32_t>();
    }
    ms.shape = shape_from_json_schema(m["payload"], where + ".payload");
    c.messages.emplace(type, std::move(ms));
  }
  c.publishes = names("publishes");
  c.accepts = names("accepts");
  c.reads = names("reads");
  if (j.contains("answers")) {
    if (!j["answers"].is_object()) fail("contract", "'answers' must map a query to its reply");
    for (const auto& [q, r] : j["answers"].items()) {
      if (!r.is_string()) fail("contract.answers." + q, "expected the reply's type name");
      c.answers[q] = r.get<std::string>();
    }
  }
  if (j.contains("sends")) {
    if (!j["sends"].is_object()) fail("contract", "'sends' must map a service to the commands sent to it");
    for (const auto& [target, types] : j["sends"].items()) {
      if (!types.is_array()) fail("contract.sends." + target, "expected an array of type names");
      for (const auto& t : types) {
        if (!t.is_string()) fail("contract.sends." + target, "holds a non-string");
        c.sends[target].push_back(t.get<std::string>());
      }
    }
  }
  auto known = [&](const std::string& type, const std::string& where) {
    if (!c.messages.count(type)) fail(where, "names '" + type + "', which 'messages' does not describe");
  };
  for (const auto& t : c.publishes) known(t, "contract.publishes");
  for (const auto& t : c.accepts) known(t, "contract.accepts");
  for (const auto& t : c.reads) known(t, "contract.reads");
  for (const auto& [target, types] : c.sends)
    for (const auto& t : types) known(t, "contract.sends." + target);
  for (const auto& [q, r] : c.answers) {
    known(q, "contract.answers");
    known(r, "contract.answers." + q);
  }
  return c;
}

std::string contract_text(const schema::Contract& contract) { return to_json(contract).dump(); }

schema::Contract parse_contract(std::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) throw ContractError("contract: not valid JSON");
  return contract_from_json(j);
}

}  // namespace troupe::json
