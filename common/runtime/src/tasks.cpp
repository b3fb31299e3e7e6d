// Tasks: the service's own work that answers no message — timers (node.every,
// node.after) and tasks posted from other threads (node.post). Each runs on the node's
// thread inside the batch's unit of work, in a savepoint of its own, like a handler.
#include "node_core.hpp"

#include <troupe/domain/id.hpp>

#include <unistd.h>

namespace troupe::detail {

void NodeCore::add_timer(Clock::duration first, Clock::duration period, Task task) {
  // Before run() a timer counts from the start of run(), which sets `next` then.
  timers_.push_back({running_ ? Clock::now() + first : Clock::time_point{} + first, period, std::move(task)});
}

void NodeCore::post(Task task) {
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(task));
    has_posted_.store(true);
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(post_fd_, &one, sizeof one);
}

Clock::time_point NodeCore::next_timer() const {
  auto next = Clock::time_point::max();
  for (const auto& t : timers_) next = std::min(next, t.next);
  return next;
}

// Moves what is due into the batch: posted tasks (all of them, in order) and timers
// whose time has come (once each, however late: a tick missed is not run twice).
void NodeCore::take_tasks(std::vector<Incoming>& batch, Clock::time_point now, bool woken) {
  if (woken) {
    std::uint64_t n = 0;
    [[maybe_unused]] auto r = ::read(post_fd_, &n, sizeof n);
  }
  if (has_posted_.load()) {
    std::lock_guard lock(posted_mutex_);
    has_posted_.store(false);
    for (auto& t : posted_) {
      Incoming in{Incoming::From::task, nullptr, {}};
      in.task = std::move(t);
      in.posted = true;
      batch.push_back(std::move(in));
    }
    posted_.clear();
  }
  for (std::size_t i = 0; i < timers_.size();) {
    Timer& t = timers_[i];
    if (t.next > now) {
      ++i;
      continue;
    }
    Incoming in{Incoming::From::task, nullptr, {}};
    in.task = t.task;
    batch.push_back(std::move(in));
    if (t.period == Clock::duration::zero()) {
      timers_.erase(timers_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    t.next = std::max(t.next + t.period, now);
    ++i;
  }
}

void NodeCore::run_task(Incoming& in) {
  // What the task emits names this as its cause: one id per run.
  Envelope cause = make_envelope(name_, in.posted ? "$post" : "$timer", Kind::event);
  store_->savepoint();
  message_out_.clear();
  Context ctx(*this, cause, *store_);
  try {
    in.task(ctx);
  } catch (const ports::StoreError&) {
    throw;
  } catch (const std::exception& e) {
    store_->rollback_to();
    store_->release();
    message_out_.clear();
    ++metrics_.tasks_failed;
    log_->error("a {} task failed, nothing of it kept: {}", in.posted ? "posted" : "timer", e.what());
    return;
  }
  store_->release();
  for (auto& o : message_out_) batch_out_.push_back(std::move(o));
  message_out_.clear();
}

}  // namespace troupe::detail
