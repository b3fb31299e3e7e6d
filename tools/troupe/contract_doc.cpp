// The AsyncAPI document of a mesh, read back for troupe compat; message descriptions
// from messages.hpp; a small YAML writer for the document (JSON in block style).
#include "contract_doc.hpp"

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>
#include <sstream>

namespace troupe::contract {
namespace {

using json::ContractError;

// What travels in every message's first frame (docs/protocol.md §2), as message headers.
Json envelope_schema() {
  auto str = [](const char* d) { return Json{{"type", "string"}, {"description", d}}; };
  auto uint = [](const char* d, const char* f) {
    return Json{{"type", "integer"}, {"format", f}, {"minimum", 0}, {"description", d}};
  };
  Json props = Json::object();
  props["specversion"] = str("CloudEvents version, \"1.0\"");
  props["id"] = str("unique message id (UUIDv7)");
  props["source"] = str("the service or client that sent the message");
  props["type"] = str("the message type; for events also the topic, followed by one space");
  props["time"] = str("RFC 3339 UTC time of emission with microseconds");
  props["datacontenttype"] = str("\"application/msgpack\" (the default when absent)");
  props["kind"] = Json{{"type", "string"}, {"enum", {"event", "command", "query", "reply"}}};
  props["sequence"] = uint("events: the publisher's sequence; commands: the sender's sequence to this service; "
                           "absent or 0 means none",
                           "uint64");
  props["epoch"] = uint("the publisher's (or durable sender's) epoch: drawn each time its store is opened", "uint64");
  props["correlationid"] = str("the saga the message belongs to (an order id, say)");
  props["causationid"] = str("the id of the message that caused this one; a reply names its query");
  props["traceparent"] = str("W3C Trace Context traceparent");
  props["schemaversion"] = uint("version of the payload's schema (x-troupe-schemaversion of the message); default 1",
                                "uint32");
  return Json{{"type", "object"},
              {"description", "The envelope: a msgpack map in the frame before the payload, with CloudEvents names "
                              "(docs/protocol.md §2). Unknown keys are ignored."},
              {"properties", props},
              {"required", {"specversion", "id", "source", "type", "kind"}}};
}

// "ipc://var/shop/orders.events" -> "ipc://{state_dir}/orders.events": documents do not
// depend on where they were written.
std::string portable(const std::string& endpoint, const std::string& state_dir) {
  std::string prefix = "ipc://" + state_dir + "/";
  if (!state_dir.empty() && endpoint.rfind(prefix, 0) == 0) return "ipc://{state_dir}/" + endpoint.substr(prefix.size());
  return endpoint;
}

Json server_for(const std::string& endpoint, const std::string& state_dir, bool curve, const std::string& what) {
  Json s = Json::object();
  auto sep = endpoint.find("://");
  std::string transport = sep == std::string::npos ? "" : endpoint.substr(0, sep);
  std::string rest = sep == std::string::npos ? endpoint : endpoint.substr(sep + 3);
  if (transport == "tcp") {
    s["host"] = rest;
  } else {
    s["host"] = "localhost";
    s["pathname"] = rest.empty() || rest[0] == '/' ? rest : "/" + rest;
  }
  s["protocol"] = "zmtp";
  s["protocolVersion"] = "3.1";
  s["description"] = what + " (ZeroMQ over " + (transport.empty() ? "?" : transport) + ": " + endpoint + ")";
  if (rest.find("{state_dir}") != std::string::npos)
    s["variables"] = Json{{"state_dir", Json{{"default", state_dir},
                                             {"description", "[mesh] state_dir of the topology, relative to the "
                                                             "working directory of the processes"}}}};
  if (curve) s["security"] = Json::array({Json{{"$ref", "#/components/securitySchemes/curve"}}});
  s["x-troupe-endpoint"] = endpoint;
  return s;
}

std::string first_sentence(const std::string& text) {
  auto dot = text.find(". ");
  return dot == std::string::npos ? text : text.substr(0, dot + 1);
}

std::string ref_tail(const Json& ref, const std::string& prefix, const std::string& where) {
  if (!ref.is_object() || !ref.contains("$ref") || !ref["$ref"].is_string())
    throw ContractError(where + ": expected a $ref");
  std::string r = ref["$ref"].get<std::string>();
  if (r.rfind(prefix, 0) != 0) throw ContractError(where + ": $ref '" + r + "' does not start with " + prefix);
  return r.substr(prefix.size());
}

}  // namespace

Descriptions descriptions_from_header(std::string_view text) {
  Descriptions out;
  std::istringstream in{std::string(text)};
  std::string line, block, current;
  static const std::regex comment(R"(^\s*//\s?(.*)$)");
  static const std::regex open(R"(^\s*struct\s+(\w+)\s*\{)");
  static const std::regex field(R"(^\s*[^/]*?[\w>:\s]\s*(\w+)\s*(=[^;]*)?;\s*//\s*(.*)$)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (current.empty()) {
      if (std::regex_match(line, m, comment)) {
        std::string t = m[1].str();
        if (t.rfind("---", 0) == 0) {  // a section header, not a description
          block.clear();
          continue;
        }
        block += (block.empty() ? "" : " ") + t;
      } else if (std::regex_search(line, m, open)) {
        current = m[1].str();
        if (!block.empty()) out[current].text = block;
        block.clear();
      } else {
        block.clear();
      }
      continue;
    }
    if (line.find("};") != std::string::npos && line.find("TROUPE_") == std::string::npos) {
      current.clear();
      continue;
    }
    if (std::regex_match(line, m, field) && line.find("using ") == std::string::npos)
      out[current].fields[m[1].str()] = m[3].str();
  }
  return out;
}

Json asyncapi(const Topology& t, const std::map<std::string, schema::Contract>& contracts,
              const Descriptions& descriptions) {
  const std::string& state_dir = t.defaults.state_dir;
  auto contract_of = [&](const std::string& service) -> const schema::Contract& {
    auto it = contracts.find(service);
    if (it == contracts.end())
      throw ContractError("service '" + service + "': no contract (ask the running mesh with --mesh, or give its "
                          "--contract output with --contracts)");
    return it->second;
  };
  auto message_of = [&](const std::string& service, const std::string& type,
                        const char* role) -> const schema::MessageSchema& {
    const auto& c = contract_of(service);
    auto it = c.messages.find(type);
    if (it == c.messages.end())
      throw ContractError("service '" + service + "': the topology (" + t.file + ") says it " + role + " '" + type +
                          "', but its contract (build " + c.build + ") does not describe it");
    return it->second;
  };

  Json doc = Json::object();
  doc["asyncapi"] = "3.0.0";
  std::set<std::string> builds;
  for (const auto& [name, c] : contracts) builds.insert(c.build);
  std::string version;
  for (const auto& b : builds) version += (version.empty() ? "" : "+") + (b.empty() ? "unknown" : b);
  doc["info"] = Json{{"title", t.mesh},
                     {"version", version.empty() ? "0" : version},
                     {"description", "The messages of the " + t.mesh + " mesh: what each service publishes (events, "
                                     "on its XPUB socket), accepts (commands, on its PULL socket) and answers (queries, "
                                     "on its ROUTER socket), and who reacts to which event. Written by `troupe asyncapi` "
                                     "from " + t.file + " and the services' own contracts ($schema). Every message is "
                                     "two frames after any routing: the envelope (headers) and the payload, both msgpack "
                                     "maps; events have a topic frame first, the type followed by one space "
                                     "(docs/protocol.md)."}};
  doc["defaultContentType"] = "application/msgpack";

  Json servers = Json::object(), channels = Json::object(), operations = Json::object();
  Json messages = Json::object();
  std::map<std::pair<std::string, std::string>, std::string> key_of;  // (owner, type) -> component key
  auto component = [&](const std::string& owner, const schema::MessageSchema& m, const char* kind) {
    auto k = key_of.find({owner, m.type});
    if (k != key_of.end()) return k->second;
    std::string key = m.type;
    if (messages.contains(key)) key = m.type + "-" + owner;  // two owners, one type name
    Json msg = Json::object();
    msg["name"] = m.type;
    msg["title"] = m.type;
    Json payload = json::to_json_schema(m.shape);
    if (auto d = descriptions.find(m.type); d != descriptions.end()) {
      if (!d->second.text.empty()) {
        msg["summary"] = first_sentence(d->second.text);
        msg["description"] = d->second.text;
      }
      for (auto& [field, text] : d->second.fields)
        if (payload.contains("properties") && payload["properties"].contains(field))
          payload["properties"][field]["description"] = text;
    }
    msg["contentType"] = "application/msgpack";
    msg["headers"] = Json{{"$ref", "#/components/schemas/Envelope"}};
    msg["payload"] = payload;
    msg["x-troupe-kind"] = kind;
    msg["x-troupe-owner"] = owner;
    msg["x-troupe-schemaversion"] = m.version;
    messages[key] = msg;
    key_of[{owner, m.type}] = key;
    return key;
  };
  auto channel_message = [&](const std::string& channel, const std::string& key) {
    channels[channel]["messages"][key] = Json{{"$ref", "#/components/messages/" + key}};
    return Json{{"$ref", "#/channels/" + channel + "/messages/" + key}};
  };

  Json service_info = Json::object();
  for (const auto& s : t.services) {
    const auto& c = contract_of(s.name);
    service_info[s.name] = Json{{"build", c.build}};
    const Endpoints& ep = s.expose.events.empty() ? s.endpoints : s.expose;
    struct Socket {
      const char* kind;
      std::string endpoint;
      const char* zmq;
      const char* what;
    };
    for (const Socket& sock : {Socket{"events", ep.events, "XPUB", "subscribers connect a SUB socket and "
                                                                    "subscribe to a type's topic (the type and one space)"},
                               Socket{"commands", ep.commands, "PULL", "senders connect a PUSH socket"},
                               Socket{"queries", ep.queries, "ROUTER",
                                      "clients connect a DEALER (or REQ) socket; the reply comes back on it"}}) {
      std::string key = s.name + "-" + sock.kind;
      std::string endpoint = portable(sock.endpoint, state_dir);
      servers[key] = server_for(endpoint, state_dir, t.curve(), "the " + std::string(sock.kind) + " of " + s.name);
      Json ch = Json::object();
      ch["address"] = nullptr;
      ch["title"] = s.name + " " + sock.kind;
      std::string kind = sock.kind;
      kind[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(kind[0])));
      ch["description"] = kind + " of " + s.name + ": " + sock.what + ". " + s.name + " binds the " + sock.zmq + " socket.";
      ch["servers"] = Json::array({Json{{"$ref", "#/servers/" + key}}});
      ch["messages"] = Json::object();
      ch["x-troupe-service"] = s.name;
      ch["x-troupe-endpoint"] = sock.kind;
      ch["x-zmq-socket"] = sock.zmq;
      channels[key] = ch;
    }
  }
  for (const auto& s : t.services) {
    for (const auto& type : s.publishes) {
      std::string key = component(s.name, message_of(s.name, type, "publishes"), "event");
      operations[s.name + "-send-" + type] =
          Json{{"action", "send"},
               {"channel", {{"$ref", "#/channels/" + s.name + "-events"}}},
               {"summary", s.name + " publishes " + type},
               {"messages", Json::array({channel_message(s.name + "-events", key)})},
               {"x-troupe-service", s.name}};
    }
    for (const auto& type : s.accepts) {
      std::string key = component(s.name, message_of(s.name, type, "accepts"), "command");
      operations[s.name + "-receive-" + type] =
          Json{{"action", "receive"},
               {"channel", {{"$ref", "#/channels/" + s.name + "-commands"}}},
               {"summary", s.name + " accepts " + type},
               {"messages", Json::array({channel_message(s.name + "-commands", key)})},
               {"x-troupe-service", s.name}};
    }
    const auto& c = contract_of(s.name);
    for (const auto& type : s.answers) {
      std::string key = component(s.name, message_of(s.name, type, "answers"), "query");
      auto reply = c.answers.find(type);
      if (reply == c.answers.end())
        throw ContractError("service '" + s.name + "': its contract names no reply for query '" + type + "'");
      std::string reply_key = component(s.name, message_of(s.name, reply->second, "answers with"), "reply");
      operations[s.name + "-receive-" + type] =
          Json{{"action", "receive"},
               {"channel", {{"$ref", "#/channels/" + s.name + "-queries"}}},
               {"summary", s.name + " answers " + type + " with " + reply->second},
               {"messages", Json::array({channel_message(s.name + "-queries", key)})},
               {"reply", {{"channel", {{"$ref", "#/channels/" + s.name + "-queries"}}},
                          {"messages", Json::array({channel_message(s.name + "-queries", reply_key)})}}},
               {"x-troupe-service", s.name}};
    }
  }
  // Reactions, once every publisher's messages are components.
  for (const auto& s : t.services)
    for (const auto& sub : s.reacts_to)
      for (const auto& type : sub.types) {
        auto k = key_of.find({sub.publisher, type});
        if (k == key_of.end())
          throw ContractError("service '" + s.name + "' reacts to '" + type + "' of '" + sub.publisher +
                              "', which does not publish it");
        const auto& mine = message_of(s.name, type, "reacts to");
        Json op{{"action", "receive"},
                {"channel", {{"$ref", "#/channels/" + sub.publisher + "-events"}}},
                {"summary", s.name + " reacts to " + type + " of " + sub.publisher},
                {"messages", Json::array({Json{{"$ref", "#/channels/" + sub.publisher + "-events/messages/" + k->second}}})},
                {"x-troupe-service", s.name}};
        const auto& theirs = message_of(sub.publisher, type, "publishes");
        if (!(mine == theirs))  // this build reads another schema than the publisher's
          op["x-troupe-reads"] = Json{{"schemaversion", mine.version}, {"payload", json::to_json_schema(mine.shape)}};
        operations[s.name + "-receive-" + sub.publisher + "-" + type] = op;
      }

  // Commands services send each other: the receiver's message, and the sender's own
  // schema of it when that differs (x-troupe-writes).
  for (const auto& s : t.services)
    for (const auto& route : s.sends)
      for (const auto& type : route.types) {
        auto k = key_of.find({route.target, type});
        if (k == key_of.end())
          throw ContractError("service '" + s.name + "' sends '" + type + "' to '" + route.target +
                              "', which does not accept it");
        Json op{{"action", "send"},
                {"channel", {{"$ref", "#/channels/" + route.target + "-commands"}}},
                {"summary", s.name + " sends " + type + " to " + route.target + " (sequenced, resent until acked)"},
                {"messages", Json::array({Json{{"$ref", "#/channels/" + route.target + "-commands/messages/" + k->second}}})},
                {"x-troupe-service", s.name}};
        const auto& c = contract_of(s.name);
        if (!c.sends.empty() || c.messages.count(type)) {  // a build that declares what it sends
          const auto& mine = message_of(s.name, type, "sends");
          if (!(mine == message_of(route.target, type, "accepts")))
            op["x-troupe-writes"] = Json{{"schemaversion", mine.version}, {"payload", json::to_json_schema(mine.shape)}};
        }
        operations[s.name + "-send-" + route.target + "-" + type] = op;
      }

  doc["servers"] = servers;
  doc["channels"] = channels;
  doc["operations"] = operations;
  Json security = Json::object();
  security["curve"] = Json{{"type", "asymmetricEncryption"},
                           {"description", "CurveZMQ (RFC 26): each service and client has a key pair in the mesh's "
                                           "keys_dir (`troupe keygen --mesh`); a service admits, per endpoint, only "
                                           "the identities the topology names (reacts_to, sends, [clients.*])."}};
  doc["components"] = Json{{"schemas", {{"Envelope", envelope_schema()}}},
                           {"messages", messages},
                           {"securitySchemes", security}};
  doc["x-troupe-services"] = service_info;
  return doc;
}

compat::Mesh mesh_from_asyncapi(const Json& doc) {
  if (!doc.is_object() || !doc.contains("asyncapi") || !doc.contains("components") || !doc.contains("operations"))
    throw ContractError("document: not an AsyncAPI document written by troupe asyncapi (asyncapi, components, "
                        "operations)");
  compat::Mesh mesh;
  const Json& comps = doc["components"];
  if (!comps.contains("messages")) throw ContractError("components: no messages");
  const Json& messages = comps["messages"];
  const Json& channels = doc.value("channels", Json::object());
  if (doc.contains("x-troupe-services"))
    for (const auto& [name, info] : doc["x-troupe-services"].items()) {
      auto& c = mesh.services[name];
      c.service = name;
      c.build = info.value("build", std::string());
    }
  auto message = [&](const Json& ref, const std::string& where) {
    std::string r = ref.contains("$ref") && ref["$ref"].is_string() ? ref["$ref"].get<std::string>() : "";
    auto slash = r.rfind('/');
    std::string key = slash == std::string::npos ? r : r.substr(slash + 1);
    if (!messages.contains(key)) throw ContractError(where + ": names message '" + key + "', which components lack");
    const Json& m = messages[key];
    schema::MessageSchema ms;
    ms.type = m.value("name", key);
    ms.version = m.value("x-troupe-schemaversion", 1u);
    ms.shape = json::shape_from_json_schema(m.contains("payload") ? m["payload"] : Json(),
                                            "components.messages." + key + ".payload");
    return ms;
  };
  auto add_unique = [](std::vector<std::string>& v, const std::string& x) {
    if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
  };
  for (const auto& [id, op] : doc["operations"].items()) {
    std::string where = "operations." + id;
    if (!op.contains("x-troupe-service")) throw ContractError(where + ": no x-troupe-service");
    std::string service = op["x-troupe-service"].get<std::string>();
    std::string channel = ref_tail(op.value("channel", Json()), "#/channels/", where + ".channel");
    if (!channels.contains(channel)) throw ContractError(where + ": channel '" + channel + "' is not in channels");
    const Json& ch = channels[channel];
    std::string owner = ch.value("x-troupe-service", std::string()), kind = ch.value("x-troupe-endpoint", std::string());
    if (!op.contains("messages") || !op["messages"].is_array() || op["messages"].empty())
      throw ContractError(where + ": no messages");
    schema::MessageSchema m = message(op["messages"][0], where + ".messages[0]");
    auto& c = mesh.services[service];
    c.service = service;
    std::string action = op.value("action", std::string());
    if (action == "send" && kind == "events" && owner == service) {
      add_unique(c.publishes, m.type);
      c.messages[m.type] = m;
    } else if (action == "receive" && kind == "commands" && owner == service) {
      add_unique(c.accepts, m.type);
      c.messages[m.type] = m;
    } else if (action == "receive" && kind == "queries" && owner == service) {
      if (!op.contains("reply") || !op["reply"].contains("messages") || op["reply"]["messages"].empty())
        throw ContractError(where + ": a query without a reply message");
      schema::MessageSchema r = message(op["reply"]["messages"][0], where + ".reply.messages[0]");
      c.answers[m.type] = r.type;
      c.messages[m.type] = m;
      c.messages[r.type] = r;
    } else if (action == "receive" && kind == "events") {
      if (op.contains("x-troupe-reads")) {
        const Json& reads = op["x-troupe-reads"];
        m.version = reads.value("schemaversion", 1u);
        m.shape = json::shape_from_json_schema(reads.value("payload", Json()), where + ".x-troupe-reads.payload");
      }
      add_unique(c.reads, m.type);
      c.messages[m.type] = m;
      add_unique(mesh.reacts_to[service][owner], m.type);
    } else if (action == "send" && kind == "commands" && owner != service) {
      if (op.contains("x-troupe-writes")) {
        const Json& writes = op["x-troupe-writes"];
        m.version = writes.value("schemaversion", 1u);
        m.shape = json::shape_from_json_schema(writes.value("payload", Json()), where + ".x-troupe-writes.payload");
      }
      add_unique(c.sends[owner], m.type);
      if (!c.messages.count(m.type)) c.messages[m.type] = m;
    } else {
      throw ContractError(where + ": '" + action + "' on " + owner + "'s " + kind + " is not an operation troupe writes");
    }
  }
  return mesh;
}

namespace {

// A key written bare: letters, digits, _ . - (not first), and nothing a YAML 1.1 or 1.2
// reader would take for a boolean or null; any other key is double-quoted.
bool plain_key(const std::string& k) {
  if (k.empty() || k.size() > 200 || !(std::isalpha(static_cast<unsigned char>(k[0])) || k[0] == '_')) return false;
  if (!std::all_of(k.begin(), k.end(),
                   [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-' || c == '.'; }))
    return false;
  std::string lower;
  for (char c : k) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::set<std::string> reserved{"true", "false", "null", "yes", "no", "on", "off", "y", "n"};
  return !reserved.count(lower);
}

// JSON's double-quoted string, every byte outside printable ASCII escaped: YAML reads
// it the same, and no control or non-character reaches the file.
std::string scalar(const Json& v) { return v.dump(-1, ' ', true, Json::error_handler_t::replace); }
std::string key_text(const std::string& k) { return plain_key(k) ? k : scalar(Json(k)); }
bool inline_value(const Json& v) { return !(v.is_object() || v.is_array()) || v.empty(); }
std::string inline_text(const Json& v) {
  if (v.is_object()) return "{}";
  if (v.is_array()) return "[]";
  return scalar(v);
}

void write_list(std::ostringstream& out, const Json& list, int indent);

// The entries of a map at `indent`; the first one without its indentation when the
// line is already started ("- key: value").
void write_map(std::ostringstream& out, const Json& map, int indent, bool first_started) {
  std::string pad(static_cast<std::size_t>(indent), ' ');
  bool first = true;
  for (const auto& [k, e] : map.items()) {
    if (!(first && first_started)) out << pad;
    first = false;
    out << key_text(k) << ":";
    if (inline_value(e)) {
      out << " " << inline_text(e) << "\n";
    } else if (e.is_object()) {
      out << "\n";
      write_map(out, e, indent + 2, false);
    } else {
      out << "\n";
      write_list(out, e, indent + 2);
    }
  }
}

void write_list(std::ostringstream& out, const Json& list, int indent) {
  std::string pad(static_cast<std::size_t>(indent), ' ');
  for (const auto& e : list) {
    out << pad << "-";
    if (inline_value(e)) {
      out << " " << inline_text(e) << "\n";
    } else if (e.is_object()) {
      out << " ";
      write_map(out, e, indent + 2, true);
    } else {
      out << "\n";
      write_list(out, e, indent + 2);
    }
  }
}

}  // namespace

std::string to_yaml(const Json& value) {
  std::ostringstream out;
  if (inline_value(value)) out << inline_text(value) << "\n";
  else if (value.is_object()) write_map(out, value, 0, false);
  else write_list(out, value, 0);
  return out.str();
}

}  // namespace troupe::contract
