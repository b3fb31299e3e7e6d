// Result<T> and Rejection: how troupe says "this input was refused, here is why".
// Bad input from a peer or a file is never an exception: it is a returned
// Rejection naming where (which message or file:line), what, expected vs got.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace troupe {

struct Rejection {
  // Machine-readable category, used for counting in $metrics.
  enum class Code {
    malformed,   // not decodable at all (garbage, truncated, trailing bytes)
    too_large,   // a size limit was exceeded (total, string, array, depth, ...)
    wrong_type,  // a value of the wrong type
    missing,     // a required key or field is absent
    invalid,     // well-formed but not acceptable (unknown service, bad value)
    refused,     // a handler said no
    timeout,     // a peer did not answer in time (not running, or too busy)
  };

  Code code = Code::invalid;
  std::string where;  // "OrderPlaced (35 bytes)", "topology/shop.toml:14"
  std::string what;   // "field 'quantity': expected integer, got string"

  // "where: what", the one line that is logged and stored with a dead letter.
  std::string message() const { return where.empty() ? what : where + ": " + what; }
};

std::string_view to_string(Rejection::Code code) noexcept;

inline Rejection reject(Rejection::Code code, std::string where, std::string what) {
  return Rejection{code, std::move(where), std::move(what)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}               // NOLINT: implicit by design
  Result(Rejection rejection) : v_(std::move(rejection)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Rejection& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Rejection> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Rejection rejection) : error_(std::move(rejection)), ok_(false) {}  // NOLINT

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Rejection& error() const { assert(!ok_); return error_; }

 private:
  Rejection error_;
  bool ok_ = true;
};

}  // namespace troupe
