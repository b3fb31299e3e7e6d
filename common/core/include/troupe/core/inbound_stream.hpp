// One publisher's events as one subscriber follows them: applied in order and once,
// gaps repaired by $replay, the publisher's incarnation and epochs verified before
// anything of it is applied, retention losses and lost history stopped loudly, a
// stream that cannot move reported as stalled. No I/O: the driver feeds in what
// arrived and the time, and does what the verdicts and Effects say.
#pragma once

#include <troupe/core/effects.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace troupe::core {

// What a publisher says of itself, in a heartbeat or a $replay reply.
struct PublisherWord {
  std::string incarnation;  // its store's identity (new when the store is replaced)
  std::string boot;         // this start of its process
  std::uint64_t head = 0;
  bool durable = true;
  std::optional<std::uint64_t> epoch;  // this open of its store (absent from older peers)
};

// The header of a $replay reply: the publisher's word, what it retains, and the epoch
// of the event just before the first one asked for (the one our position refers to).
struct ReplayAnswer {
  PublisherWord word;
  std::uint64_t oldest = 1;
  std::optional<std::uint64_t> epoch_of_from;
};

struct StreamSettings {
  Duration heartbeat = std::chrono::milliseconds(500);
  bool durable = true;  // this node's store: a memory node skips what is gone instead of stopping
  std::uint64_t max_message_bytes = 0;  // named in the stalled-stream report
};

// What a subscriber's store keeps beside its position: the publisher's incarnation,
// the epoch of the event at the position, and whether its history was found lost (a
// stop that outlives restarts: only an operator lifts it).
struct StreamIdentity {
  std::string incarnation;
  std::uint64_t epoch = 0;
  bool lost = false;
};

class InboundStream {
 public:
  // One state, not six booleans: whether the publisher is verified (its word matched
  // what our position refers to), whether a gap is known, or why the stream stopped.
  enum class Phase {
    unverified,         // nothing applied until it has said who it is
    unverified_behind,  // ... and it is known to have more than we applied
    following,          // verified, in order
    repairing,          // verified, a gap is known: replaying
    behind_retention,   // stopped: it no longer keeps what we have not applied
    history_lost,       // stopped: its store was replaced, or it lost committed events
  };
  // What to do with an event offered.
  enum class Verdict {
    stopped,    // the stream is stopped: drop it (the LOSS: was said when it stopped)
    held,       // not verified yet: drop it, its number is remembered as a known head
    duplicate,  // already applied
    gap,        // an earlier one is missing: drop it, a replay brings everything
    apply,      // next in order: apply it (the position has moved)
  };
  // What the driver's timers should do now (tick).
  struct Due {
    bool reopen_subscription = false;  // its events connection has been silent too long
    bool reopen_replay = false;        // the last replay went unanswered
    std::optional<std::uint64_t> ask;  // send a $replay from this sequence
  };
  // What a unit of work that is rolled back rewinds to.
  struct Mark {
    std::uint64_t position = 0, epoch = 0;
    std::string incarnation, saved_identity;
  };

  using Identity = StreamIdentity;

  // `position` and `identity` as the store last committed them.
  InboundStream(std::string publisher, StreamSettings settings, std::uint64_t position = 0, Identity identity = {});
  // At start: says again, loudly, a loss found before this start.
  void recall(Effects& fx);

  // An event numbered `sequence` of the publisher's `epoch` (0: none), live or from a
  // $replay page whose answer was accepted (`replayed`).
  Verdict offer(std::uint64_t sequence, std::uint64_t epoch, bool replayed, Effects& fx);
  // A heartbeat of the publisher.
  void heartbeat(const PublisherWord& word, Effects& fx);
  // Whether `id` is the replay this stream waits for (anything else is stale).
  bool awaits(std::string_view id) const { return replay_ && replay_->id == id; }
  // The answer to the replay awaited: true when the page's events are to be offered.
  bool answered(const ReplayAnswer& answer, Effects& fx);
  // The replay awaited was refused ($error): answered, nothing to apply.
  void refused(Effects& fx);
  // The driver's timers.
  Due tick(Time now, Effects& fx);
  // A replay from `from` was sent as `id`.
  void asked(std::string id, std::uint64_t from, Time now);
  // Anything arrived on its events connection.
  void heard(Time now) { last_heard_ = now; }
  // Its events connection was (re)opened.
  void subscribed(Time now) { subscribed_at_ = now; }
  // This node was not running since its last turn (suspended): the silence meanwhile
  // is its own, not the publisher's.
  void resumed(Time now);

  // Persistence: the identity record kept beside the position ("INCARNATION EPOCH",
  // then " lost" once its history was found lost).
  std::string identity() const;
  static Identity parse_identity(std::string_view record);
  bool identity_unsaved() const { return identity() != saved_identity_; }
  void identity_saved() { saved_identity_ = identity(); }
  Mark mark() const { return {position_, epoch_, incarnation_, saved_identity_}; }
  void rewind(const Mark& m);

  const std::string& publisher() const { return publisher_; }
  Phase phase() const { return phase_; }
  std::uint64_t position() const { return position_; }
  std::uint64_t known_head() const { return known_head_; }
  std::uint64_t epoch() const { return epoch_; }
  const std::string& incarnation() const { return incarnation_; }
  bool verified() const { return phase_ == Phase::following || phase_ == Phase::repairing; }
  bool in_gap() const { return phase_ == Phase::unverified_behind || phase_ == Phase::repairing; }
  bool stopped() const { return phase_ == Phase::behind_retention || phase_ == Phase::history_lost; }
  bool stalled() const { return stalled_; }
  bool replay_in_flight() const { return replay_.has_value(); }

 private:
  // Compares what the publisher says of itself with what our position refers to.
  void check(const PublisherWord& word, Effects& fx);
  // A $replay answer's epochs against our position (a lost WAL tail).
  bool check_epoch(const ReplayAnswer& answer, std::uint64_t from, Effects& fx);
  void stop(Phase why, Effects& fx);
  void verify();
  void unverify();  // and ask a replay, which verifies again
  void open_gap(Effects& fx);
  void stall(Effects& fx, const std::string& why);
  void moves(Effects& fx);
  // How long a replay is given to be answered: 2 heartbeats, 1 s at least.
  Duration replay_timeout() const;

  struct Replay {
    std::string id;
    std::uint64_t from = 0;
    std::uint64_t position = 0;  // ours when it was asked
    Time sent{};
  };

  std::string publisher_;
  StreamSettings settings_;
  Phase phase_ = Phase::unverified;
  std::uint64_t position_ = 0;    // last sequence applied
  std::uint64_t known_head_ = 0;  // highest sequence the publisher is known to have
  std::string incarnation_;
  // The publisher process we last heard from. Starts have no order a subscriber can
  // read (a word queued before a restart can be read after the new start's), so a word
  // from another start is taken as from a new one; only a publisher without epochs has
  // its head compared then (check()).
  std::string boot_;
  // Epochs (a new one each time the publisher opens its store): `epoch_` wrote the event
  // at our position (stored beside the incarnation); the publisher's
  // current one is trusted only once a $replay answer has shown that it still has our
  // position's event under that same epoch (a lost WAL tail reuses sequence numbers).
  std::uint64_t epoch_ = 0;
  std::string saved_identity_;  // as the store has it
  std::uint64_t trusted_epoch_ = 0;
  bool replay_wanted_ = true;  // catch up (or verify) from our position, even at the head
  std::optional<Replay> replay_;
  // A stream that does not move although its publisher is alive (its events connection
  // delivers) and replays are asked: past kStallReplays unanswered ones it is stalled.
  Time last_heard_{};
  Time subscribed_at_{};
  int unanswered_ = 0;
  bool stalled_ = false;
  // Replays answered while the stream stays where the last answer found it, with more
  // to apply: the event after our position is refused on arrival (an envelope or
  // message no reader takes). Past kStallReplays such answers it is stalled, and each
  // next ask waits twice as long as the last (up to 8 timeouts) instead of asking again
  // at once: the publisher is not asked a hundred times a second for what we refuse.
  int unmoved_ = 0;
  std::optional<std::uint64_t> answered_at_;  // our position at the last answer
  std::optional<Time> hold_until_;            // no ask before then
};

// Unanswered replays, while the publisher's heartbeats arrive, before a stream is stalled.
inline constexpr int kStallReplays = 3;

}  // namespace troupe::core
