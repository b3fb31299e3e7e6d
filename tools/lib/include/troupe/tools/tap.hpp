// What a tap receives, read once for every tool that shows it (`troupe tap`, the HTTP
// gateway's streams and dashboard): an event (topic, envelope, payload) or a service's
// mirror of something it handled ("$tap ", the mirror's envelope, the original
// envelope, its payload; docs/protocol.md §7.7).
#pragma once

#include <troupe/domain/envelope.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::tools {

struct TapRecord {
  // A CloudEvent plus "tapkind" (event, command, query, deadletter, gap, repaired,
  // refused) and "taptarget" (the service that handled it; "*" for an event), as
  // `troupe tap --json` prints it.
  nlohmann::json json;
  // The event, or the message a service mirrored, as it was sent (its sequence, its
  // correlation id, its own type).
  Envelope envelope;
  // As shown: kind and target as in json; source and type are the envelope's, except
  // for a service's notices (below).
  std::string kind, source, target, type;
  // For a mirror: the service that mirrored it and its mirror sequence (a jump says
  // that this tap missed some).
  std::string mirrored_by;
  std::uint64_t mirror_sequence = 0;
};

// An event as a tap shows it, from its decoded envelope and payload.
TapRecord event_record(const Envelope& envelope, std::string_view payload);

// Reads one multipart message of a tap's subscription; nullopt for anything else
// (heartbeats, undecodable envelopes). A refused handshake's source is the peer's
// address and its type "refused:ENDPOINT"; a gap's or repair's source is the publisher.
std::optional<TapRecord> read_tap(const std::vector<std::string_view>& frames);

// What a tap missed: a jump in a service's mirror sequence means the service dropped
// mirrors for this tap while it was behind.
class MirrorGaps {
 public:
  // How many mirrors of `r`'s service were missed just before it (0 for an event).
  std::uint64_t missed(const TapRecord& r);

 private:
  std::map<std::string, std::uint64_t> last_;
};

}  // namespace troupe::tools
