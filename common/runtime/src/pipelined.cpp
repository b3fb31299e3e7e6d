// The pipelined commit ([mesh] commit = "pipelined"): a batch is committed without its
// fsync, SyncThread makes the commits durable beside the next batches, and what they
// caused (the relay, the heads and acks heartbeats tell) is held here until a sync
// covers it. docs/guarantees.md, "Durability settings".
#include "node_core.hpp"

namespace troupe::detail {

void NodeCore::start_sync() {
  if (!topology_.defaults.pipelined_commit || sync_) return;
  syncer_ = store_->defer_sync();
  if (!syncer_) return;
  durable_head_ = store_->head();  // what the store had at open is on disk
  durable_acks_ = command_inbox_.acks();
  sync_ = std::make_unique<SyncThread>(*syncer_, sync_fd_, syncer_->written());
}

void NodeCore::hold_until_synced() {
  // Held until durable: the batch's own writes, or those it read (a query answered
  // from a commit not yet synced tells of it too).
  const auto written = syncer_->written();
  sync_->request(written);
  if (held_.empty() || held_.back().written != written) held_.push_back({written, {}, 0, std::nullopt});
  auto& held = held_.back();
  for (auto& out : batch_out_) held.out.push_back(std::move(out));
  batch_out_.clear();
  held.head = store_->head();
  if (acks_moved_) held.acks = command_inbox_.acks();
  acks_moved_ = false;
  release_synced();
}

void NodeCore::release_synced() {
  for (auto us : sync_->take_durations()) {
    metrics_.store_sync_us.add(us);
    metrics_.store_syncs.fetch_add(1, std::memory_order_relaxed);
  }
  if (auto error = sync_->error())
    throw ports::StoreError("LOSS risk: the store's commits cannot be made durable (" + *error +
                            "); stopping without sending what they caused (" + std::to_string(held_.size()) +
                            " batches held): look at the disk before restarting it; peers resend what it "
                            "never acknowledged");
  const auto synced = sync_->synced();
  while (!held_.empty() && held_.front().written <= synced) {
    auto& held = held_.front();
    send_now(held.out);
    durable_head_ = held.head;
    if (held.acks) durable_acks_ = std::move(*held.acks);
    held_.pop_front();
  }
}

void NodeCore::await_durable() {
  if (!sync_) return;
  sync_->wait(syncer_->written());
  release_synced();
}

}  // namespace troupe::detail
