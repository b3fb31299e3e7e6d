// SqliteStore: prepared statements over one WAL database; savepoints per message.
#include <troupe/adapters/sqlite/sqlite_store.hpp>
#include <troupe/domain/envelope.hpp>
#include <troupe/domain/id.hpp>

#include <sqlite3.h>

namespace troupe::adapters {

class SqliteStore::Statement {
 public:
  Statement(SqliteStore& store, const char* sql) : store_(store) {
    if (sqlite3_prepare_v3(store.db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) != SQLITE_OK)
      store.fail(std::string("preparing \"") + sql + "\"");
  }
  ~Statement() { sqlite3_finalize(s_); }

  // Text and blobs are bound without a copy (SQLITE_STATIC): every statement is bound
  // and stepped within one call, while the caller's data lives, and reset() clears the
  // bindings. Copying them cost a fifth of an outbox append (docs/performance.md).
  Statement& bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& blob(int i, std::string_view v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Statement& bind(int i, std::uint64_t v) { return bind(i, static_cast<std::int64_t>(v)); }

  // Steps once: true if a row is available.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string sql = sqlite3_sql(s_);
    reset();
    store_.fail("running \"" + sql + "\"");
  }
  void run() {
    step();
    reset();
  }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  std::int64_t i64(int col) { return sqlite3_column_int64(s_, col); }
  std::string text(int col) {
    auto p = static_cast<const char*>(sqlite3_column_blob(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
  }

 private:
  SqliteStore& store_;
  sqlite3_stmt* s_ = nullptr;
};

namespace {

enum Stmt {
  kGet, kPut, kErase, kScan,
  kAppendEvent, kEvents, kOldest, kPrune, kCountEvents, kEventsOf,
  kPosition, kSetPosition, kSeen, kMarkSeen, kSeenRange, kPruneSeen,
  kAppendCommand, kUnacked, kAck,
  kAddLetter, kAddFrame, kLetters, kLetter, kFrames, kRemoveLetter, kRemoveFrames, kCountLetters,
  kSetMeta, kGetMeta, kSavepoint, kRelease, kRollbackTo,
  kCount
};

const char* const kSql[kCount] = {
    "SELECT value FROM state WHERE tbl = ?1 AND key = ?2",
    "INSERT INTO state(tbl, key, value) VALUES (?1, ?2, ?3) "
    "ON CONFLICT(tbl, key) DO UPDATE SET value = excluded.value",
    "DELETE FROM state WHERE tbl = ?1 AND key = ?2",
    "SELECT key, value FROM state WHERE tbl = ?1 ORDER BY key",
    "INSERT INTO troupe_outbox(seq, type, correlationid, causationid, envelope, payload) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    "SELECT seq, type, correlationid, causationid, envelope, payload FROM troupe_outbox "
    "WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    "SELECT min(seq) FROM troupe_outbox",
    "DELETE FROM troupe_outbox WHERE seq <= ?1",
    "SELECT count(*), max(seq) FROM troupe_outbox",
    "SELECT seq, type, correlationid, causationid, envelope, payload FROM troupe_outbox "
    "WHERE correlationid = ?1 ORDER BY seq LIMIT ?2",
    "SELECT position FROM troupe_inbox WHERE stream = ?1",
    "INSERT INTO troupe_inbox(stream, position) VALUES (?1, ?2) "
    "ON CONFLICT(stream) DO UPDATE SET position = excluded.position",
    "SELECT 1 FROM troupe_seen_ids WHERE id = ?1",
    "INSERT OR IGNORE INTO troupe_seen_ids(id) VALUES (?1)",
    "SELECT min(n), max(n) FROM troupe_seen_ids",
    "DELETE FROM troupe_seen_ids WHERE n <= ?1",
    "INSERT INTO troupe_commands(target, seq, type, envelope, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    "SELECT seq, type, envelope, payload FROM troupe_commands WHERE target = ?1 ORDER BY seq LIMIT ?2",
    "DELETE FROM troupe_commands WHERE target = ?1 AND seq <= ?2",
    "INSERT INTO troupe_dead_letters(time, endpoint, source, type, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
    "INSERT INTO troupe_dead_letter_frames(letter, idx, data) VALUES (?1, ?2, ?3)",
    "SELECT id, time, endpoint, source, type, reason FROM troupe_dead_letters ORDER BY id LIMIT ?1",
    "SELECT id, time, endpoint, source, type, reason FROM troupe_dead_letters WHERE id = ?1",
    "SELECT data FROM troupe_dead_letter_frames WHERE letter = ?1 ORDER BY idx",
    "DELETE FROM troupe_dead_letters WHERE id = ?1",
    "DELETE FROM troupe_dead_letter_frames WHERE letter = ?1",
    "SELECT count(*) FROM troupe_dead_letters",
    "INSERT INTO troupe_meta(key, value) VALUES (?1, ?2) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    "SELECT value FROM troupe_meta WHERE key = ?1",
    "SAVEPOINT message",
    "RELEASE message",
    "ROLLBACK TO message",
};

const char* const kSchema = R"sql(
CREATE TABLE IF NOT EXISTS troupe_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS troupe_outbox(
  seq INTEGER PRIMARY KEY, type TEXT NOT NULL, correlationid TEXT NOT NULL,
  causationid TEXT NOT NULL, envelope BLOB NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS troupe_outbox_correlation ON troupe_outbox(correlationid);
CREATE TABLE IF NOT EXISTS troupe_inbox(stream TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS troupe_seen_ids(n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS troupe_commands(
  target TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
  envelope BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY(target, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS troupe_dead_letters(
  id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, endpoint TEXT NOT NULL,
  source TEXT NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS troupe_dead_letter_frames(
  letter INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(letter, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state(tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY(tbl, key)) WITHOUT ROWID;
)sql";

}  // namespace

void SqliteStore::fail(const std::string& what) const {
  throw ports::StoreError(path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "cannot open"));
}

void SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw ports::StoreError(path_ + ": " + msg);
  }
}

// Reset on the way out too: a read loop left by an exception (bad_alloc) must not leave
// its statement mid-run and bound to memory that is gone.
SqliteStore::Statement& SqliteStore::stmt(int which) {
  auto& s = *statements_[which];
  s.reset();
  return s;
}

SqliteStore::SqliteStore(const std::string& path, Synchronous synchronous) : path_(path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw ports::StoreError(path + ": cannot open: " + msg);
  }
  sqlite3_busy_timeout(db_, 5000);
  try {
    exec("PRAGMA journal_mode=WAL");
    exec(synchronous == Synchronous::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    exec("BEGIN IMMEDIATE");
    exec(kSchema);
    // Schema 1 kept one-shot command ids in troupe_seen, without the order they came
    // in, so they could not be pruned: carry them over (in id order, the best there is).
    if (table_exists("troupe_seen"))
      exec("INSERT OR IGNORE INTO troupe_seen_ids(id) SELECT id FROM troupe_seen ORDER BY id; "
           "DROP TABLE troupe_seen;");
    for (int i = 0; i < kCount; ++i) statements_.push_back(std::make_unique<Statement>(*this, kSql[i]));

    auto meta = [&](const char* key) -> std::optional<std::string> {
      auto& s = stmt(kGetMeta).bind(1, std::string_view(key));
      std::optional<std::string> v;
      if (s.step()) v = s.text(0);
      s.reset();
      return v;
    };
    auto version = meta("schema_version");
    if (version && std::stoi(*version) > kSchemaVersion)
      throw ports::StoreError(path + ": schema version " + *version + " is newer than this troupe (" +
                              std::to_string(kSchemaVersion) + ")");
    stmt(kSetMeta).bind(1, std::string_view("schema_version")).bind(2, std::to_string(kSchemaVersion)).run();
    auto inc = meta("incarnation");
    incarnation_ = inc ? *inc : new_id();
    if (!inc) stmt(kSetMeta).bind(1, std::string_view("incarnation")).bind(2, incarnation_).run();
    auto head = meta("head");
    head_ = head ? std::stoull(*head) : 0;
    head_ = std::max<std::uint64_t>(head_, static_cast<std::uint64_t>(two_ints(kCountEvents).second));
    committed_head_ = head_;
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    statements_.clear();
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

SqliteStore::~SqliteStore() {
  if (in_unit_) rollback();
  statements_.clear();
  sqlite3_close(db_);
}

std::optional<std::string> SqliteStore::get(std::string_view table, std::string_view key) {
  auto& s = stmt(kGet).bind(1, table).bind(2, key);
  std::optional<std::string> v;
  if (s.step()) v = s.text(0);
  s.reset();
  return v;
}

void SqliteStore::put(std::string_view table, std::string_view key, std::string_view value) {
  stmt(kPut).bind(1, table).bind(2, key).blob(3, value).run();
}

void SqliteStore::erase(std::string_view table, std::string_view key) {
  stmt(kErase).bind(1, table).bind(2, key).run();
}

void SqliteStore::scan(std::string_view table,
                       const std::function<bool(std::string_view, std::string_view)>& visit) {
  auto& s = stmt(kScan).bind(1, table);
  // Collect first: the visitor may write to the same table.
  std::vector<std::pair<std::string, std::string>> rows;
  while (s.step()) rows.emplace_back(s.text(0), s.text(1));
  s.reset();
  for (const auto& [k, v] : rows)
    if (!visit(k, v)) return;
}

void SqliteStore::begin() {
  exec("BEGIN IMMEDIATE");
  in_unit_ = true;
  savepoint_heads_.clear();
}

void SqliteStore::savepoint() {
  stmt(kSavepoint).run();  // prepared once: a savepoint per message must be cheap
  savepoint_heads_.push_back(head_);
}

void SqliteStore::release() {
  stmt(kRelease).run();
  if (!savepoint_heads_.empty()) savepoint_heads_.pop_back();
}

void SqliteStore::rollback_to() {
  stmt(kRollbackTo).run();
  if (!savepoint_heads_.empty()) head_ = savepoint_heads_.back();
}

void SqliteStore::commit() {
  if (head_ != committed_head_)
    stmt(kSetMeta).bind(1, std::string_view("head")).bind(2, std::to_string(head_)).run();
  exec("COMMIT");
  in_unit_ = false;
  committed_head_ = head_;
}

void SqliteStore::rollback() noexcept {
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  in_unit_ = false;
  head_ = committed_head_;
  savepoint_heads_.clear();
}

std::uint64_t SqliteStore::oldest() {
  std::uint64_t v = head_ + 1;
  auto& c = stmt(kOldest);
  if (c.step()) {
    std::int64_t m = c.i64(0);
    if (m > 0) v = static_cast<std::uint64_t>(m);
  }
  c.reset();
  return v;
}

void SqliteStore::append_event(const ports::OutboxEvent& e) {
  stmt(kAppendEvent)
      .bind(1, e.sequence)
      .bind(2, e.type)
      .bind(3, e.correlationid)
      .bind(4, e.causationid)
      .blob(5, e.envelope)
      .blob(6, e.payload)
      .run();
  head_ = std::max(head_, e.sequence);
}

std::vector<ports::OutboxEvent> SqliteStore::events(std::uint64_t from, std::uint64_t to,
                                                    std::size_t max) {
  std::vector<ports::OutboxEvent> out;
  auto& s = stmt(kEvents).bind(1, from).bind(2, std::min<std::uint64_t>(to, INT64_MAX))
                .bind(3, static_cast<std::int64_t>(max));
  while (s.step())
    out.push_back({static_cast<std::uint64_t>(s.i64(0)), s.text(1), s.text(2), s.text(3), s.text(4),
                   s.text(5)});
  s.reset();
  return out;
}

std::vector<ports::OutboxEvent> SqliteStore::events_of(std::string_view correlationid, std::size_t max) {
  std::vector<ports::OutboxEvent> out;
  auto& s = stmt(kEventsOf).bind(1, correlationid).bind(2, static_cast<std::int64_t>(max));
  while (s.step())
    out.push_back({static_cast<std::uint64_t>(s.i64(0)), s.text(1), s.text(2), s.text(3), s.text(4),
                   s.text(5)});
  s.reset();
  return out;
}

std::pair<std::int64_t, std::int64_t> SqliteStore::two_ints(int which) {
  auto& c = stmt(which);
  std::pair<std::int64_t, std::int64_t> v{0, 0};  // NULL (an empty table) reads as 0
  if (c.step()) v = {c.i64(0), c.i64(1)};
  c.reset();
  return v;
}

std::size_t SqliteStore::prune_events(std::size_t keep) {
  auto [count, max] = two_ints(kCountEvents);
  if (count <= static_cast<std::int64_t>(keep)) return 0;
  // Sequences are contiguous: keep the newest `keep`.
  stmt(kPrune).bind(1, max - static_cast<std::int64_t>(keep)).run();
  return static_cast<std::size_t>(sqlite3_changes(db_));
}

bool SqliteStore::table_exists(const char* name) {
  sqlite3_stmt* q = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1, &q, nullptr) !=
      SQLITE_OK)
    fail("reading the schema");
  sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  bool found = sqlite3_step(q) == SQLITE_ROW;
  sqlite3_finalize(q);
  return found;
}

std::size_t SqliteStore::prune_seen(std::size_t keep, std::size_t slack) {
  auto [lo, hi] = two_ints(kSeenRange);
  // Ids are numbered as they come and only the oldest are ever deleted: hi - lo + 1
  // is the count, without counting.
  if (hi == 0 || hi - lo + 1 <= static_cast<std::int64_t>(keep + slack)) return 0;
  stmt(kPruneSeen).bind(1, hi - static_cast<std::int64_t>(keep)).run();
  return static_cast<std::size_t>(sqlite3_changes(db_));
}

std::uint64_t SqliteStore::position(std::string_view stream) {
  auto& s = stmt(kPosition).bind(1, stream);
  std::uint64_t v = 0;
  if (s.step()) v = static_cast<std::uint64_t>(s.i64(0));
  s.reset();
  return v;
}

void SqliteStore::set_position(std::string_view stream, std::uint64_t sequence) {
  stmt(kSetPosition).bind(1, stream).bind(2, sequence).run();
}

bool SqliteStore::seen(std::string_view id) {
  auto& s = stmt(kSeen).bind(1, id);
  bool found = s.step();
  s.reset();
  return found;
}

void SqliteStore::mark_seen(std::string_view id) { stmt(kMarkSeen).bind(1, id).run(); }

std::uint64_t SqliteStore::command_head(std::string_view target) {
  return position(std::string("out:") + std::string(target));
}

void SqliteStore::append_command(const ports::OutboxCommand& c) {
  stmt(kAppendCommand).bind(1, c.target).bind(2, c.sequence).bind(3, c.type).blob(4, c.envelope)
      .blob(5, c.payload).run();
  set_position(std::string("out:") + c.target, c.sequence);
}

std::vector<ports::OutboxCommand> SqliteStore::unacked_commands(std::string_view target,
                                                                std::size_t max) {
  std::vector<ports::OutboxCommand> out;
  auto& s = stmt(kUnacked).bind(1, target).bind(2, static_cast<std::int64_t>(max));
  while (s.step())
    out.push_back({std::string(target), static_cast<std::uint64_t>(s.i64(0)), s.text(1), s.text(2), s.text(3)});
  s.reset();
  return out;
}

void SqliteStore::ack_commands(std::string_view target, std::uint64_t up_to) {
  stmt(kAck).bind(1, target).bind(2, up_to).run();
}

std::int64_t SqliteStore::add_dead_letter(const ports::DeadLetter& l) {
  stmt(kAddLetter).bind(1, l.time).bind(2, l.endpoint).bind(3, l.source).bind(4, l.type)
      .bind(5, l.reason).run();
  std::int64_t id = sqlite3_last_insert_rowid(db_);
  for (std::size_t i = 0; i < l.frames.size(); ++i)
    stmt(kAddFrame).bind(1, id).bind(2, static_cast<std::int64_t>(i)).blob(3, l.frames[i]).run();
  return id;
}

std::vector<ports::DeadLetter> SqliteStore::dead_letters(std::size_t max) {
  std::vector<ports::DeadLetter> out;
  auto& s = stmt(kLetters).bind(1, static_cast<std::int64_t>(max));
  while (s.step()) out.push_back({s.i64(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), {}});
  s.reset();
  for (auto& l : out) {
    auto& f = stmt(kFrames).bind(1, l.id);
    while (f.step()) l.frames.push_back(f.text(0));
    f.reset();
  }
  return out;
}

std::optional<ports::DeadLetter> SqliteStore::dead_letter(std::int64_t id) {
  auto& s = stmt(kLetter).bind(1, id);
  std::optional<ports::DeadLetter> l;
  if (s.step()) l = ports::DeadLetter{s.i64(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), {}};
  s.reset();
  if (l) {
    auto& f = stmt(kFrames).bind(1, id);
    while (f.step()) l->frames.push_back(f.text(0));
    f.reset();
  }
  return l;
}

void SqliteStore::remove_dead_letter(std::int64_t id) {
  stmt(kRemoveLetter).bind(1, id).run();
  stmt(kRemoveFrames).bind(1, id).run();
}

std::uint64_t SqliteStore::dead_letter_count() {
  auto& s = stmt(kCountLetters);
  std::uint64_t n = 0;
  if (s.step()) n = static_cast<std::uint64_t>(s.i64(0));
  s.reset();
  return n;
}

}  // namespace troupe::adapters
