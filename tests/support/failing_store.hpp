// A store whose commits can be made to fail, over a real store: for node tests of what
// happens when writes fail (a full disk, a broken file) without needing root for a
// tmpfs; and whose pipelined syncs (defer_sync) can be held back or made to fail.
// Everything else is passed through unchanged.
#pragma once

#include <troupe/ports/store.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

namespace testmesh {

class FailingStore final : public troupe::ports::Store {
 public:
  explicit FailingStore(std::shared_ptr<troupe::ports::Store> inner) : inner_(std::move(inner)) {}

  std::atomic<bool> fail_commits{false};
  std::atomic<int> failed{0};  // commits refused so far
  std::atomic<int> probes{0};  // the node's own write probes ("$troupe" state) seen
  std::atomic<int> commits{0};  // commits done
  // Syncs of a pipelined commit: held (each waits while set), or refused like an
  // fdatasync that failed; counted as they start and as they end.
  std::atomic<bool> hold_syncs{false}, fail_syncs{false};
  std::atomic<int> syncs_started{0}, syncs_done{0};

  std::optional<std::string> get(std::string_view t, std::string_view k) override { return inner_->get(t, k); }
  void put(std::string_view t, std::string_view k, std::string_view v) override {
    if (t == "$troupe") ++probes;
    inner_->put(t, k, v);
  }
  void erase(std::string_view t, std::string_view k) override { inner_->erase(t, k); }
  void scan(std::string_view t, const std::function<bool(std::string_view, std::string_view)>& visit) override {
    inner_->scan(t, visit);
  }
  void scan_after(std::string_view t, std::string_view after,
                  const std::function<bool(std::string_view, std::string_view)>& visit) override {
    inner_->scan_after(t, after, visit);
  }
  void begin() override { inner_->begin(); }
  void savepoint() override { inner_->savepoint(); }
  void release() override { inner_->release(); }
  void rollback_to() override { inner_->rollback_to(); }
  void commit() override {
    if (fail_commits.load()) {
      ++failed;
      throw troupe::ports::StoreError("failing store: database or disk is full");
    }
    inner_->commit();
    ++commits;
  }
  void rollback() noexcept override { inner_->rollback(); }
  std::string incarnation() const override { return inner_->incarnation(); }
  bool durable() const override { return inner_->durable(); }
  troupe::ports::Syncer* defer_sync() override {
    auto* inner = inner_->defer_sync();
    if (!inner) return nullptr;
    syncer_.inner = inner;
    return &syncer_;
  }
  std::uint64_t epoch() override { return inner_->epoch(); }
  std::uint64_t epoch_of(std::uint64_t sequence) override { return inner_->epoch_of(sequence); }
  std::uint64_t head() override { return inner_->head(); }
  std::uint64_t oldest() override { return inner_->oldest(); }
  void append_event(const troupe::ports::OutboxEvent& e) override { inner_->append_event(e); }
  std::vector<troupe::ports::OutboxEvent> events(std::uint64_t from, std::uint64_t to, std::size_t max) override {
    return inner_->events(from, to, max);
  }
  std::vector<troupe::ports::OutboxEvent> events_of(std::string_view c, std::size_t max) override {
    return inner_->events_of(c, max);
  }
  std::size_t prune_events(std::size_t keep) override { return inner_->prune_events(keep); }
  std::uint64_t position(std::string_view s) override { return inner_->position(s); }
  void set_position(std::string_view s, std::uint64_t q) override { inner_->set_position(s, q); }
  bool seen(std::string_view id) override { return inner_->seen(id); }
  void mark_seen(std::string_view id) override { inner_->mark_seen(id); }
  void set_refusal(std::string_view id, std::string_view reason) override { inner_->set_refusal(id, reason); }
  std::optional<std::string> refusal(std::string_view id) override { return inner_->refusal(id); }
  std::size_t prune_seen(std::size_t keep, std::size_t slack) override {
    return inner_->prune_seen(keep, slack);
  }
  std::uint64_t command_head(std::string_view t) override { return inner_->command_head(t); }
  void append_command(const troupe::ports::OutboxCommand& c) override { inner_->append_command(c); }
  std::vector<troupe::ports::OutboxCommand> unacked_commands(std::string_view t, std::size_t max) override {
    return inner_->unacked_commands(t, max);
  }
  void ack_commands(std::string_view t, std::uint64_t up_to) override { inner_->ack_commands(t, up_to); }
  std::int64_t add_dead_letter(const troupe::ports::DeadLetter& l) override { return inner_->add_dead_letter(l); }
  std::vector<troupe::ports::DeadLetter> dead_letters(std::size_t max) override { return inner_->dead_letters(max); }
  std::optional<troupe::ports::DeadLetter> dead_letter(std::int64_t id) override { return inner_->dead_letter(id); }
  void remove_dead_letter(std::int64_t id) override { inner_->remove_dead_letter(id); }
  std::uint64_t dead_letter_count() override { return inner_->dead_letter_count(); }
  troupe::ports::DeadLetterTotals dead_letter_totals() override { return inner_->dead_letter_totals(); }
  std::size_t evict_dead_letters(std::uint64_t max_count, std::uint64_t max_bytes) override {
    return inner_->evict_dead_letters(max_count, max_bytes);
  }

 private:
  struct GatedSyncer final : troupe::ports::Syncer {
    FailingStore& store;
    troupe::ports::Syncer* inner = nullptr;
    explicit GatedSyncer(FailingStore& s) : store(s) {}
    std::uint64_t written() override { return inner->written(); }
    void sync() override {
      ++store.syncs_started;
      while (store.hold_syncs.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (store.fail_syncs.load()) throw troupe::ports::StoreError("failing store: fdatasync: Input/output error");
      inner->sync();
      ++store.syncs_done;
    }
  };
  std::shared_ptr<troupe::ports::Store> inner_;
  GatedSyncer syncer_{*this};
};

}  // namespace testmesh
