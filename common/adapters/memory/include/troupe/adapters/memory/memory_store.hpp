// MemoryStore: the Store port in process memory. Memory mode uses it (at-most-once
// across restarts, with a bounded in-memory outbox still serving replays), and it is
// the test double for units of logic. Units of work and savepoints really roll back.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <troupe/ports/store.hpp>

namespace troupe::adapters {

class MemoryStore final : public ports::Store {
 public:
  MemoryStore();

  std::optional<std::string> get(std::string_view table, std::string_view key) override;
  void put(std::string_view table, std::string_view key, std::string_view value) override;
  void erase(std::string_view table, std::string_view key) override;
  void scan(std::string_view table,
            const std::function<bool(std::string_view, std::string_view)>& visit) override;
  void scan_after(std::string_view table, std::string_view after_key,
                  const std::function<bool(std::string_view, std::string_view)>& visit) override;

  void begin() override;
  void savepoint() override;
  void release() override;
  void rollback_to() override;
  void commit() override;
  void rollback() noexcept override;

  std::string incarnation() const override { return incarnation_; }
  bool durable() const override { return false; }

  std::uint64_t epoch() override { return epoch_; }
  std::uint64_t epoch_of(std::uint64_t sequence) override;

  std::uint64_t head() override { return head_; }
  std::uint64_t oldest() override;
  void append_event(const ports::OutboxEvent& event) override;
  std::vector<ports::OutboxEvent> events(std::uint64_t from, std::uint64_t to, std::size_t max) override;
  std::vector<ports::OutboxEvent> events_of(std::string_view correlationid, std::size_t max) override;
  std::size_t prune_events(std::size_t keep) override;

  std::uint64_t position(std::string_view stream) override;
  void set_position(std::string_view stream, std::uint64_t sequence) override;

  bool seen(std::string_view message_id) override;
  void mark_seen(std::string_view message_id) override;
  void set_refusal(std::string_view message_id, std::string_view reason) override;
  std::optional<std::string> refusal(std::string_view message_id) override;
  std::size_t prune_seen(std::size_t keep, std::size_t slack) override;

  std::uint64_t command_head(std::string_view target) override;
  void append_command(const ports::OutboxCommand& command) override;
  std::vector<ports::OutboxCommand> unacked_commands(std::string_view target, std::size_t max) override;
  void ack_commands(std::string_view target, std::uint64_t up_to) override;

  std::int64_t add_dead_letter(const ports::DeadLetter& letter) override;
  std::vector<ports::DeadLetter> dead_letters(std::size_t max) override;
  std::optional<ports::DeadLetter> dead_letter(std::int64_t id) override;
  void remove_dead_letter(std::int64_t id) override;
  std::uint64_t dead_letter_count() override { return letters_.size(); }
  ports::DeadLetterTotals dead_letter_totals() override { return {letters_.size(), letter_bytes_}; }
  std::size_t evict_dead_letters(std::uint64_t max_count, std::uint64_t max_bytes) override;

 private:
  void undo(std::function<void()> f);
  void erase_letter(std::map<std::int64_t, ports::DeadLetter>::iterator it);
  static std::uint64_t size_of(const ports::DeadLetter& letter);

  std::string incarnation_;
  std::uint64_t epoch_ = 0;
  struct EpochRecord {
    std::uint64_t first_seq;
    std::uint64_t epoch;
  };
  std::vector<EpochRecord> epochs_;  // oldest first; first_seq never decreases
  std::map<std::string, std::map<std::string, std::string, std::less<>>, std::less<>> tables_;
  std::deque<ports::OutboxEvent> outbox_;
  std::uint64_t head_ = 0;
  std::map<std::string, std::uint64_t, std::less<>> positions_;
  std::set<std::string, std::less<>> seen_;
  std::deque<std::string> seen_order_;  // the same ids, oldest first
  std::map<std::string, std::string, std::less<>> refusals_;  // of seen ids
  std::map<std::string, std::deque<ports::OutboxCommand>, std::less<>> commands_;
  std::map<std::string, std::uint64_t, std::less<>> command_heads_;
  std::map<std::int64_t, ports::DeadLetter> letters_;
  std::map<std::string, std::int64_t, std::less<>> letter_of_message_;
  std::uint64_t letter_bytes_ = 0;
  std::int64_t next_letter_ = 1;

  bool in_unit_ = false;
  std::vector<std::function<void()>> undo_;  // newest last
  std::vector<std::size_t> savepoints_;
};

}  // namespace troupe::adapters
