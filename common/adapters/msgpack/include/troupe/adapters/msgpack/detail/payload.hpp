// Implementation of codec::encode<T> / codec::decode<T> over msgpack-c.
// Internal: include <troupe/adapters/msgpack/codec.hpp> instead.
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include <limits>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace troupe::codec::detail {

// A msgpack output buffer that appends to a std::string.
struct StringBuffer {
  std::string out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};

using Packer = ::msgpack::packer<StringBuffer>;

std::string_view type_name(const ::msgpack::object& o) noexcept;

// Unpacks exactly one value; `name` names the message in the rejection.
Result<::msgpack::object_handle> unpack(std::string_view bytes, std::string_view name,
                                        const Limits& limits);

using troupe::detail::IsOptional, troupe::detail::IsVector, troupe::detail::IsStringMap, troupe::detail::IsPair,
    troupe::detail::IsVariant;

template <class V>
void pack_value(Packer& p, const V& v);

// An optional field without a value is left out of the map (docs/protocol.md: "T, or
// nil, or the key absent"), so a reader sees the key only when it says something.
template <Message T>
void pack_message(Packer& p, const T& msg) {
  std::uint32_t present = 0;
  for_each_field(const_cast<T&>(msg), [&](std::string_view, const auto& value) {
    if constexpr (IsOptional<std::decay_t<decltype(value)>>::value)
      present += value.has_value() ? 1 : 0;
    else
      ++present;
  });
  p.pack_map(present);
  for_each_field(const_cast<T&>(msg), [&](std::string_view name, const auto& value) {
    if constexpr (IsOptional<std::decay_t<decltype(value)>>::value)
      if (!value) return;
    p.pack_str(static_cast<std::uint32_t>(name.size()));
    p.pack_str_body(name.data(), static_cast<std::uint32_t>(name.size()));
    pack_value(p, value);
  });
}

template <class V>
void pack_value(Packer& p, const V& v) {
  if constexpr (std::is_same_v<V, bool>) {
    v ? p.pack_true() : p.pack_false();
  } else if constexpr (std::is_integral_v<V> || std::is_floating_point_v<V>) {
    p.pack(v);
  } else if constexpr (std::is_same_v<V, std::string>) {
    p.pack_str(static_cast<std::uint32_t>(v.size()));
    p.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
  } else if constexpr (std::is_same_v<V, Bytes>) {
    p.pack_bin(static_cast<std::uint32_t>(v.data.size()));
    p.pack_bin_body(v.data.data(), static_cast<std::uint32_t>(v.data.size()));
  } else if constexpr (IsOptional<V>::value) {
    if (v) pack_value(p, *v); else p.pack_nil();
  } else if constexpr (IsPair<V>::value) {
    p.pack_array(2);
    pack_value(p, v.first);
    pack_value(p, v.second);
  } else if constexpr (IsVariant<V>::value) {
    std::visit([&p](const auto& alternative) { pack_value(p, alternative); }, v);
  } else if constexpr (IsVector<V>::value) {
    p.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const auto& e : v) pack_value(p, e);
  } else if constexpr (IsStringMap<V>::value) {
    p.pack_map(static_cast<std::uint32_t>(v.size()));
    for (const auto& [k, e] : v) {
      pack_value(p, k);
      pack_value(p, e);
    }
  } else if constexpr (Message<V>) {
    pack_message(p, v);
  } else {
    static_assert(sizeof(V) == 0, "unsupported field type in a TROUPE_MESSAGE");
  }
}

// Decoding state: the path of the field being read, and the first error.
struct Reader {
  std::string path;
  std::string error;

  bool fail(std::string_view expected, const ::msgpack::object& got) {
    error = "field '" + path + "': expected " + std::string(expected) + ", got " +
            std::string(type_name(got));
    return false;
  }
};

template <class V>
bool read_value(Reader& r, const ::msgpack::object& o, V& out);

// A variant takes the first alternative that reads without error; when none does, the
// error names them all.
template <class V, std::size_t I>
bool read_variant(Reader& r, const ::msgpack::object& o, V& out) {
  if constexpr (I == std::variant_size_v<V>) {
    return r.fail("one of the variant's alternatives", o);
  } else {
    Reader trial{r.path, {}};
    std::variant_alternative_t<I, V> value{};
    if (read_value(trial, o, value)) {
      out = std::move(value);
      return true;
    }
    return read_variant<V, I + 1>(r, o, out);
  }
}

template <Message T>
bool read_message(Reader& r, const ::msgpack::object& o, T& out) {
  if (o.type != ::msgpack::type::MAP) {
    if (r.path.empty()) {
      r.error = std::string("expected a map, got ") + std::string(type_name(o));
      return false;
    }
    return r.fail("map", o);
  }
  bool ok = true;
  std::string base = r.path;
  for_each_field_info(out, [&](const auto& info, auto& value) {
    if (!ok) return;
    const std::string_view name = info.name;
    const ::msgpack::object* found = nullptr;
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
      const auto& k = o.via.map.ptr[i].key;
      if (k.type == ::msgpack::type::STR && std::string_view(k.via.str.ptr, k.via.str.size) == name) {
        found = &o.via.map.ptr[i].val;
        break;
      }
    }
    r.path = base.empty() ? std::string(name) : base + "." + std::string(name);
    using V = std::remove_cvref_t<decltype(value)>;
    if (!found) {
      if constexpr (IsOptional<V>::value) {
        value.reset();
      } else if (!info.defaulted) {
        r.error = "missing field '" + r.path + "'";
        ok = false;
      }  // else: the member keeps its default
      return;
    }
    ok = read_value(r, *found, value);
  });
  r.path = base;
  return ok;
}

template <class V>
bool read_value(Reader& r, const ::msgpack::object& o, V& out) {
  namespace t = ::msgpack::type;
  if constexpr (std::is_same_v<V, bool>) {
    if (o.type != t::BOOLEAN) return r.fail("boolean", o);
    out = o.via.boolean;
    return true;
  } else if constexpr (std::is_integral_v<V>) {
    if (o.type == t::POSITIVE_INTEGER) {
      if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<V>::max()))
        return r.fail("integer that fits " + std::to_string(sizeof(V) * 8) + " bits", o);
      out = static_cast<V>(o.via.u64);
      return true;
    }
    if (o.type == t::NEGATIVE_INTEGER) {
      if constexpr (std::is_unsigned_v<V>) {
        return r.fail("non-negative integer", o);
      } else {
        if (o.via.i64 < static_cast<std::int64_t>(std::numeric_limits<V>::min()))
          return r.fail("integer that fits " + std::to_string(sizeof(V) * 8) + " bits", o);
        out = static_cast<V>(o.via.i64);
        return true;
      }
    }
    return r.fail("integer", o);
  } else if constexpr (std::is_floating_point_v<V>) {
    switch (o.type) {
      case t::FLOAT32:
      case t::FLOAT64: out = static_cast<V>(o.via.f64); return true;
      case t::POSITIVE_INTEGER: out = static_cast<V>(o.via.u64); return true;
      case t::NEGATIVE_INTEGER: out = static_cast<V>(o.via.i64); return true;
      default: return r.fail("number", o);
    }
  } else if constexpr (std::is_same_v<V, std::string>) {
    if (o.type != t::STR) return r.fail("string", o);
    out.assign(o.via.str.ptr, o.via.str.size);
    return true;
  } else if constexpr (std::is_same_v<V, Bytes>) {
    if (o.type != t::BIN) return r.fail("binary", o);
    out.data.assign(o.via.bin.ptr, o.via.bin.size);
    return true;
  } else if constexpr (IsPair<V>::value) {
    if (o.type != t::ARRAY || o.via.array.size != 2) return r.fail("array of 2", o);
    std::string base = r.path;
    r.path = base + "[0]";
    if (!read_value(r, o.via.array.ptr[0], out.first)) return false;
    r.path = base + "[1]";
    if (!read_value(r, o.via.array.ptr[1], out.second)) return false;
    r.path = base;
    return true;
  } else if constexpr (IsVariant<V>::value) {
    return read_variant<V, 0>(r, o, out);
  } else if constexpr (IsOptional<V>::value) {
    if (o.type == t::NIL) {
      out.reset();
      return true;
    }
    typename V::value_type inner{};
    if (!read_value(r, o, inner)) return false;
    out = std::move(inner);
    return true;
  } else if constexpr (IsVector<V>::value) {
    if (o.type != t::ARRAY) return r.fail("array", o);
    out.clear();
    out.resize(o.via.array.size);
    std::string base = r.path;
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      r.path = base + "[" + std::to_string(i) + "]";
      typename V::value_type element{};  // (std::vector<bool> has no element references)
      if (!read_value(r, o.via.array.ptr[i], element)) return false;
      out[i] = std::move(element);
    }
    r.path = base;
    return true;
  } else if constexpr (IsStringMap<V>::value) {
    if (o.type != t::MAP) return r.fail("map", o);
    out.clear();
    std::string base = r.path;
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
      const auto& kv = o.via.map.ptr[i];
      if (kv.key.type != t::STR) {
        r.path = base;
        return r.fail("map with string keys", o);
      }
      std::string key(kv.key.via.str.ptr, kv.key.via.str.size);
      r.path = base + "." + key;
      typename V::mapped_type value{};
      if (!read_value(r, kv.val, value)) return false;
      out.emplace(std::move(key), std::move(value));
    }
    r.path = base;
    return true;
  } else if constexpr (Message<V>) {
    return read_message(r, o, out);
  } else {
    static_assert(sizeof(V) == 0, "unsupported field type in a TROUPE_MESSAGE");
  }
}

std::string describe(std::string_view name, std::size_t size);

}  // namespace troupe::codec::detail

namespace troupe::codec {

template <Message T>
std::string encode(const T& message) {
  detail::StringBuffer buf;
  detail::Packer p(buf);
  detail::pack_message(p, message);
  return std::move(buf.out);
}

template <Message T>
Result<T> decode(std::string_view bytes, const Limits& limits) {
  auto handle = detail::unpack(bytes, T::kType, limits);
  if (!handle) return handle.error();
  T out{};
  detail::Reader r;
  if (!detail::read_message(r, handle->get(), out)) {
    Rejection::Code code = r.error.rfind("missing", 0) == 0 ? Rejection::Code::missing
                                                             : Rejection::Code::wrong_type;
    return reject(code, detail::describe(T::kType, bytes.size()), std::move(r.error));
  }
  return out;
}

}  // namespace troupe::codec
