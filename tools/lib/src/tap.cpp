#include <troupe/tools/tap.hpp>

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/runtime/builtin.hpp>
#include <troupe/tools/mesh_json.hpp>

namespace troupe::tools {

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
    r.target = m->source;
    r.source = original->source;
    r.type = r.original_type = original->type;
    r.correlation = original->correlationid;
    if (r.kind == "refused") {  // a CURVE handshake the service's ZAP handler turned away
      r.source = r.json["data"].value("address", std::string("?"));
      r.type = "refused:" + r.json["data"].value("endpoint", std::string("?"));
    }
    if (r.kind == "gap" || r.kind == "repaired") {
      r.source = r.json["data"].value("publisher", original->source);
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
