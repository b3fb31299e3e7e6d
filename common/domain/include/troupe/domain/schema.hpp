// Schemas from the code: the shape of a TROUPE_MESSAGE type as data (what its fields
// are, which are optional, what they nest), and a service's contract — the messages it
// publishes, accepts, answers and reads, each as this service was built with it.
// Standard library only; adapters/contract renders a shape as JSON Schema and a mesh's
// contracts as an AsyncAPI document.
//
// A message's schema version is 1 unless the struct says otherwise:
//
//   struct OrderPlaced {
//     ...
//     static constexpr std::uint32_t kSchemaVersion = 2;
//     TROUPE_MESSAGE(OrderPlaced, order_id, ..., gift_note)
//   };
//
// It travels in every envelope of that type (`schemaversion`, docs/protocol.md §2).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <troupe/domain/message.hpp>

namespace troupe::schema {

struct Property;

// The shape of one value.
struct Shape {
  enum class Kind { boolean, integer, number, string, bytes, array, map, tuple, any_of, object };
  Kind kind = Kind::object;
  std::string format;             // integer: "int64", "uint32", ...
  std::string title;              // object: the message type's name
  std::vector<Shape> items;       // array: [element]; map: [value]; tuple, any_of: the alternatives
  std::vector<Property> properties;  // object: its fields in declaration order
  bool nullable = false;             // a std::optional: nil is a value too
  bool operator==(const Shape&) const;
};

// One field of an object. A std::optional field is not required (it may be absent) and
// its shape is nullable; a defaulted one (TROUPE_DETAIL_DEFAULTED) is not required
// either (absent, it reads as its default) but is never nil.
struct Property {
  std::string name;
  bool required = true;
  Shape shape;
  bool operator==(const Property&) const = default;
};

inline bool Shape::operator==(const Shape& o) const {
  return kind == o.kind && format == o.format && title == o.title && items == o.items &&
         properties == o.properties && nullable == o.nullable;
}

template <class T>
constexpr std::uint32_t schema_version() {
  if constexpr (requires { T::kSchemaVersion; })
    return T::kSchemaVersion;
  else
    return 1;
}

namespace detail {
using troupe::detail::IsOptional, troupe::detail::IsVector, troupe::detail::IsStringMap, troupe::detail::IsPair,
    troupe::detail::IsVariant;

template <class V> Shape shape_of();

template <class... A>
std::vector<Shape> shapes_of(std::variant<A...>*) {
  return {shape_of<A>()...};
}

template <class V>
Shape shape_of() {
  using K = Shape::Kind;
  Shape s;
  if constexpr (std::is_same_v<V, bool>) {
    s.kind = K::boolean;
  } else if constexpr (std::is_integral_v<V>) {
    s.kind = K::integer;
    s.format = std::string(std::is_unsigned_v<V> ? "uint" : "int") + std::to_string(sizeof(V) * 8);
  } else if constexpr (std::is_floating_point_v<V>) {
    s.kind = K::number;
  } else if constexpr (std::is_same_v<V, std::string>) {
    s.kind = K::string;
  } else if constexpr (std::is_same_v<V, Bytes>) {
    s.kind = K::bytes;
  } else if constexpr (IsOptional<V>::value) {
    s = shape_of<typename V::value_type>();
    s.nullable = true;
  } else if constexpr (IsVector<V>::value) {
    s.kind = K::array;
    s.items.push_back(shape_of<typename V::value_type>());
  } else if constexpr (IsStringMap<V>::value) {
    s.kind = K::map;
    s.items.push_back(shape_of<typename V::mapped_type>());
  } else if constexpr (IsPair<V>::value) {
    s.kind = K::tuple;
    s.items = {shape_of<typename V::first_type>(), shape_of<typename V::second_type>()};
  } else if constexpr (IsVariant<V>::value) {
    s.kind = K::any_of;
    s.items = shapes_of(static_cast<V*>(nullptr));
  } else if constexpr (Message<V>) {
    s.kind = K::object;
    s.title = std::string(V::kType);
    V sample{};
    for_each_field_info(sample, [&](const auto& info, auto& value) {
      using F = std::remove_cvref_t<decltype(value)>;
      s.properties.push_back({std::string(info.name), !IsOptional<F>::value && !info.defaulted, shape_of<F>()});
    });
  } else {
    static_assert(sizeof(V) == 0, "unsupported field type in a TROUPE_MESSAGE");
  }
  return s;
}
}  // namespace detail

// The shape of message type T (an object).
template <Message T>
Shape shape() {
  return detail::shape_of<T>();
}

// A message type as one service was built with it.
struct MessageSchema {
  std::string type;
  std::uint32_t version = 1;
  Shape shape;
  bool operator==(const MessageSchema&) const = default;
};

template <Message T>
MessageSchema message_schema() {
  return {std::string(T::kType), schema_version<T>(), shape<T>()};
}

// What one service speaks, as built: its own messages, the events it reads and the
// commands it sends, each with this build's schema. Who reacts to whom stays in the
// topology.
struct Contract {
  std::string service;
  std::string build;                                // troupe's version, or the service's own
  std::map<std::string, MessageSchema> messages;    // by type: every type named below
  std::vector<std::string> publishes;               // events it emits
  std::vector<std::string> accepts;                 // commands it handles
  std::map<std::string, std::string> answers;       // query -> its reply's type
  std::vector<std::string> reads;                   // events of others it reacts to
  std::map<std::string, std::vector<std::string>> sends;  // target service -> commands it sends there

  bool empty() const { return messages.empty(); }
  template <Message T>
  const MessageSchema& add() {
    auto [it, fresh] = messages.try_emplace(std::string(T::kType));
    if (fresh) it->second = message_schema<T>();
    return it->second;
  }
};

}  // namespace troupe::schema
