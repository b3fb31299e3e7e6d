// Sequenced commands between services, both ends. The sender's outbox numbers the
// commands per receiver and resends what is not acknowledged; the receiver applies
// each sender's commands strictly in order and once, and acknowledges in its
// heartbeats only what it has committed. No I/O: the driver keeps the outbox rows in
// its store, sends and receives, and tells these classes what happened.
#pragma once

#include <troupe/core/effects.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::core {

// The receiving end: each sender's position (last command applied), and the epochs
// of the sender's store its commands were written under (a sender that lost its last
// commits numbers new commands again, under a new epoch: the receiver, which applied
// the old ones, is the one that can tell, whenever the new ones arrive).
class CommandInbox {
 public:
  enum class Verdict {
    apply,         // next in order: apply it (the position has moved)
    duplicate,     // already applied
    out_of_order,  // an earlier one is missing: drop it, the sender resends in order
  };
  // What changed in the unit of work, to be written with it: the position, and the
  // epochs record when it changed.
  struct Moved {
    std::string sender;
    std::uint64_t position = 0;
    std::optional<std::string> epochs;
  };

  // Whether `sender`'s position is known; if not, restore() it from the store first.
  bool knows(std::string_view sender) const { return pending_.find(sender) != pending_.end(); }
  // `epochs`: the record moved() last gave for it ("FIRST:EPOCH ...", may be empty).
  void restore(const std::string& sender, std::uint64_t position, std::string_view epochs = {});
  // A command of `sender` numbered `sequence` (> 0), written under the sender's `epoch`
  // (0: a sender without epochs).
  Verdict offer(std::string_view sender, std::uint64_t sequence, std::uint64_t epoch, Effects& fx);
  std::vector<Moved> moved() const;
  // The unit of work committed, or was rolled back.
  void committed() { committed_ = pending_; }
  void rolled_back() { pending_ = committed_; }
  // What a heartbeat acknowledges: committed positions only (a crash before commit
  // loses the batch, and the sender must still have those commands).
  std::map<std::string, std::uint64_t, std::less<>> acks() const;

 private:
  struct Sender {
    std::uint64_t position = 0;
    // (first sequence, epoch) of the commands applied, the newest few ranges.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> epochs;
    std::uint64_t rewritten = 0;  // the epoch a LOSS was said for (once each)
    bool operator==(const Sender&) const = default;
  };
  static std::string record(const Sender& s);
  std::map<std::string, Sender, std::less<>> pending_, committed_;
};

// The sending end, towards one receiver.
class CommandOutbox {
 public:
  // As the store had it at start: the last command number that may have been sent to
  // it (`head_at_start`: what the store holds, less what an earlier start held back and
  // never had checked — the driver keeps that "held from" mark in its store until a
  // check passes), how far it had acknowledged them, and its store's incarnation.
  CommandOutbox(std::string receiver, std::uint64_t head_at_start, std::uint64_t acked, std::string incarnation,
                Duration heartbeat, Time now);

  // New commands go out after commit only once the receiver's first heartbeat has been
  // checked (heartbeat()); until then they wait in the outbox and resend sends them.
  bool may_send() const { return checked_; }
  // The highest command number a resend may send now: until that first heartbeat, only
  // those the store had at start (the check compares the receiver's ack with them).
  std::uint64_t resend_limit() const { return checked_ ? UINT64_MAX : head_at_start_; }
  // A heartbeat of the receiver: its store's incarnation and whether it is durable, and
  // its ack of our commands, if it lists one. `head`: our last command number towards
  // it now; `durable`: our own store. Returns the number up to which the outbox may
  // forget commands, when the ack moved. Effects save_identity: persist incarnation().
  std::optional<std::uint64_t> heartbeat(std::optional<std::uint64_t> ack, const std::string& incarnation,
                                         bool receiver_durable, std::uint64_t head, bool durable, Time now,
                                         Effects& fx);
  // Whether the unacknowledged commands are to be sent again now: acks have not moved
  // for two heartbeats (not "nothing sent lately", which steady traffic would postpone).
  bool resend_due(Time now) const { return now - last_progress_ >= heartbeat_ * 2; }
  // Command `sequence` went out to it (after commit, or resent).
  void sent(std::uint64_t sequence);
  void resent(Time now) { last_progress_ = now; }

  std::uint64_t acked() const { return acked_; }
  const std::string& incarnation() const { return incarnation_; }
  const std::string& receiver() const { return receiver_; }
  // A unit of work that is rolled back rewinds what it moved.
  struct Mark {
    std::uint64_t acked = 0;
    std::string incarnation;
    bool checked = false;
  };
  Mark mark() const { return {acked_, incarnation_, checked_}; }
  void rewind(const Mark& m) {
    acked_ = m.acked;
    incarnation_ = m.incarnation;
    checked_ = m.checked;
  }

 private:
  std::string receiver_;
  std::string incarnation_;  // the receiver's store, as last acknowledged by it
  std::uint64_t head_at_start_ = 0;
  Duration heartbeat_;
  std::uint64_t acked_ = 0;
  bool checked_ = false;
  // Every command up to sent_through_ may have reached it (sent in this start, or in an
  // earlier one); those sent past it, out of order, wait in sent_after_ (the held-back
  // ones go out with the first resend after the check, newer ones at once).
  std::uint64_t sent_through_ = 0;
  std::set<std::uint64_t> sent_after_;
  bool lost_reported_ = false;  // an ack beyond sent_through_ was said once
  Time last_progress_{};
};

}  // namespace troupe::core
