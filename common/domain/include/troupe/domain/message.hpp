// Typed messages: a message struct states its type name and its fields once, with
// TROUPE_MESSAGE; codecs (adapters/msgpack) and tools work from that description.
// Standard library only: no codec header is needed to declare a message.
//
//   struct OrderPlaced {
//     std::string order_id;
//     std::string sku;
//     std::int64_t quantity = 0;
//     TROUPE_MESSAGE(OrderPlaced, order_id, sku, quantity)
//   };
//
// Supported field types: bool, integers, double, std::string, troupe::Bytes (raw bytes,
// msgpack bin), std::optional<T>, std::vector<T>, std::map<std::string, T>,
// std::pair<A, B> (a two-element array), std::variant<A, B, ...> (whichever alternative
// the value holds; read as the first alternative whose msgpack type fits), and other
// TROUPE_MESSAGE structs.
// A query declares its answer with `using Reply = SomeMessage;`.
#pragma once

#include <concepts>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace troupe {

// Raw bytes in a message (msgpack bin, not str): frames kept as they came, say.
struct Bytes {
  std::string data;
  bool operator==(const Bytes&) const = default;
};

template <class S, class M>
struct Field {
  std::string_view name;
  M S::*member;
  // A field that may be absent: a reader keeps the member's default (the struct's
  // initializer). Writers still write it. TROUPE_DETAIL_DEFAULTED marks one.
  bool defaulted = false;
};

template <class S, class M>
constexpr Field<S, M> field(std::string_view name, M S::*member, bool defaulted = false) {
  return {name, member, defaulted};
}

// A type described by TROUPE_MESSAGE.
template <class T>
concept Message = requires {
  { T::kType } -> std::convertible_to<std::string_view>;
  T::fields();
};

// A query: a message that names the message type of its reply.
template <class T>
concept Query = Message<T> && Message<typename T::Reply>;

// Calls f(field, member-reference) for every field of `msg`, in declaration order.
template <Message T, class F>
constexpr void for_each_field_info(T& msg, F&& f) {
  std::apply([&](auto... fs) { (f(fs, msg.*(fs.member)), ...); }, T::fields());
}

// Calls f(name, member-reference) for every field of `msg`, in declaration order.
template <Message T, class F>
constexpr void for_each_field(T& msg, F&& f) {
  std::apply([&](auto... fs) { (f(fs.name, msg.*(fs.member)), ...); }, T::fields());
}

template <Message T>
constexpr std::size_t field_count() {
  return std::tuple_size_v<decltype(T::fields())>;
}

namespace detail {
// The field types a message may hold besides scalars and messages, told apart once for
// the codec (adapters/msgpack) and the schemas (schema.hpp).
template <class T> struct IsOptional : std::false_type {};
template <class T> struct IsOptional<std::optional<T>> : std::true_type {};
template <class T> struct IsVector : std::false_type {};
template <class T> struct IsVector<std::vector<T>> : std::true_type {};
template <class T> struct IsStringMap : std::false_type {};
template <class T> struct IsStringMap<std::map<std::string, T>> : std::true_type {};
template <class T> struct IsPair : std::false_type {};
template <class A, class B> struct IsPair<std::pair<A, B>> : std::true_type {};
template <class T> struct IsVariant : std::false_type {};
template <class... A> struct IsVariant<std::variant<A...>> : std::true_type {};
}  // namespace detail

}  // namespace troupe

// --- the macro -------------------------------------------------------------
#define TROUPE_DETAIL_FIELD(name) ::troupe::field(#name, &Self::name)
#define TROUPE_DETAIL_DEFAULTED(name) ::troupe::field(#name, &Self::name, true)

#define TROUPE_DETAIL_EXPAND(x) x
#define TROUPE_DETAIL_MAP_1(m, a) m(a)
#define TROUPE_DETAIL_MAP_2(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_1(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_3(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_2(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_4(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_3(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_5(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_4(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_6(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_5(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_7(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_6(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_8(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_7(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_9(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_8(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_10(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_9(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_11(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_10(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_12(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_11(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_13(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_12(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_14(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_13(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_15(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_14(m, __VA_ARGS__))
#define TROUPE_DETAIL_MAP_16(m, a, ...) m(a), TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_MAP_15(m, __VA_ARGS__))
#define TROUPE_DETAIL_PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
                           name, ...)                                                          \
  name
#define TROUPE_DETAIL_MAP(m, ...)                                                              \
  TROUPE_DETAIL_EXPAND(TROUPE_DETAIL_PICK(                                                     \
      __VA_ARGS__, TROUPE_DETAIL_MAP_16, TROUPE_DETAIL_MAP_15, TROUPE_DETAIL_MAP_14,           \
      TROUPE_DETAIL_MAP_13, TROUPE_DETAIL_MAP_12, TROUPE_DETAIL_MAP_11, TROUPE_DETAIL_MAP_10,  \
      TROUPE_DETAIL_MAP_9, TROUPE_DETAIL_MAP_8, TROUPE_DETAIL_MAP_7, TROUPE_DETAIL_MAP_6,      \
      TROUPE_DETAIL_MAP_5, TROUPE_DETAIL_MAP_4, TROUPE_DETAIL_MAP_3, TROUPE_DETAIL_MAP_2,      \
      TROUPE_DETAIL_MAP_1)(m, __VA_ARGS__))

// Declares the message's type name (the struct's name) and its fields (up to 16).
#define TROUPE_MESSAGE(Type, ...)                                                   \
  static constexpr std::string_view kType = #Type;                                  \
  static constexpr auto fields() {                                                  \
    using Self = Type;                                                              \
    return std::tuple{TROUPE_DETAIL_MAP(TROUPE_DETAIL_FIELD, __VA_ARGS__)};         \
  }                                                                                 \
  bool operator==(const Type&) const = default;

// A message with no fields (a query that takes no argument, say).
#define TROUPE_EMPTY_MESSAGE(Type)                 \
  static constexpr std::string_view kType = #Type; \
  static constexpr auto fields() { return std::tuple<>{}; } \
  bool operator==(const Type&) const = default;
