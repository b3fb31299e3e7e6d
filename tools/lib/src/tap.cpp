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

std::optional<TapRecord> read_tap(const std::vector<std::string_view>& frames) {
  TapRecord r;
  if (frames.size() == 3) {
    auto env = codec::decode_envelope(frames[1]);
    if (!env) return std::nullopt;
    r.json = cloudevent(*env, frames[2]);
    r.kind = "event";
    r.target = "*";
    r.source = env->source;
    r.type = r.original_type = env->type;
    r.correlation = env->correlationid;
    r.sequence = env->sequence;
  } else if (frames.size() == 4 && frames[0] == builtin::kTapTopic) {
    auto m = codec::decode_envelope(frames[1]);
    auto original = codec::decode_envelope(frames[2]);
    if (!m || !original || m->type.size() < 2) return std::nullopt;
    r.mirrored_by = m->source;
    r.mirror_sequence = m->sequence;
    r.kind = m->type.substr(1);  // "$command" -> "command"
    r.json = cloudevent(*original, frames[3]);
    // A service's own notices (refused, gap, repaired) are maps; anything else reads as {}.
    static const nlohmann::json none = nlohmann::json::object();
    const nlohmann::json& data = r.json["data"].is_object() ? r.json["data"] : none;
    r.target = m->source;
    r.source = original->source;
    r.type = r.original_type = original->type;
    r.correlation = original->correlationid;
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
  } else {
    return std::nullopt;
  }
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
