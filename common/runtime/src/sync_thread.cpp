#include "sync_thread.hpp"

#include <unistd.h>

namespace troupe::detail {

SyncThread::SyncThread(ports::Syncer& syncer, int wake_fd, std::uint64_t durable)
    : syncer_(syncer), wake_fd_(wake_fd), requested_(durable), synced_(durable), thread_([this] { loop(); }) {}

SyncThread::~SyncThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void SyncThread::request(std::uint64_t written) {
  {
    std::lock_guard lock(mutex_);
    if (written <= requested_) return;
    requested_ = written;
  }
  changed_.notify_all();
}

std::uint64_t SyncThread::synced() const {
  std::lock_guard lock(mutex_);
  return synced_;
}

void SyncThread::wait(std::uint64_t written) {
  request(written);
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return synced_ >= written || error_ || stopping_; });
}

std::optional<std::string> SyncThread::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

std::vector<std::uint64_t> SyncThread::take_durations() {
  std::lock_guard lock(mutex_);
  std::vector<std::uint64_t> out;
  out.swap(durations_);
  return out;
}

void SyncThread::loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || (requested_ > synced_ && !error_); });
    // A sync asked for before the stop is still made: the node waits for it.
    if (error_ || requested_ <= synced_) return;
    const auto target = requested_;
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    std::optional<std::string> failed;
    try {
      syncer_.sync();
    } catch (const std::exception& e) {
      failed = e.what();
    }
    const auto took =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    if (failed) {
      error_ = std::move(failed);
    } else {
      synced_ = target;
      if (durations_.size() < 4096) durations_.push_back(static_cast<std::uint64_t>(took));
    }
    changed_.notify_all();
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
}

}  // namespace troupe::detail
