#include <troupe/tools/tap.hpp>

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/runtime/builtin.hpp>
#include <troupe/tools/mesh_json.hpp>

namespace troupe::tools {
namespace {

// data[key] when it is a string, else `fallback`: a notice's fields are a peer's words.
std::string string_or(const nlohmann::json& data, const char* key, const std::string& fallback) {
  auto it = data.find(key);
  return it != data.end() && it->is_string() ? it->get<std::string>() : fallback;
}

}  // namespace

TapRecord event_record(const Envelope& envelope, std::string_view payload) {
  TapRecord r;
  r.json = cloudevent(envelope, payload);
  r.envelope = envelope;
  r.kind = "event";
  r.target = "*";
  r.source = envelope.source;
  r.type = envelope.type;
  r.json["tapkind"] = r.kind;
  r.json["taptarget"] = r.target;
  return r;
}

std::optional<TapRecord> read_tap(const std::vector<std::string_view>& frames) {
  if (frames.size() == 3) {
    auto env = codec::decode_envelope(frames[1]);
    if (!env) return std::nullopt;
    return event_record(*env, frames[2]);
  }
  if (frames.size() != 4 || frames[0] != builtin::kTapTopic) return std::nullopt;
  auto m = codec::decode_envelope(frames[1]);
  auto original = codec::decode_envelope(frames[2]);
  if (!m || !original || m->type.size() < 2) return std::nullopt;
  TapRecord r;
  r.mirrored_by = m->source;
  r.mirror_sequence = m->sequence;
  r.kind = m->type.substr(1);  // "$command" -> "command"
  r.json = cloudevent(*original, frames[3]);
  r.envelope = *original;
  r.target = m->source;
  r.source = original->source;
  r.type = original->type;
  // A service's own notices (refused, gap, repaired) are maps; anything else reads as {}.
  static const nlohmann::json none = nlohmann::json::object();
  const nlohmann::json& data = r.json["data"].is_object() ? r.json["data"] : none;
  if (r.kind == "refused") {  // a CURVE handshake the service's ZAP handler turned away
    r.source = string_or(data, "address", "?");
    r.type = "refused:" + string_or(data, "endpoint", "?");
  }
  if (r.kind == "gap" || r.kind == "repaired") {
    r.source = string_or(data, "publisher", original->source);
    r.type = r.kind;
  }
  r.json["source"] = r.source;
  r.json["type"] = r.type;
  r.json["tapkind"] = r.kind;
  r.json["taptarget"] = r.target;
  return r;
}

std::uint64_t MirrorGaps::missed(const TapRecord& r) {
  if (r.mirrored_by.empty()) return 0;
  auto& last = last_[r.mirrored_by];
  std::uint64_t n = last && r.mirror_sequence > last + 1 ? r.mirror_sequence - last - 1 : 0;
  last = r.mirror_sequence;
  return n;
}

}  // namespace troupe::tools
