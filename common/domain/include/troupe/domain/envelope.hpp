// The envelope: the metadata every troupe message carries (docs/protocol.md §2).
// Attribute names follow CloudEvents 1.0 where one exists, plus troupe's
// extensions; a tap can print any envelope as a CloudEvents JSON document.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace troupe {

enum class Kind : std::uint8_t { event, command, query, reply };

std::string_view to_string(Kind kind) noexcept;
std::optional<Kind> kind_from_string(std::string_view text) noexcept;

inline constexpr std::string_view kSpecVersion = "1.0";
inline constexpr std::string_view kContentType = "application/msgpack";

struct Envelope {
  std::string specversion{kSpecVersion};  // CloudEvents spec version, "1.0"
  std::string id;                         // UUIDv7, unique per message
  std::string source;                     // the emitting service or client ("orders")
  std::string type;                       // message type name ("OrderPlaced")
  std::string time;                       // RFC 3339 UTC, microseconds
  std::string datacontenttype{kContentType};
  Kind kind = Kind::event;
  std::uint64_t sequence = 0;     // publisher sequence (events, commands); 0 = none
  // The publisher's epoch (events): new each time its store is opened, so a subscriber
  // can tell a sequence number written again after lost commits from the one it applied.
  std::uint64_t epoch = 0;        // 0 = none
  std::string correlationid;      // the saga this belongs to ("" = none)
  std::string causationid;        // id of the message that caused this one
  std::string traceparent;        // W3C trace context ("" = none)
  std::uint32_t schemaversion = 1;  // version of the payload's schema

  bool operator==(const Envelope&) const = default;
};

// A fresh envelope: new id, the current time, the given source/type/kind.
Envelope make_envelope(std::string source, std::string type, Kind kind);

// A fresh envelope for a message caused by `cause`: same correlation id (or the
// cause's id when it has none), causation id = cause.id, same traceparent.
Envelope make_caused_envelope(const Envelope& cause, std::string source, std::string type,
                              Kind kind);

// True if `text` is a W3C Trace Context traceparent of version 00:
// "00-" 32 lowercase hex (not all zero) "-" 16 lowercase hex (not all zero) "-" 2 hex.
bool valid_traceparent(std::string_view text) noexcept;

// The current UTC time as RFC 3339 with microseconds: "2026-11-27T18:00:00.123456Z".
std::string rfc3339_now();

// Text a peer sent (a type name, a reason), safe to write to a log or a terminal:
// control bytes and bytes that are not UTF-8 become \xNN, C1 controls \u00NN and a
// backslash \\, so a hostile name can neither drive a terminal nor forge a log line,
// and an escape cannot be told apart from its text. Printable UTF-8 is kept.
std::string printable(std::string_view text);

}  // namespace troupe
