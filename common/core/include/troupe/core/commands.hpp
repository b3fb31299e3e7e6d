// Sequenced commands between services, both ends. The sender's outbox numbers the
// commands per receiver and resends what is not acknowledged; the receiver applies
// each sender's commands strictly in order and once, and acknowledges in its
// heartbeats only what it has committed. No I/O: the driver keeps the outbox rows in
// its store, sends and receives, and tells these classes what happened.
#pragma once

#include <troupe/core/effects.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::core {

// The receiving end: each sender's position (last command applied).
class CommandInbox {
 public:
  enum class Verdict {
    apply,         // next in order: apply it (the position has moved)
    duplicate,     // already applied
    out_of_order,  // an earlier one is missing: drop it, the sender resends in order
  };
  // Whether `sender`'s position is known; if not, restore() it from the store first.
  bool knows(std::string_view sender) const { return pending_.find(sender) != pending_.end(); }
  void restore(const std::string& sender, std::uint64_t position);
  // A command of `sender` numbered `sequence` (> 0).
  Verdict offer(std::string_view sender, std::uint64_t sequence);
  // The positions that moved in the unit of work (to be written with it).
  std::vector<std::pair<std::string, std::uint64_t>> moved() const;
  // The unit of work committed, or was rolled back.
  void committed() { committed_ = pending_; }
  void rolled_back() { pending_ = committed_; }
  // What a heartbeat acknowledges: committed positions only (a crash before commit
  // loses the batch, and the sender must still have those commands).
  const std::map<std::string, std::uint64_t, std::less<>>& acks() const;

 private:
  std::map<std::string, std::uint64_t, std::less<>> pending_, committed_;
};

// The sending end, towards one receiver.
class CommandOutbox {
 public:
  // `head_at_start`: our last command number towards it as the store had it at start.
  CommandOutbox(std::string receiver, std::uint64_t head_at_start, Duration heartbeat, Time now);

  // New commands go out after commit only once the receiver's first heartbeat has been
  // checked (heartbeat()); until then they wait in the outbox and resend sends them.
  bool may_send() const { return checked_; }
  // A heartbeat of the receiver with its ack of our commands, if it has one. Returns the
  // number up to which the outbox may forget commands, when the ack moved.
  std::optional<std::uint64_t> heartbeat(std::optional<std::uint64_t> ack, bool durable, Time now, Effects& fx);
  // Whether the unacknowledged commands are to be sent again now: acks have not moved
  // for two heartbeats (not "nothing sent lately", which steady traffic would postpone).
  bool resend_due(Time now) const { return now - last_progress_ >= heartbeat_ * 2; }
  void resent(Time now) { last_progress_ = now; }

  std::uint64_t acked() const { return acked_; }
  const std::string& receiver() const { return receiver_; }
  // A unit of work that is rolled back rewinds the ack it moved.
  std::uint64_t mark() const { return acked_; }
  void rewind(std::uint64_t acked) { acked_ = acked; }

 private:
  std::string receiver_;
  std::uint64_t head_at_start_ = 0;
  Duration heartbeat_;
  std::uint64_t acked_ = 0;
  bool checked_ = false;
  Time last_progress_{};
};

}  // namespace troupe::core
