// msgpack codec: the envelope map, safe unpacking with limits, readable rejections.
#include <troupe/adapters/msgpack/codec.hpp>

#include <array>
#include <optional>
#include <vector>

namespace troupe::codec {
namespace detail {
namespace {

std::uint64_t big_endian(std::string_view bytes, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

// The count of items still to come in each open array or map, innermost last: the
// first 16 levels in place (a payload is rarely deeper; every payload a node receives
// is walked, and a heap allocation per walk was a few percent of an event's cost), the
// rest on the heap.
class OpenContainers {
 public:
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  std::uint64_t& back() { return size_ <= kInPlace ? in_place_[size_ - 1] : deeper_.back(); }
  void push_back(std::uint64_t items) {
    if (size_ < kInPlace) in_place_[size_] = items;
    else deeper_.push_back(items);
    ++size_;
  }
  void pop_back() {
    if (size_ > kInPlace) deeper_.pop_back();
    --size_;
  }

 private:
  static constexpr std::size_t kInPlace = 16;
  std::array<std::uint64_t, kInPlace> in_place_{};
  std::vector<std::uint64_t> deeper_;
  std::size_t size_ = 0;
};

// Walks one msgpack value without allocating anything for it and checks every limit on
// the way. msgpack-c allocates the elements of an array or a map as soon as it reads
// the header, before they arrive: 31 nested headers claiming 65,535 elements each (155
// bytes) made it allocate 65 MB. Only input that has passed this walk reaches it, so
// every element it allocates stands for bytes that are really there.
template <class Where>
std::optional<Rejection> walk(std::string_view bytes, const Limits& limits, const Where& where) {
  using Code = Rejection::Code;
  auto truncated = [&] { return reject(Code::malformed, where(), "truncated: the value ends early"); };
  OpenContainers open;
  std::size_t at = 0;
  while (true) {
    if (at >= bytes.size()) return truncated();
    const auto c = static_cast<unsigned char>(bytes[at]);
    std::size_t header = 1;  // marker and length bytes
    std::size_t length = 0;  // bytes of a scalar after its header, or a container's count
    enum { scalar, string, binary, extension, array, map } kind = scalar;
    auto sized = [&](std::size_t n) {  // a length (or count) of n bytes follows the marker
      if (bytes.size() - at < 1 + n) return false;
      header = 1 + n;
      length = static_cast<std::size_t>(big_endian(bytes, at + 1, n));
      return true;
    };
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
      // fixint, nil, false, true: the marker is the value
    } else if (c <= 0x8f) {
      kind = map;
      length = c & 0x0fu;
    } else if (c <= 0x9f) {
      kind = array;
      length = c & 0x0fu;
    } else if (c <= 0xbf) {
      kind = string;
      length = c & 0x1fu;
    } else if (c == 0xc1) {  // never used
      return reject(Code::malformed, where(), "not msgpack (parse error at byte " + std::to_string(at) + ")");
    } else if (c <= 0xc6) {
      kind = binary;
      if (!sized(std::size_t{1} << (c - 0xc4))) return truncated();
    } else if (c <= 0xc9) {
      kind = extension;
      if (!sized(std::size_t{1} << (c - 0xc7))) return truncated();
      length += 1;  // the extension's type byte
    } else if (c <= 0xcb) {
      length = c == 0xca ? 4 : 8;  // float32, float64
    } else if (c <= 0xd3) {
      length = std::size_t{1} << ((c - 0xcc) & 3);  // uint8..uint64, int8..int64
    } else if (c <= 0xd8) {
      kind = extension;
      length = 1 + (std::size_t{1} << (c - 0xd4));  // fixext: type byte and data
    } else if (c <= 0xdb) {
      kind = string;
      if (!sized(std::size_t{1} << (c - 0xd9))) return truncated();
    } else {  // array16, array32, map16, map32
      kind = c >= 0xde ? map : array;
      if (!sized(c & 1 ? 4 : 2)) return truncated();
    }

    if (kind == array || kind == map) {
      // Like msgpack-c: the count is judged at the header, the depth only when not empty.
      if (kind == map && length > limits.max_map)
        return reject(Code::too_large, where(),
                      "a map has more than " + std::to_string(limits.max_map) + " entries");
      if (kind == array && length > limits.max_array)
        return reject(Code::too_large, where(),
                      "an array has more than " + std::to_string(limits.max_array) + " elements");
      at += header;
      if (length > 0) {
        if (open.size() + 1 > limits.max_depth)
          return reject(Code::too_large, where(),
                        "nested deeper than " + std::to_string(limits.max_depth) + " levels");
        open.push_back(kind == map ? 2 * std::uint64_t{length} : std::uint64_t{length});
        continue;
      }
    } else {
      // Like msgpack-c: the bytes must be there before their length is judged, so a
      // huge declared string with nothing behind it is truncated, not too large.
      if (bytes.size() - at - header < length) return truncated();
      if (kind == string && length > limits.max_string)
        return reject(Code::too_large, where(),
                      "a string is longer than " + std::to_string(limits.max_string) + " bytes");
      if (kind == binary && length > limits.max_binary)
        return reject(Code::too_large, where(),
                      "a binary is longer than " + std::to_string(limits.max_binary) + " bytes");
      if (kind == extension) return reject(Code::malformed, where(), "extension types are not accepted");
      at += header + length;
    }
    // One more item is complete, and so is every container it completes.
    while (!open.empty() && --open.back() == 0) open.pop_back();
    if (open.empty()) break;
  }
  if (at != bytes.size())
    return reject(Code::malformed, where(),
                  std::to_string(bytes.size() - at) + " trailing bytes after the value");
  return std::nullopt;
}

}  // namespace

std::string_view type_name(const ::msgpack::object& o) noexcept {
  switch (o.type) {
    case ::msgpack::type::NIL: return "nil";
    case ::msgpack::type::BOOLEAN: return "boolean";
    case ::msgpack::type::POSITIVE_INTEGER:
    case ::msgpack::type::NEGATIVE_INTEGER: return "integer";
    case ::msgpack::type::FLOAT32:
    case ::msgpack::type::FLOAT64: return "float";
    case ::msgpack::type::STR: return "string";
    case ::msgpack::type::BIN: return "binary";
    case ::msgpack::type::ARRAY: return "array";
    case ::msgpack::type::MAP: return "map";
    case ::msgpack::type::EXT: return "extension";
  }
  return "unknown";
}

std::string describe(std::string_view name, std::size_t size) {
  return std::string(name) + " (" + std::to_string(size) + " bytes)";
}

Result<::msgpack::object_handle> unpack(std::string_view bytes, std::string_view name,
                                        const Limits& limits) {
  using Code = Rejection::Code;
  auto where = [&] { return describe(name, bytes.size()); };
  if (bytes.size() > limits.max_bytes)
    return reject(Code::too_large, where(),
                  "larger than the limit of " + std::to_string(limits.max_bytes) + " bytes");
  if (bytes.empty()) return reject(Code::malformed, where(), "empty");
  if (auto bad = walk(bytes, limits, where)) return *bad;
  std::size_t offset = 0;
  ::msgpack::unpack_limit lim(limits.max_array, limits.max_map, limits.max_string,
                              limits.max_binary, 0, limits.max_depth);
  try {
    auto handle = ::msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, lim);
    if (offset != bytes.size())
      return reject(Code::malformed, where(),
                    std::to_string(bytes.size() - offset) + " trailing bytes after the value");
    return handle;
  } catch (const ::msgpack::insufficient_bytes&) {
    return reject(Code::malformed, where(), "truncated: the value ends early");
  } catch (const ::msgpack::depth_size_overflow&) {
    return reject(Code::too_large, where(),
                  "nested deeper than " + std::to_string(limits.max_depth) + " levels");
  } catch (const ::msgpack::str_size_overflow&) {
    return reject(Code::too_large, where(),
                  "a string is longer than " + std::to_string(limits.max_string) + " bytes");
  } catch (const ::msgpack::bin_size_overflow&) {
    return reject(Code::too_large, where(),
                  "a binary is longer than " + std::to_string(limits.max_binary) + " bytes");
  } catch (const ::msgpack::array_size_overflow&) {
    return reject(Code::too_large, where(),
                  "an array has more than " + std::to_string(limits.max_array) + " elements");
  } catch (const ::msgpack::map_size_overflow&) {
    return reject(Code::too_large, where(),
                  "a map has more than " + std::to_string(limits.max_map) + " entries");
  } catch (const ::msgpack::ext_size_overflow&) {
    return reject(Code::malformed, where(), "extension types are not accepted");
  } catch (const ::msgpack::parse_error&) {
    return reject(Code::malformed, where(), "not msgpack (parse error at byte " +
                                                std::to_string(offset) + ")");
  } catch (const std::exception& e) {
    return reject(Code::malformed, where(), std::string("not msgpack: ") + e.what());
  }
}

void pack_string(Packer& p, std::string_view s) {
  p.pack_str(static_cast<std::uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

}  // namespace detail

Limits payload_limits(const Topology& topology, std::string_view type) {
  Limits l;
  l.max_bytes = topology.defaults.max_message_bytes;
  l.max_string = l.max_binary = topology.max_field_bytes(type);
  return l;
}

std::optional<std::string> envelope_over_limits(const Envelope& e, std::size_t encoded) {
  const std::pair<const char*, const std::string*> strings[] = {
      {"id", &e.id},       {"source", &e.source},         {"type", &e.type},
      {"time", &e.time},   {"correlationid", &e.correlationid}, {"causationid", &e.causationid},
      {"traceparent", &e.traceparent}, {"specversion", &e.specversion}, {"datacontenttype", &e.datacontenttype}};
  for (const auto& [name, value] : strings)
    if (value->size() > kEnvelopeLimits.max_string)
      return std::string("its ") + name + " of " + std::to_string(value->size()) + " bytes is over the limit of " +
             std::to_string(kEnvelopeLimits.max_string) + " bytes per string";
  if (encoded > kEnvelopeLimits.max_bytes)
    return "it is " + std::to_string(encoded) + " bytes, over the limit of " + std::to_string(kEnvelopeLimits.max_bytes) +
           " bytes per envelope";
  return std::nullopt;
}

std::string encode_envelope(const Envelope& e) {
  detail::StringBuffer buf;
  buf.out.reserve(256);
  detail::Packer p(buf);
  std::uint32_t n = 8;  // specversion id source type time datacontenttype kind schemaversion
  if (e.sequence != 0) ++n;
  if (e.epoch != 0) ++n;
  if (!e.correlationid.empty()) ++n;
  if (!e.causationid.empty()) ++n;
  if (!e.traceparent.empty()) ++n;
  p.pack_map(n);
  auto str = [&](std::string_view key, std::string_view value) {
    detail::pack_string(p, key);
    detail::pack_string(p, value);
  };
  str("specversion", e.specversion);
  str("id", e.id);
  str("source", e.source);
  str("type", e.type);
  str("time", e.time);
  str("datacontenttype", e.datacontenttype);
  str("kind", to_string(e.kind));
  if (e.sequence != 0) {
    detail::pack_string(p, "sequence");
    p.pack_uint64(e.sequence);
  }
  if (e.epoch != 0) {
    detail::pack_string(p, "epoch");
    p.pack_uint64(e.epoch);
  }
  if (!e.correlationid.empty()) str("correlationid", e.correlationid);
  if (!e.causationid.empty()) str("causationid", e.causationid);
  if (!e.traceparent.empty()) str("traceparent", e.traceparent);
  detail::pack_string(p, "schemaversion");
  p.pack_uint32(e.schemaversion);
  return std::move(buf.out);
}

namespace {

// The envelope every troupe node writes: a flat map of string keys to strings and
// unsigned integers. Read straight from the bytes, with no msgpack object tree (a
// profile of the durable path had the tree at 13 % of all instructions). Anything
// else — another value type, a limit reached, a missing or bad key, truncation —
// returns nullopt, and the general decoder below judges it and words the rejection,
// so both paths accept and refuse exactly the same envelopes.
class FlatReader {
 public:
  FlatReader(std::string_view b, const Limits& l) : b_(b), limits_(l) {}

  bool done() const { return at_ == b_.size(); }

  std::optional<std::uint32_t> map_header() {
    if (at_ >= b_.size()) return std::nullopt;
    auto c = byte(at_);
    if ((c & 0xf0) == 0x80) {
      ++at_;
      return c & 0x0fu;
    }
    if (c == 0xde && have(3)) {
      auto n = static_cast<std::uint32_t>(be(at_ + 1, 2));
      at_ += 3;
      return n;
    }
    return std::nullopt;  // map32 and the rest: the general path
  }

  std::optional<std::string_view> str() {
    if (at_ >= b_.size()) return std::nullopt;
    auto c = byte(at_);
    std::size_t n = 0, h = 1;
    if ((c & 0xe0) == 0xa0) n = c & 0x1fu;
    else if (c == 0xd9 && have(2)) n = be(at_ + 1, 1), h = 2;
    else if (c == 0xda && have(3)) n = be(at_ + 1, 2), h = 3;
    else if (c == 0xdb && have(5)) n = be(at_ + 1, 4), h = 5;
    else return std::nullopt;
    if (n > limits_.max_string || !have(h + n)) return std::nullopt;
    std::string_view v(b_.data() + at_ + h, n);
    at_ += h + n;
    return v;
  }

  std::optional<std::uint64_t> uint() {
    if (at_ >= b_.size()) return std::nullopt;
    auto c = byte(at_);
    if (c <= 0x7f) {
      ++at_;
      return c;
    }
    if (c < 0xcc || c > 0xcf) return std::nullopt;
    std::size_t n = std::size_t{1} << (c - 0xcc);
    if (!have(1 + n)) return std::nullopt;
    auto v = be(at_ + 1, n);
    at_ += 1 + n;
    return v;
  }

  // Skips a value of a key this version does not know, if it is a plain scalar.
  bool skip_scalar() {
    if (at_ >= b_.size()) return false;
    auto c = byte(at_);
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
      ++at_;
      return true;
    }
    if (c >= 0xcc && c <= 0xcf) return uint().has_value();
    return str().has_value();
  }

 private:
  unsigned byte(std::size_t i) const { return static_cast<unsigned char>(b_[i]); }
  bool have(std::size_t n) const { return b_.size() - at_ >= n; }
  std::uint64_t be(std::size_t from, std::size_t n) const {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | byte(from + i);
    return v;
  }
  std::string_view b_;
  const Limits& limits_;
  std::size_t at_ = 0;
};

std::optional<Envelope> decode_flat_envelope(std::string_view bytes, const Limits& limits) {
  if (bytes.empty() || bytes.size() > limits.max_bytes) return std::nullopt;
  FlatReader r(bytes, limits);
  auto n = r.map_header();
  if (!n || *n > limits.max_map || (*n > 0 && limits.max_depth < 1)) return std::nullopt;
  Envelope e;
  e.specversion.clear();
  e.datacontenttype.clear();
  enum : unsigned { kSpec = 1, kId = 2, kSource = 4, kType = 8, kKind = 16 };
  unsigned seen = 0;
  for (std::uint32_t i = 0; i < *n; ++i) {
    auto key = r.str();
    if (!key) return std::nullopt;
    auto text = [&](std::string& out) {
      auto v = r.str();
      if (v) out.assign(*v);
      return v.has_value();
    };
    bool ok = true;
    if (*key == "specversion") ok = text(e.specversion), seen |= kSpec;
    else if (*key == "id") ok = text(e.id), seen |= kId;
    else if (*key == "source") ok = text(e.source), seen |= kSource;
    else if (*key == "type") ok = text(e.type), seen |= kType;
    else if (*key == "time") ok = text(e.time);
    else if (*key == "datacontenttype") ok = text(e.datacontenttype);
    else if (*key == "correlationid") ok = text(e.correlationid);
    else if (*key == "causationid") ok = text(e.causationid);
    else if (*key == "traceparent") ok = text(e.traceparent);
    else if (*key == "kind") {
      auto v = r.str();
      auto k = v ? kind_from_string(*v) : std::nullopt;
      if (!k) return std::nullopt;
      e.kind = *k;
      seen |= kKind;
    } else if (*key == "sequence") {
      auto v = r.uint();
      if (!v) return std::nullopt;
      e.sequence = *v;
    } else if (*key == "epoch") {
      auto v = r.uint();
      if (!v) return std::nullopt;
      e.epoch = *v;
    } else if (*key == "schemaversion") {
      auto v = r.uint();
      if (!v || *v > UINT32_MAX) return std::nullopt;
      e.schemaversion = static_cast<std::uint32_t>(*v);
    } else {
      ok = r.skip_scalar();
    }
    if (!ok) return std::nullopt;
  }
  if (!r.done() || seen != (kSpec | kId | kSource | kType | kKind) || e.specversion.rfind("1.", 0) != 0 ||
      e.type.empty())
    return std::nullopt;
  if (e.datacontenttype.empty()) e.datacontenttype = std::string(kContentType);
  return e;
}

}  // namespace

Result<Envelope> decode_envelope(std::string_view bytes, const Limits& limits) {
  if (auto fast = decode_flat_envelope(bytes, limits)) return std::move(*fast);
  return detail::decode_envelope_tree(bytes, limits);
}

Result<Envelope> detail::decode_envelope_tree(std::string_view bytes, const Limits& limits) {
  using Code = Rejection::Code;
  auto handle = detail::unpack(bytes, "envelope", limits);
  if (!handle) return handle.error();
  const ::msgpack::object& o = handle->get();
  auto where = [&] { return detail::describe("envelope", bytes.size()); };
  if (o.type != ::msgpack::type::MAP)
    return reject(Code::wrong_type, where(),
                  "expected a map, got " + std::string(detail::type_name(o)));

  Envelope e;
  e.specversion.clear();
  e.datacontenttype.clear();
  enum : unsigned { kSpec = 1, kId = 2, kSource = 4, kType = 8, kKind = 16 };
  unsigned seen = 0;
  for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
    const auto& kv = o.via.map.ptr[i];
    if (kv.key.type != ::msgpack::type::STR) continue;  // not ours: ignore
    std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    auto want_string = [&](std::string& out) -> std::optional<Rejection> {
      if (kv.val.type != ::msgpack::type::STR)
        return reject(Code::wrong_type, where(),
                      "key '" + std::string(key) + "': expected string, got " +
                          std::string(detail::type_name(kv.val)));
      out.assign(kv.val.via.str.ptr, kv.val.via.str.size);
      return std::nullopt;
    };
    auto want_uint = [&](std::uint64_t max, std::uint64_t& out) -> std::optional<Rejection> {
      if (kv.val.type != ::msgpack::type::POSITIVE_INTEGER || kv.val.via.u64 > max)
        return reject(Code::wrong_type, where(),
                      "key '" + std::string(key) + "': expected unsigned integer, got " +
                          std::string(detail::type_name(kv.val)));
      out = kv.val.via.u64;
      return std::nullopt;
    };
    std::optional<Rejection> bad;
    if (key == "specversion") {
      bad = want_string(e.specversion);
      seen |= kSpec;
    } else if (key == "id") {
      bad = want_string(e.id);
      seen |= kId;
    } else if (key == "source") {
      bad = want_string(e.source);
      seen |= kSource;
    } else if (key == "type") {
      bad = want_string(e.type);
      seen |= kType;
    } else if (key == "time") {
      bad = want_string(e.time);
    } else if (key == "datacontenttype") {
      bad = want_string(e.datacontenttype);
    } else if (key == "kind") {
      std::string text;
      bad = want_string(text);
      if (!bad) {
        auto k = kind_from_string(text);
        if (!k)
          return reject(Code::invalid, where(),
                        "key 'kind': expected event, command, query or reply, got '" + text + "'");
        e.kind = *k;
      }
      seen |= kKind;
    } else if (key == "sequence") {
      bad = want_uint(UINT64_MAX, e.sequence);
    } else if (key == "epoch") {
      bad = want_uint(UINT64_MAX, e.epoch);
    } else if (key == "correlationid") {
      bad = want_string(e.correlationid);
    } else if (key == "causationid") {
      bad = want_string(e.causationid);
    } else if (key == "traceparent") {
      bad = want_string(e.traceparent);
    } else if (key == "schemaversion") {
      std::uint64_t v = 0;
      bad = want_uint(UINT32_MAX, v);
      e.schemaversion = static_cast<std::uint32_t>(v);
    }
    if (bad) return *bad;
  }
  static constexpr std::array<std::pair<unsigned, const char*>, 5> kRequired{
      {{kSpec, "specversion"}, {kId, "id"}, {kSource, "source"}, {kType, "type"}, {kKind, "kind"}}};
  for (auto [bit, name] : kRequired)
    if (!(seen & bit))
      return reject(Code::missing, where(), std::string("missing required key '") + name + "'");
  if (e.specversion.rfind("1.", 0) != 0)
    return reject(Code::invalid, where(),
                  "key 'specversion': expected 1.x, got '" + e.specversion + "'");
  if (e.type.empty()) return reject(Code::invalid, where(), "key 'type': empty");
  if (e.datacontenttype.empty()) e.datacontenttype = std::string(kContentType);
  return e;
}

// The walk alone: it already refuses everything unpack would (truncation, trailing
// bytes, the limits, extensions), and builds no msgpack-c object tree, which a node
// checking every payload against its field limits would pay for twice.
Result<void> validate(std::string_view bytes, std::string_view name, const Limits& limits) {
  using Code = Rejection::Code;
  auto where = [&] { return detail::describe(name, bytes.size()); };
  if (bytes.size() > limits.max_bytes)
    return reject(Code::too_large, where(),
                  "larger than the limit of " + std::to_string(limits.max_bytes) + " bytes");
  if (bytes.empty()) return reject(Code::malformed, where(), "empty");
  if (auto bad = detail::walk(bytes, limits, where)) return *bad;
  return {};
}

Result<std::string> partition_key(std::string_view bytes, std::string_view name, std::string_view field,
                                  const Limits& limits) {
  using Code = Rejection::Code;
  auto handle = detail::unpack(bytes, name, limits);
  if (!handle) return handle.error();
  const ::msgpack::object& root = handle->get();
  auto where = detail::describe(name, bytes.size());
  if (root.type != ::msgpack::type::MAP) return reject(Code::wrong_type, where, "the payload is no map");
  for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
    const auto& kv = root.via.map.ptr[i];
    if (kv.key.type != ::msgpack::type::STR || std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) != field)
      continue;
    switch (kv.val.type) {
      case ::msgpack::type::NIL: return std::string();
      case ::msgpack::type::STR: return std::string(kv.val.via.str.ptr, kv.val.via.str.size);
      case ::msgpack::type::POSITIVE_INTEGER: return std::to_string(kv.val.via.u64);
      case ::msgpack::type::NEGATIVE_INTEGER: return std::to_string(kv.val.via.i64);
      default:
        return reject(Code::wrong_type, where + ": field '" + std::string(field) + "'",
                      "the partition key must be a string or an integer, got " + std::string(detail::type_name(kv.val)));
    }
  }
  return std::string();
}

}  // namespace troupe::codec
