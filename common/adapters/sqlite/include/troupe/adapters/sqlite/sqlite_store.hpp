// SqliteStore: the Store port on one SQLite file per service instance (WAL mode).
// troupe's tables (troupe_*) sit beside the service's own state table; a unit of work
// is one SQLite transaction, a message inside it one savepoint. synchronous=FULL by
// default (durable against power loss; the fsync may be left to a Syncer, see
// defer_sync()); NORMAL trades the last commits on power loss
// (never on a process crash) for fewer fsyncs — see docs/guarantees.md.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <troupe/domain/topology.hpp>
#include <troupe/ports/store.hpp>

struct sqlite3;
struct sqlite3_stmt;

namespace troupe::adapters {

class SqliteStore final : public ports::Store {
 public:
  // Opens (creating if needed, mode 0600) the database at `path`, checks it (PRAGMA
  // quick_check) and starts a new epoch. Throws StoreError naming the file when it cannot
  // be created or opened (with the system's reason), is damaged, or its schema is from a
  // newer troupe.
  explicit SqliteStore(const std::string& path, Synchronous synchronous = Synchronous::full);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // 2: troupe_seen_ids, numbered; 3: troupe_epochs, dead letters merged by message id
  // and counted (troupe_dead_letter_totals)
  static constexpr int kSchemaVersion = 3;

  // One value of a store's state, read without opening it as a store (read-only, no
  // epoch, no check): for tools that look at a stopped or running node's file. nullopt
  // when the file, its table or the key is not there.
  static std::optional<std::string> peek(const std::string& path, std::string_view table, std::string_view key);

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
  bool durable() const override { return true; }
  // With Synchronous::full: commits from now on are not fsynced by SQLite
  // (synchronous=NORMAL); the Syncer fdatasyncs the WAL file. With normal: nullptr.
  ports::Syncer* defer_sync() override;

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
  void set_refusal(std::string_view id, std::string_view reason) override;
  std::optional<std::string> refusal(std::string_view id) override;
  std::size_t prune_seen(std::size_t keep, std::size_t slack) override;

  std::uint64_t command_head(std::string_view target) override;
  void append_command(const ports::OutboxCommand& command) override;
  std::vector<ports::OutboxCommand> unacked_commands(std::string_view target, std::size_t max) override;
  void ack_commands(std::string_view target, std::uint64_t up_to) override;

  std::int64_t add_dead_letter(const ports::DeadLetter& letter) override;
  std::vector<ports::DeadLetter> dead_letters(std::size_t max) override;
  std::optional<ports::DeadLetter> dead_letter(std::int64_t id) override;
  void remove_dead_letter(std::int64_t id) override;
  std::uint64_t dead_letter_count() override;
  ports::DeadLetterTotals dead_letter_totals() override;
  std::size_t evict_dead_letters(std::uint64_t max_count, std::uint64_t max_bytes) override;

  const std::string& path() const { return path_; }

 private:
  class Statement;
  Statement& stmt(int which);
  void exec(const char* sql);
  bool table_exists(const char* name);
  bool column_exists(const char* table, const char* column);
  void open_file();
  void check_integrity();
  void migrate();
  void start_epoch();
  void prune_epochs();
  // The two integer columns of a one-row statement's row (0 for NULL).
  std::pair<std::int64_t, std::int64_t> two_ints(int which);
  [[noreturn]] void fail(const std::string& what) const;

  class WalSyncer;

  std::string path_;
  Synchronous synchronous_;
  std::unique_ptr<WalSyncer> syncer_;
  sqlite3* db_ = nullptr;
  std::vector<std::unique_ptr<Statement>> statements_;
  std::string incarnation_;
  std::uint64_t epoch_ = 0;
  std::uint64_t head_ = 0;
  std::uint64_t committed_head_ = 0;
  std::vector<std::uint64_t> savepoint_heads_;
  bool in_unit_ = false;
};

}  // namespace troupe::adapters
