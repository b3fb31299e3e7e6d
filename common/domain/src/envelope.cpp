// Envelope helpers: kind names, fresh and caused envelopes, RFC 3339 time.
#include <troupe/domain/envelope.hpp>
#include <troupe/domain/id.hpp>
#include <troupe/domain/result.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
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
    case Rejection::Code::timeout: return "timeout";
  }
  return "?";
}

std::string rfc3339_now() {
  using namespace std::chrono;
  auto us = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  // The date and time to the second change once a second: format them once per thread
  // and second (a profile showed gmtime_r + snprintf on every message).
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[20];  // "YYYY-MM-DDTHH:MM:SS"
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    std::memcpy(cached, buf, 19);
    cached_secs = secs;
  }
  std::string out(cached, 19);
  out.resize(27);
  out[19] = '.';
  auto frac = static_cast<int>(us % 1000000);
  for (int i = 25; i >= 20; --i, frac /= 10) out[static_cast<std::size_t>(i)] = static_cast<char>('0' + frac % 10);
  out[26] = 'Z';
  return out;
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

namespace {

// The length of the well-formed UTF-8 sequence at the start of `t` (0 if there is none):
// no overlong forms, no surrogates, nothing past U+10FFFF.
std::size_t utf8_length(std::string_view t) {
  auto b = [&](std::size_t i) { return static_cast<unsigned char>(t[i]); };
  auto cont = [&](std::size_t i) { return i < t.size() && (b(i) & 0xc0) == 0x80; };
  unsigned char c = b(0);
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if ((c == 0xe0 && b(1) < 0xa0) || (c == 0xed && b(1) > 0x9f)) return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if ((c == 0xf0 && b(1) < 0x90) || (c == 0xf4 && b(1) > 0x8f)) return 0;
    return 4;
  }
  return 0;
}

}  // namespace

std::string printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  auto hex = [&](const char* prefix, unsigned char c) {
    out += prefix;
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  };
  for (std::size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\\') {
      out += "\\\\";  // so that an escape and the same characters written out differ
      ++i;
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x80) {
      hex("\\x", c);  // C0 controls and DEL
      ++i;
    } else if (auto n = utf8_length(text.substr(i)); n == 0) {
      hex("\\x", c);  // not UTF-8: a lone byte, which an 8-bit terminal may take as a control
      ++i;
    } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) {
      hex("\\u00", static_cast<unsigned char>(text[i + 1]));  // C1 controls, U+0080..U+009F
      i += 2;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

bool valid_traceparent(std::string_view t) noexcept {
  if (t.size() != 55 || t.substr(0, 3) != "00-" || t[35] != '-' || t[52] != '-') return false;
  auto hex = [&](std::size_t from, std::size_t n) {
    bool nonzero = false;
    for (std::size_t i = from; i < from + n; ++i) {
      char c = t[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
      nonzero = nonzero || c != '0';
    }
    return nonzero || n == 2;
  };
  return hex(3, 32) && hex(36, 16) && hex(53, 2);
}

}  // namespace troupe
