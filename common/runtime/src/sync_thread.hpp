// SyncThread: pipelined group commit. The node commits a batch without waiting for the
// disk and goes on with the next one; this thread fsyncs (ports::Syncer) what has been
// committed, one sync covering every batch committed before it started, and wakes the
// node (an eventfd in its poll set) to send what those batches caused. So the batches
// grow with the disk's latency instead of waiting on it. Internal.
#pragma once

#include <troupe/ports/store.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace troupe::detail {

class SyncThread {
 public:
  // `wake_fd`: an eventfd written each time a sync completes (or fails); `durable`: the
  // Syncer::written() count already on disk.
  SyncThread(ports::Syncer& syncer, int wake_fd, std::uint64_t durable);
  ~SyncThread();  // stops and joins (a sync in progress completes first)
  SyncThread(const SyncThread&) = delete;
  SyncThread& operator=(const SyncThread&) = delete;

  // Asks for everything up to `written` (Syncer::written()) to be made durable.
  void request(std::uint64_t written);
  // Durable up to here (a count of Syncer::written()).
  std::uint64_t synced() const;
  // Blocks until synced() >= written or a sync failed.
  void wait(std::uint64_t written);
  // Why the last sync failed; then no sync is tried again (after a failed fsync the
  // kernel may have dropped the pages it could not write: a later success proves nothing).
  std::optional<std::string> error() const;
  // The durations of the syncs completed since the last call (microseconds).
  std::vector<std::uint64_t> take_durations();

 private:
  void loop();

  ports::Syncer& syncer_;
  const int wake_fd_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t requested_ = 0, synced_ = 0;
  std::optional<std::string> error_;
  std::vector<std::uint64_t> durations_;
  bool stopping_ = false;
  std::thread thread_;  // last: started once the rest is set
};

}  // namespace troupe::detail
