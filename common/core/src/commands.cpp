#include <troupe/core/commands.hpp>
#include <troupe/core/mutation.hpp>

#include <algorithm>
#include <cstdlib>

namespace troupe::core {

void CommandInbox::restore(const std::string& sender, std::uint64_t position, std::string_view epochs) {
  Sender st;
  st.position = position;
  std::string rest(epochs);
  for (std::size_t at = 0; at < rest.size();) {
    std::size_t end = rest.find(' ', at);
    if (end == std::string::npos) end = rest.size();
    std::string item = rest.substr(at, end - at);
    auto colon = item.find(':');
    if (colon != std::string::npos)
      st.epochs.emplace_back(std::strtoull(item.c_str(), nullptr, 10), std::strtoull(item.c_str() + colon + 1, nullptr, 10));
    at = end + 1;
  }
  pending_[sender] = st;
  committed_[sender] = st;
}

std::string CommandInbox::record(const Sender& s) {
  std::string out;
  for (const auto& [first, epoch] : s.epochs)
    out += (out.empty() ? "" : " ") + std::to_string(first) + ":" + std::to_string(epoch);
  return out;
}

CommandInbox::Verdict CommandInbox::offer(std::string_view sender, std::uint64_t sequence, std::uint64_t epoch,
                                          Effects& fx) {
  auto it = pending_.find(sender);
  if (it == pending_.end()) it = pending_.emplace(std::string(sender), Sender{}).first;
  Sender& st = it->second;
  if (sequence <= st.position && !mutant(Mutation::drop_command_dedup)) {
    // The epoch our command of that number was written under, if we still know it.
    std::uint64_t ours = 0;
    for (const auto& [first, e] : st.epochs)
      if (first <= sequence) ours = e;
    if (epoch != 0 && ours != 0 && epoch != ours && epoch != st.rewritten) {
      st.rewritten = epoch;
      fx.report(Report::Level::error,
                "LOSS: " + std::string(sender) + " sent command #" + std::to_string(sequence) +
                    " again as another command (it was applied here from an earlier opening of its store): " +
                    std::string(sender) + " lost commands after sending them (a lost WAL tail?); its commands "
                    "numbered up to #" + std::to_string(st.position) + " are dropped here as duplicates");
      fx.loss = Loss::commands_rewritten;
      fx.health_changed = true;
    }
    return Verdict::duplicate;
  }
  if (sequence > st.position + 1) return Verdict::out_of_order;
  st.position = std::max(st.position, sequence);
  if (epoch != 0 && (st.epochs.empty() || st.epochs.back().second != epoch)) {
    st.epochs.emplace_back(sequence, epoch);
    if (st.epochs.size() > 8) st.epochs.erase(st.epochs.begin());
  }
  return Verdict::apply;
}

std::vector<CommandInbox::Moved> CommandInbox::moved() const {
  std::vector<Moved> out;
  for (const auto& [sender, st] : pending_) {
    auto it = committed_.find(sender);
    if (it != committed_.end() && it->second == st) continue;
    Moved m{sender, st.position, std::nullopt};
    if (it == committed_.end() || it->second.epochs != st.epochs) m.epochs = record(st);
    out.push_back(std::move(m));
  }
  return out;
}

std::map<std::string, std::uint64_t, std::less<>> CommandInbox::acks() const {
  std::map<std::string, std::uint64_t, std::less<>> out;
  for (const auto& [sender, st] : mutant(Mutation::ack_before_commit) ? pending_ : committed_)
    out.emplace(sender, st.position);
  return out;
}

CommandOutbox::CommandOutbox(std::string receiver, std::uint64_t head_at_start, std::uint64_t acked,
                             std::string incarnation, Duration heartbeat, Time now)
    : receiver_(std::move(receiver)),
      incarnation_(std::move(incarnation)),
      head_at_start_(head_at_start),
      heartbeat_(heartbeat),
      acked_(acked),
      sent_through_(head_at_start),
      last_progress_(now) {}

void CommandOutbox::sent(std::uint64_t sequence) {
  if (sequence <= sent_through_) return;
  if (sequence > sent_through_ + 1) {
    sent_after_.insert(sequence);
    if (sent_after_.size() > (1u << 16)) {  // never expected; bounded all the same
      sent_through_ = *sent_after_.rbegin();
      sent_after_.clear();
    }
    return;
  }
  ++sent_through_;
  while (!sent_after_.empty() && *sent_after_.begin() <= sent_through_ + 1) {
    sent_through_ = std::max(sent_through_, *sent_after_.begin());
    sent_after_.erase(sent_after_.begin());
  }
}

std::optional<std::uint64_t> CommandOutbox::heartbeat(std::optional<std::uint64_t> ack, const std::string& incarnation,
                                                      bool receiver_durable, std::uint64_t head, bool durable, Time now,
                                                      Effects& fx) {
  if (!incarnation.empty() && incarnation != incarnation_) {
    // Another store than the one that acknowledged our commands: what it had applied is
    // gone with the old one (a replaced store no longer lists our ack at all).
    if (!incarnation_.empty() && acked_ > 0) {
      const std::string what = "LOSS: " + receiver_ + "'s store was replaced (incarnation " + incarnation +
                               ", was " + incarnation_ + "): the commands #1..#" + std::to_string(acked_) +
                               " of ours it had applied are gone with it; they are not resent";
      if (receiver_durable && durable) {
        fx.report(Report::Level::error, what);
        fx.loss = Loss::commands_lost_there;
        fx.health_changed = true;
      } else {
        fx.report(Report::Level::warn, "memory mode: " + what.substr(6));
      }
    }
    incarnation_ = incarnation;
    acked_ = 0;
    fx.save_identity = true;
  }
  if (!checked_) {
    checked_ = true;
    last_progress_ = Time{};  // what was held back goes at the next resend
  }
  // An ack beyond every command this service may ever have sent it: it applied commands
  // of ours that our store no longer has (committed, sent, then lost here: a lost WAL
  // tail), and the ones we write under those numbers are taken for applied. Commands
  // numbered past the head at start are held back until its first heartbeat, so that
  // one tells at once; an old command reaching it later tells whenever its ack comes.
  if (ack && *ack > sent_through_ && durable && !lost_reported_) {
    lost_reported_ = true;
    fx.report(Report::Level::error,
              "LOSS: " + receiver_ + " applied our commands up to #" + std::to_string(*ack) +
                  ", but this service sent it no more than #" + std::to_string(sent_through_) + " (its store ends at #" +
                  std::to_string(head) + "): commands #" + std::to_string(sent_through_ + 1) + "..#" +
                  std::to_string(*ack) + " were lost here after they were sent (a lost WAL tail?), and new commands "
                  "with those numbers are taken for applied by " + receiver_);
    fx.loss = Loss::commands_lost_here;
    fx.health_changed = true;
  }
  if (ack && *ack > acked_) {
    acked_ = *ack;
    last_progress_ = now;
    return acked_;
  }
  if (ack && *ack < acked_) {
    fx.report(Report::Level::error, "LOSS: " + receiver_ + " acknowledges our commands only up to #" +
                                        std::to_string(*ack) + " after #" + std::to_string(acked_) +
                                        ": it lost applied commands (its store was replaced?); they are not resent");
    acked_ = *ack;
    fx.loss = Loss::commands_lost_there;
    fx.health_changed = true;
  }
  return std::nullopt;
}

}  // namespace troupe::core
