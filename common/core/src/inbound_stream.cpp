#include <troupe/core/inbound_stream.hpp>
#include <troupe/core/mutation.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace troupe::core {

namespace {

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string num(std::uint64_t v) { return std::to_string(v); }

using Level = Report::Level;

}  // namespace

InboundStream::InboundStream(std::string publisher, StreamSettings settings, std::uint64_t position,
                             Identity identity)
    : publisher_(std::move(publisher)),
      settings_(settings),
      phase_(identity.lost ? Phase::history_lost : Phase::unverified),
      position_(position),
      known_head_(position),
      incarnation_(std::move(identity.incarnation)),
      epoch_(identity.epoch) {
  saved_identity_ = this->identity();
}

void InboundStream::recall(Effects& fx) {
  if (phase_ != Phase::history_lost) return;
  fx.report(Level::error, "LOSS: " + publisher_ + "'s history is not the one this service applied up to #" +
                              num(position_) + " (found before this start: its store was replaced or lost "
                              "commits); not applying " + publisher_ + " until an operator decides");
  fx.loss = Loss::history_lost;
  fx.health_changed = true;
}

InboundStream::Verdict InboundStream::offer(std::uint64_t sequence, std::uint64_t epoch, bool replayed,
                                            Effects& fx) {
  if (stopped()) return Verdict::stopped;  // stopped loudly: see check()
  if (!replayed && epoch != 0 && epoch != trusted_epoch_ && verified()) {
    // The publisher opened its store again since it was checked: nothing more from it
    // until a $replay answer shows it still has our position's event (a lost WAL tail
    // hands out the same sequence numbers again, under a new epoch).
    unverify();
  }
  if (!verified()) {
    known_head_ = std::max(known_head_, sequence);
    return Verdict::held;
  }
  if (sequence <= position_ && !(mutant(Mutation::apply_replay_twice) && replayed && sequence == position_))
    return Verdict::duplicate;
  if (sequence > position_ + 1 && !mutant(Mutation::skip_gap_check)) {
    known_head_ = std::max(known_head_, sequence);
    if (!in_gap()) {
      open_gap(fx);
      fx.report(Level::debug, "gap from " + publisher_ + ": have " + num(position_) + ", saw " + num(sequence) +
                                  "; replaying");
    }
    return Verdict::gap;
  }
  position_ = sequence;
  if (epoch != 0) epoch_ = epoch;
  known_head_ = std::max(known_head_, sequence);
  if (in_gap() && position_ >= known_head_) {
    phase_ = phase_ == Phase::repairing ? Phase::following : Phase::unverified;
    fx.gap_repaired = true;
  }
  return Verdict::apply;
}

void InboundStream::heartbeat(const PublisherWord& word, Effects& fx) {
  check(word, fx);
  if (stopped()) return;
  known_head_ = std::max(known_head_, word.head);
  if (position_ < word.head && !in_gap() && !replay_) open_gap(fx);
}

bool InboundStream::answered(const ReplayAnswer& answer, Effects& fx) {
  const std::uint64_t from = replay_ ? replay_->from : position_ + 1;
  const std::optional<Time> asked = replay_ ? std::optional<Time>(replay_->sent) : std::nullopt;
  replay_.reset();
  unanswered_ = 0;  // answered: the connection carries what it is asked
  // ... but an answer that finds us where the last one did, with more to apply, shows
  // that what it brought was not applied.
  if (answered_at_ == position_ && position_ < answer.word.head) {
    ++unmoved_;
    // The next ask waits 1, 2, 4, then 8 timeouts from this one.
    if (asked) hold_until_ = *asked + replay_timeout() * (1 << std::min(unmoved_ - 1, 3));
    if (unmoved_ >= kStallReplays)
      stall(fx, num(static_cast<std::uint64_t>(unmoved_)) + " replays from #" + num(position_ + 1) +
                    " were answered and #" + num(position_ + 1) +
                    " was never applied: it is refused on arrival (an envelope or message no reader takes; "
                    "see the dead letters of events:" + publisher_ + "), or the batch applying it cannot be "
                    "committed (see store_error)");
  } else {
    moves(fx);
  }
  answered_at_ = position_;
  check(answer.word, fx);
  if (stopped() || !check_epoch(answer, from, fx)) return false;
  known_head_ = std::max(known_head_, answer.word.head);
  if (position_ + 1 < answer.oldest && position_ < answer.word.head) {
    const std::uint64_t lost = answer.oldest - 1 - position_;
    if (settings_.durable) {
      fx.report(Level::error, "LOSS: " + publisher_ + " no longer retains events " + num(position_ + 1) + ".." +
                                  num(answer.oldest - 1) + " that this service has not applied (it keeps " +
                                  num(answer.oldest) + ".." + num(answer.word.head) + "); not applying " +
                                  publisher_ + " until an operator decides");
      stop(Phase::behind_retention, fx);
      return false;
    }
    fx.report(Level::warn, "memory mode: " + num(lost) + " events of " + publisher_ + " are gone (" +
                               num(position_ + 1) + ".." + num(answer.oldest - 1) + "); skipping ahead");
    fx.events_lost += lost;
    position_ = answer.oldest - 1;
  }
  return true;
}

void InboundStream::refused(Effects& fx) {
  replay_.reset();
  moves(fx);
}

InboundStream::Due InboundStream::tick(Time now, Effects& fx) {
  Due due;
  if (stopped()) return due;
  const Duration hb = settings_.heartbeat;
  // A publisher silent for three heartbeats (and 5 s at least: a busy subscriber reads
  // its events late) gets a new events connection: a transport may end a connection for
  // good (libzmq does, on a message over ZMQ_MAXMSGSIZE). Harmless when it is only down.
  if (now - std::max(last_heard_, subscribed_at_) > std::max<Duration>(hb * 3, std::chrono::seconds(5))) {
    due.reopen_subscription = true;
    subscribed_at_ = now;
  }
  // Each unanswered replay waits twice as long as the last one (up to 8 timeouts): a
  // publisher slow to answer under load is given the time, not asked again and again.
  const Duration wait = replay_timeout() * (1 << std::min(unanswered_, 3));
  if (replay_ && now - replay_->sent < wait) return due;
  if (replay_) {
    const std::uint64_t asked_at = replay_->position;
    replay_.reset();
    due.reopen_replay = true;
    // Unanswered: does the stream move at all?
    if (position_ != asked_at)
      moves(fx);
    else if (now - last_heard_ < wait && ++unanswered_ >= kStallReplays)
      stall(fx, num(static_cast<std::uint64_t>(unanswered_)) + " replays from #" + num(position_ + 1) +
                    " went unanswered while its heartbeats arrive: a message the sockets refuse (over "
                    "max_message_bytes = " + num(settings_.max_message_bytes) +
                    "?) or a connection that keeps failing");
  }
  // Stalled behind an answered replay, and moved since (applied live or replayed).
  if (unmoved_ > 0 && answered_at_ != position_) moves(fx);
  // Answered without moving: held (answered()).
  if (hold_until_ && now < *hold_until_) return due;
  hold_until_.reset();
  // An unverified stream asks until an answer verifies it: the one it asked may have
  // died with the publisher, and only an answer can show our position's event is
  // still the publisher's own.
  if (replay_wanted_ || !verified() || position_ < known_head_) due.ask = position_ + 1;
  return due;
}

void InboundStream::asked(std::string id, std::uint64_t from, Time now) {
  replay_ = Replay{std::move(id), from, position_, now};
  replay_wanted_ = false;
}

void InboundStream::resumed(Time now) {
  last_heard_ = now;
  if (replay_) replay_->sent = now;
}

std::string InboundStream::identity() const {
  const bool lost = phase_ == Phase::history_lost;
  std::string out = incarnation_;
  if (epoch_ || lost) out += " " + num(epoch_);
  if (lost) out += " lost";
  return out;
}

InboundStream::Identity InboundStream::parse_identity(std::string_view record) {
  Identity id;
  auto space = record.find(' ');
  id.incarnation = std::string(record.substr(0, space));
  if (space == std::string_view::npos) return id;
  std::string rest(record.substr(space + 1));
  id.epoch = std::strtoull(rest.c_str(), nullptr, 10);
  id.lost = rest.size() >= 5 && rest.compare(rest.size() - 5, 5, " lost") == 0;
  return id;
}

void InboundStream::rewind(const Mark& m) {
  position_ = m.position;
  epoch_ = m.epoch;
  incarnation_ = m.incarnation;
  saved_identity_ = m.saved_identity;
}

void InboundStream::check(const PublisherWord& word, Effects& fx) {
  if (stopped() || word.incarnation.empty()) return;
  // A head is compared with our position only on the first word from a new start of
  // the publisher: later heartbeats can be older than events that reached us by replay.
  const bool new_boot = word.boot != boot_;
  boot_ = word.boot;
  if (incarnation_.empty()) {
    incarnation_ = word.incarnation;  // first contact: remembered with our position
    fx.save_identity = true;
  } else if (word.incarnation != incarnation_) {
    if (!word.durable) {
      const std::uint64_t lost = known_head_ > position_ ? known_head_ - position_ : 0;
      fx.report(Level::warn, publisher_ + " restarted without its history (memory mode): " + num(lost) +
                                 " event(s) never applied are gone; position " + num(position_) + " -> 0");
      fx.events_lost += lost;
      position_ = 0;
      known_head_ = word.head;
      incarnation_ = word.incarnation;
      epoch_ = 0;
      trusted_epoch_ = word.epoch.value_or(0);
      fx.save_identity = true;
      phase_ = Phase::following;
      return;
    }
    if (mutant(Mutation::forget_incarnation_check)) {
      incarnation_ = word.incarnation;
      fx.save_identity = true;
    } else {
      fx.report(Level::error, "LOSS: " + publisher_ + "'s store was replaced (incarnation " + word.incarnation +
                                  ", this service applied up to #" + num(position_) + " of " + incarnation_ +
                                  "); not applying " + publisher_ + " until an operator decides");
      stop(Phase::history_lost, fx);
      return;
    }
  }
  // Only for a publisher without epochs: with them a lost tail shows in the epoch of our
  // position's event (check_epoch), and a head says nothing when the word is a late one
  // of a short-lived start that was never heard from before.
  if (new_boot && !word.epoch && word.head < position_ && !mutant(Mutation::accept_regressed_head)) {
    fx.report(Level::error, "LOSS: " + publisher_ + "'s head #" + num(word.head) +
                                " is behind this service's position #" + num(position_) +
                                ": it lost committed events (synchronous=normal and a power cut?); not applying " +
                                publisher_ + " until an operator decides");
    stop(Phase::history_lost, fx);
    return;
  }
  // A publisher with epochs is trusted only in the epoch a $replay answer checked
  // (check_epoch): a heartbeat cannot say whether our position's event is still its own.
  if (!word.epoch || *word.epoch == trusted_epoch_)
    verify();
  else if (verified())
    unverify();
}

bool InboundStream::check_epoch(const ReplayAnswer& answer, std::uint64_t from, Effects& fx) {
  const auto& word = answer.word;
  if (!word.epoch || *word.epoch == trusted_epoch_) return verified();
  const std::uint64_t at = from - 1;  // the event whose epoch the answer gives
  if (at != position_) {  // live events moved us on meanwhile: ask again from here
    replay_wanted_ = true;
    return false;
  }
  const std::uint64_t theirs = answer.epoch_of_from.value_or(0);
  // Below what it retains the publisher no longer knows epochs either: that is a
  // retention loss, which answered() reports as such.
  const bool retained = at + 1 >= answer.oldest;
  if (at > 0 && retained && (at > word.head || (epoch_ != 0 && theirs != epoch_)) &&
      !mutant(Mutation::accept_regressed_head)) {
    fx.report(Level::error,
              "LOSS: " + publisher_ + " lost committed events: this service applied its event #" + num(at) +
                  " (epoch " + hex(epoch_) + "), which " + publisher_ + " now " +
                  (at > word.head ? std::string("no longer has") : "has from epoch " + hex(theirs)) +
                  " (its head is #" + num(word.head) +
                  "): it wrote other events under the same numbers (a lost WAL tail, or an older copy of its "
                  "store?); not applying " + publisher_ + " until an operator decides");
    stop(Phase::history_lost, fx);
    return false;
  }
  trusted_epoch_ = *word.epoch;
  verify();
  return true;
}

void InboundStream::stop(Phase why, Effects& fx) {
  phase_ = why;
  if (why == Phase::history_lost) fx.save_identity = true;  // kept across restarts
  fx.loss = why == Phase::behind_retention ? Loss::behind_retention : Loss::history_lost;
  fx.health_changed = true;
}

void InboundStream::verify() {
  if (phase_ == Phase::unverified) phase_ = Phase::following;
  if (phase_ == Phase::unverified_behind) phase_ = Phase::repairing;
}

void InboundStream::unverify() {
  if (phase_ == Phase::following) phase_ = Phase::unverified;
  if (phase_ == Phase::repairing) phase_ = Phase::unverified_behind;
  replay_wanted_ = true;
}

void InboundStream::open_gap(Effects& fx) {
  if (phase_ == Phase::unverified) phase_ = Phase::unverified_behind;
  if (phase_ == Phase::following) phase_ = Phase::repairing;
  fx.gap_opened = true;
}

void InboundStream::stall(Effects& fx, const std::string& why) {
  if (stalled_) return;
  stalled_ = true;
  fx.health_changed = true;
  fx.report(Level::error, "stream from " + publisher_ + " stuck at #" + num(position_) + " (its head is #" +
                              num(known_head_) + "): " + why + ". Nothing after #" + num(position_) +
                              " is applied until it moves");
}

Duration InboundStream::replay_timeout() const {
  return std::max<Duration>(settings_.heartbeat * 2, std::chrono::seconds(1));
}

void InboundStream::moves(Effects& fx) {
  unanswered_ = 0;
  unmoved_ = 0;
  hold_until_.reset();
  if (!stalled_) return;
  stalled_ = false;
  fx.health_changed = true;
  fx.report(Level::info, "stream from " + publisher_ + " moves again (at #" + num(position_) + ")");
}

}  // namespace troupe::core
