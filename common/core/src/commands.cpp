#include <troupe/core/commands.hpp>
#include <troupe/core/mutation.hpp>

#include <algorithm>

namespace troupe::core {

void CommandInbox::restore(const std::string& sender, std::uint64_t position) {
  pending_[sender] = position;
  committed_[sender] = position;
}

CommandInbox::Verdict CommandInbox::offer(std::string_view sender, std::uint64_t sequence) {
  auto it = pending_.find(sender);
  if (it == pending_.end()) it = pending_.emplace(std::string(sender), 0).first;
  if (sequence <= it->second && !mutant(Mutation::drop_command_dedup)) return Verdict::duplicate;
  if (sequence > it->second + 1) return Verdict::out_of_order;
  it->second = std::max(it->second, sequence);
  return Verdict::apply;
}

std::vector<std::pair<std::string, std::uint64_t>> CommandInbox::moved() const {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (const auto& [sender, position] : pending_) {
    auto it = committed_.find(sender);
    if (it == committed_.end() || it->second != position) out.emplace_back(sender, position);
  }
  return out;
}

const std::map<std::string, std::uint64_t, std::less<>>& CommandInbox::acks() const {
  return mutant(Mutation::ack_before_commit) ? pending_ : committed_;
}

CommandOutbox::CommandOutbox(std::string receiver, std::uint64_t head_at_start, Duration heartbeat, Time now)
    : receiver_(std::move(receiver)), head_at_start_(head_at_start), heartbeat_(heartbeat), last_progress_(now) {}

std::optional<std::uint64_t> CommandOutbox::heartbeat(std::optional<std::uint64_t> ack, bool durable, Time now,
                                                      Effects& fx) {
  if (!checked_) {
    checked_ = true;
    // Its first heartbeat since we started. Commands numbered past our head at start
    // were held back until now, so an ack beyond that head means it applied commands of
    // ours that our store no longer has: committed, sent, and lost here (a lost WAL
    // tail); the numbers handed out again are ones it takes for duplicates.
    const std::uint64_t acked = ack.value_or(0);
    if (acked > head_at_start_ && durable) {
      fx.report(Report::Level::error,
                "LOSS: " + receiver_ + " applied our commands up to #" + std::to_string(acked) +
                    ", but this service's store ends at #" + std::to_string(head_at_start_) + ": commands #" +
                    std::to_string(head_at_start_ + 1) + "..#" + std::to_string(acked) +
                    " were lost here after they were sent (a lost WAL tail?), and new commands with those "
                    "numbers will be dropped by " + receiver_ + " as duplicates");
      fx.loss = Loss::commands_lost_here;
      fx.health_changed = true;
    }
    last_progress_ = Time{};  // what was held back goes at the next resend
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
