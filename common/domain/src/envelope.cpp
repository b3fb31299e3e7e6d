// Envelope helpers: kind names, fresh and caused envelopes, RFC 3339 time.
#include <troupe/domain/envelope.hpp>
#include <troupe/domain/id.hpp>
#include <troupe/domain/result.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace troupe {

std::string_view to_string(Kind kind) noexcept {
  switch (kind) {
    case Kind::event: return "event";
    case Kind::command: return "command";
    case Kind::query: return "query";
    case Kind::reply: return "reply";
  }
  return "?";
}

std::optional<Kind> kind_from_string(std::string_view text) noexcept {
  if (text == "event") return Kind::event;
  if (text == "command") return Kind::command;
  if (text == "query") return Kind::query;
  if (text == "reply") return Kind::reply;
  return std::nullopt;
}

std::string_view to_string(Rejection::Code code) noexcept {
  switch (code) {
    case Rejection::Code::malformed: return "malformed";
    case Rejection::Code::too_large: return "too_large";
    case Rejection::Code::wrong_type: return "wrong_type";
    case Rejection::Code::missing: return "missing";
    case Rejection::Code::invalid: return "invalid";
    case Rejection::Code::refused: return "refused";
  }
  return "?";
}

std::string rfc3339_now() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto us = duration_cast<microseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(us % 1000000));
  return buf;
}

Envelope make_envelope(std::string source, std::string type, Kind kind) {
  Envelope e;
  e.id = new_id();
  e.source = std::move(source);
  e.type = std::move(type);
  e.time = rfc3339_now();
  e.kind = kind;
  return e;
}

Envelope make_caused_envelope(const Envelope& cause, std::string source, std::string type,
                              Kind kind) {
  Envelope e = make_envelope(std::move(source), std::move(type), kind);
  e.correlationid = cause.correlationid.empty() ? cause.id : cause.correlationid;
  e.causationid = cause.id;
  e.traceparent = cause.traceparent;
  return e;
}

}  // namespace troupe
