// SqliteStore: prepared statements over one WAL database; savepoints per message.
#include <troupe/adapters/sqlite/sqlite_store.hpp>
#include <troupe/domain/envelope.hpp>
#include <troupe/domain/id.hpp>

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <random>

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
  bool null(int col) { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
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
  kGet, kPut, kErase, kScan, kScanAfter,
  kAddEpoch, kEpochOf, kCountEpochs, kPruneEpochs,
  kAppendEvent, kEvents, kOldest, kPrune, kCountEvents, kEventsOf,
  kPosition, kSetPosition, kSeen, kMarkSeen, kSeenRange, kPruneSeen, kSetRefusal, kRefusal,
  kAppendCommand, kUnacked, kAck,
  kAddLetter, kAddFrame, kLetters, kLetter, kFrames, kRemoveLetter, kRemoveFrames,
  kLetterOfMessage, kMergeLetter, kLetterTotals, kOldestLetter,
  kSetMeta, kGetMeta, kSavepoint, kRelease, kRollbackTo,
  kCount
};

const char* const kSql[] = {
    "SELECT value FROM state WHERE tbl = ?1 AND key = ?2",
    "INSERT INTO state(tbl, key, value) VALUES (?1, ?2, ?3) "
    "ON CONFLICT(tbl, key) DO UPDATE SET value = excluded.value",
    "DELETE FROM state WHERE tbl = ?1 AND key = ?2",
    "SELECT key, value FROM state WHERE tbl = ?1 ORDER BY key",
    "SELECT key, value FROM state WHERE tbl = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
    "INSERT INTO troupe_epochs(first_seq, n, epoch) "
    "VALUES (?1, (SELECT coalesce(max(n), 0) + 1 FROM troupe_epochs), ?2)",
    "SELECT epoch FROM troupe_epochs WHERE first_seq <= ?1 ORDER BY first_seq DESC, n DESC LIMIT 1",
    "SELECT count(*), 0 FROM troupe_epochs",
    "DELETE FROM troupe_epochs WHERE (first_seq, n) < "
    "(SELECT first_seq, n FROM troupe_epochs WHERE first_seq <= ?1 ORDER BY first_seq DESC, n DESC LIMIT 1)",
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
    "UPDATE troupe_seen_ids SET refusal = nullif(?2, '') WHERE id = ?1",
    "SELECT refusal FROM troupe_seen_ids WHERE id = ?1",
    "INSERT INTO troupe_commands(target, seq, type, envelope, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    "SELECT seq, type, envelope, payload FROM troupe_commands WHERE target = ?1 ORDER BY seq LIMIT ?2",
    "DELETE FROM troupe_commands WHERE target = ?1 AND seq <= ?2",
    "INSERT INTO troupe_dead_letters(time, endpoint, source, type, reason, message_id, attempts, first_time, bytes) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?1, ?8)",
    "INSERT INTO troupe_dead_letter_frames(letter, idx, data) VALUES (?1, ?2, ?3)",
    "SELECT id, time, endpoint, source, type, reason, message_id, attempts, first_time "
    "FROM troupe_dead_letters ORDER BY id LIMIT ?1",
    "SELECT id, time, endpoint, source, type, reason, message_id, attempts, first_time "
    "FROM troupe_dead_letters WHERE id = ?1",
    "SELECT data FROM troupe_dead_letter_frames WHERE letter = ?1 ORDER BY idx",
    "DELETE FROM troupe_dead_letters WHERE id = ?1",
    "DELETE FROM troupe_dead_letter_frames WHERE letter = ?1",
    "SELECT id FROM troupe_dead_letters WHERE message_id = ?1 AND message_id != ''",
    "UPDATE troupe_dead_letters SET reason = ?2, time = ?3, attempts = attempts + 1 WHERE id = ?1",
    "SELECT letters, bytes FROM troupe_dead_letter_totals",
    "SELECT id, bytes FROM troupe_dead_letters ORDER BY id LIMIT 1",
    "INSERT INTO troupe_meta(key, value) VALUES (?1, ?2) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    "SELECT value FROM troupe_meta WHERE key = ?1",
    "SAVEPOINT message",
    "RELEASE message",
    "ROLLBACK TO message",
};
static_assert(std::size(kSql) == kCount, "one statement per Stmt");

const char* const kSchema = R"sql(
CREATE TABLE IF NOT EXISTS troupe_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS troupe_outbox(
  seq INTEGER PRIMARY KEY, type TEXT NOT NULL, correlationid TEXT NOT NULL,
  causationid TEXT NOT NULL, envelope BLOB NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS troupe_outbox_correlation ON troupe_outbox(correlationid);
CREATE TABLE IF NOT EXISTS troupe_inbox(stream TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS troupe_seen_ids(n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, refusal TEXT);
CREATE TABLE IF NOT EXISTS troupe_commands(
  target TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
  envelope BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY(target, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS troupe_epochs(
  first_seq INTEGER NOT NULL, n INTEGER NOT NULL, epoch INTEGER NOT NULL,
  PRIMARY KEY(first_seq, n)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS troupe_dead_letters(
  id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, endpoint TEXT NOT NULL,
  source TEXT NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL,
  message_id TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 1,
  first_time TEXT NOT NULL DEFAULT '', bytes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS troupe_dead_letter_frames(
  letter INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(letter, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state(tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY(tbl, key)) WITHOUT ROWID;
)sql";

// What needs the columns schema 3 added to troupe_dead_letters (so it runs after the
// migration): the one-letter-per-message index and the totals, kept by triggers so
// they roll back with the unit of work.
const char* const kSchemaDeadLetters = R"sql(
CREATE UNIQUE INDEX IF NOT EXISTS troupe_dead_letters_message
  ON troupe_dead_letters(message_id) WHERE message_id != '';
CREATE TABLE IF NOT EXISTS troupe_dead_letter_totals(
  one INTEGER PRIMARY KEY CHECK (one = 1), letters INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO troupe_dead_letter_totals(one, letters, bytes)
  SELECT 1, count(*), coalesce(sum(bytes), 0) FROM troupe_dead_letters;
CREATE TRIGGER IF NOT EXISTS troupe_dead_letter_added AFTER INSERT ON troupe_dead_letters BEGIN
  UPDATE troupe_dead_letter_totals SET letters = letters + 1, bytes = bytes + NEW.bytes;
END;
CREATE TRIGGER IF NOT EXISTS troupe_dead_letter_removed AFTER DELETE ON troupe_dead_letters BEGIN
  UPDATE troupe_dead_letter_totals SET letters = letters - 1, bytes = bytes - OLD.bytes;
END;
)sql";

// A random nonzero epoch: two opens of one file must not draw the same one.
std::uint64_t new_epoch() {
  std::random_device rd;
  std::uint64_t e = 0;
  while (e == 0) e = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return e;
}

// The OS's reason behind SQLite's last error when that error came from the OS
// ("Permission denied", "No space left on device"), else "".
std::string os_reason(sqlite3* db) {
  if (!db) return "";
  switch (sqlite3_errcode(db)) {
    case SQLITE_CANTOPEN: case SQLITE_IOERR: case SQLITE_FULL: case SQLITE_READONLY: case SQLITE_PERM:
      break;
    default:
      return "";
  }
  int e = sqlite3_system_errno(db);
  return e ? std::strerror(e) : "";
}

// Page size of the state reads of scan_after: a page of a listing reads about what it
// shows, and the visitor may write to the table between two reads.
constexpr std::int64_t kScanChunk = 128;

}  // namespace

void SqliteStore::fail(const std::string& what) const {
  std::string why = os_reason(db_);
  throw ports::StoreError(path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "cannot open") +
                          (why.empty() ? "" : " (" + why + ")"));
}

void SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    std::string why = os_reason(db_);
    throw ports::StoreError(path_ + ": " + msg + (why.empty() ? "" : " (" + why + ")"));
  }
}

// Reset on the way out too: a read loop left by an exception (bad_alloc) must not leave
// its statement mid-run and bound to memory that is gone.
SqliteStore::Statement& SqliteStore::stmt(int which) {
  auto& s = *statements_[which];
  s.reset();
  return s;
}

// The fsync of the WAL, apart from the commit: SQLite writes a commit's frames into the
// WAL and, under synchronous=NORMAL, leaves them in the page cache; one fdatasync of the
// file then makes every commit written before it durable (Linux syncs the file, whatever
// descriptor wrote it). The descriptor is opened once, before the first commit it must
// cover: a write-back error is reported once to every descriptor open when it happened,
// so one SQLite's own checkpoint fsync saw first is not hidden from this one, as it would
// be from a descriptor opened after it. A WAL removed or replaced under the running store
// is an error, not a sync of a file nobody reads again.
class SqliteStore::WalSyncer final : public ports::Syncer {
 public:
  WalSyncer(SqliteStore& store, std::string wal, const std::string& dir) : store_(store), wal_(std::move(wal)) {
    fd_ = open_or_throw(wal_, O_RDONLY | O_CLOEXEC);
    // Once, the directory too: the WAL's own entry in it is what finds the file again.
    int dir_fd = -1;
    try {
      dir_fd = open_or_throw(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      sync_or_throw(dir_fd, dir);
    } catch (...) {
      if (dir_fd >= 0) ::close(dir_fd);
      ::close(fd_);
      throw;
    }
    ::close(dir_fd);
  }
  ~WalSyncer() override { ::close(fd_); }
  WalSyncer(const WalSyncer&) = delete;
  WalSyncer& operator=(const WalSyncer&) = delete;

  std::uint64_t written() override {
    auto changes = sqlite3_total_changes64(store_.db_);
    if (changes != changes_seen_) {
      changes_seen_ = changes;
      ++written_;
    }
    return written_;
  }

  void sync() override {
    struct stat held {}, named {};
    if (::fstat(fd_, &held) != 0 || held.st_nlink == 0 || ::stat(wal_.c_str(), &named) != 0 ||
        named.st_ino != held.st_ino || named.st_dev != held.st_dev)
      throw ports::StoreError(wal_ + " was removed or replaced under the running store: its commits since are "
                                     "in no file a restart reads");
    sync_or_throw(fd_, wal_);
  }

 private:
  static int open_or_throw(const std::string& path, int flags) {
    int fd = ::open(path.c_str(), flags);
    if (fd < 0) {
      int e = errno;
      throw ports::StoreError("cannot open " + path + " to fsync it: " + std::strerror(e));
    }
    return fd;
  }
  static void sync_or_throw(int fd, const std::string& path) {
    if (::fdatasync(fd) != 0) {
      int e = errno;
      throw ports::StoreError("fdatasync " + path + ": " + std::strerror(e));
    }
  }

  SqliteStore& store_;
  const std::string wal_;
  int fd_ = -1;
  sqlite3_int64 changes_seen_ = 0;  // the store's thread
  std::uint64_t written_ = 0;
};

ports::Syncer* SqliteStore::defer_sync() {
  if (synchronous_ != Synchronous::full) return nullptr;
  if (!syncer_) {
    if (in_unit_) throw std::logic_error("SqliteStore::defer_sync inside a unit of work");
    auto slash = path_.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    // Opened while commits are still fsynced (the WAL exists: the open wrote this
    // start's epoch into it), then commits stop being fsynced.
    syncer_ = std::make_unique<WalSyncer>(*this, path_ + "-wal", dir);
    exec("PRAGMA synchronous=NORMAL");
    syncer_->written();  // what was written before is durable already (synchronous=FULL)
  }
  return syncer_.get();
}

SqliteStore::SqliteStore(const std::string& path, Synchronous synchronous)
    : path_(path), synchronous_(synchronous) {
  open_file();
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    std::string why = os_reason(db_);
    sqlite3_close(db_);
    db_ = nullptr;
    throw ports::StoreError("cannot open " + path + ": " + (why.empty() ? msg : why + " (" + msg + ")"));
  }
  sqlite3_busy_timeout(db_, 5000);
  try {
    check_integrity();
    exec(synchronous == Synchronous::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    migrate();
    start_epoch();
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    statements_.clear();
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

// The file is made here, not by SQLite, so that it is 0600 from its first byte (SQLite
// would make it 0644 less the umask) and its -wal and -shm, which SQLite makes with the
// database's mode, follow; and so that a failure says why in the system's words.
void SqliteStore::open_file() {
  struct stat st {};
  bool exists = ::stat(path_.c_str(), &st) == 0;
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    throw ports::StoreError((exists ? "cannot open " : "cannot create ") + path_ + ": " + std::strerror(e));
  }
  ::close(fd);
}

// The first reads of the file: WAL mode, then PRAGMA quick_check (every page and
// b-tree, not the indexes' contents against their tables: O(file size)). A damaged
// file is refused by name rather than served until a read trips over the damage.
void SqliteStore::check_integrity() {
  auto refuse = [&](const std::string& what) -> ports::StoreError {
    int code = sqlite3_errcode(db_);
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
      return ports::StoreError("store " + path_ + " is damaged (" + what + "): restore it or move it aside");
    std::string why = os_reason(db_);
    return ports::StoreError("cannot open " + path_ + ": " + (why.empty() ? what : why + " (" + what + ")"));
  };
  if (sqlite3_exec(db_, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr) != SQLITE_OK)
    throw refuse(sqlite3_errmsg(db_));
  sqlite3_stmt* q = nullptr;
  int rc = sqlite3_prepare_v2(db_, "PRAGMA quick_check", -1, &q, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(q);
  if (rc != SQLITE_ROW) {
    std::string msg = sqlite3_errmsg(db_);
    auto error = refuse(msg);
    sqlite3_finalize(q);
    throw error;
  }
  auto p = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
  std::string first = p ? p : "";
  sqlite3_finalize(q);
  // Its first finding, without the "*** in database main ***" line that heads it.
  if (first.rfind("***", 0) == 0 && first.find('\n') != std::string::npos) first.erase(0, first.find('\n') + 1);
  first = first.substr(0, first.find('\n'));
  if (first != "ok")
    throw ports::StoreError("store " + path_ + " is damaged (quick_check: " + first +
                            "): restore it or move it aside");
}

// Creates or upgrades the schema and reads the store's identity and head, in one
// transaction.
void SqliteStore::migrate() {
  exec("BEGIN IMMEDIATE");
  bool had_epochs = table_exists("troupe_epochs");
  exec(kSchema);
  // Schema 1 kept one-shot command ids in troupe_seen, without the order they came
  // in, so they could not be pruned: carry them over (in id order, the best there is).
  if (table_exists("troupe_seen"))
    exec("INSERT OR IGNORE INTO troupe_seen_ids(id) SELECT id FROM troupe_seen ORDER BY id; "
         "DROP TABLE troupe_seen;");
  // Seen ids gained why a command was refused: an added column, not a new schema
  // version, so an older build still opens the store (it keeps no refusals; one it
  // applies on a retry keeps reading "refused" here).
  if (!column_exists("troupe_seen_ids", "refusal")) exec("ALTER TABLE troupe_seen_ids ADD COLUMN refusal TEXT;");
  // Schema 2 letters: never merged (no message id), first seen when last seen, and
  // their size summed from their frames.
  if (!column_exists("troupe_dead_letters", "message_id"))
    exec("ALTER TABLE troupe_dead_letters ADD COLUMN message_id TEXT NOT NULL DEFAULT ''; "
         "ALTER TABLE troupe_dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1; "
         "ALTER TABLE troupe_dead_letters ADD COLUMN first_time TEXT NOT NULL DEFAULT ''; "
         "ALTER TABLE troupe_dead_letters ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0; "
         "UPDATE troupe_dead_letters SET first_time = time, bytes = (SELECT coalesce(sum(length(data)), 0) "
         "FROM troupe_dead_letter_frames WHERE letter = troupe_dead_letters.id);");
  exec(kSchemaDeadLetters);
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
    throw ports::StoreError(path_ + ": schema version " + *version + " is newer than this troupe (" +
                            std::to_string(kSchemaVersion) + ")");
  stmt(kSetMeta).bind(1, std::string_view("schema_version")).bind(2, std::to_string(kSchemaVersion)).run();
  auto inc = meta("incarnation");
  incarnation_ = inc ? *inc : new_id();
  if (!inc) stmt(kSetMeta).bind(1, std::string_view("incarnation")).bind(2, incarnation_).run();
  auto head = meta("head");
  head_ = head ? std::stoull(*head) : 0;
  head_ = std::max<std::uint64_t>(head_, static_cast<std::uint64_t>(two_ints(kCountEvents).second));
  committed_head_ = head_;
  // Events written before epochs were kept get one epoch of their own, from 1.
  if (!had_epochs && head_ > 0) stmt(kAddEpoch).bind(1, std::int64_t{1}).bind(2, new_epoch()).run();
  exec("COMMIT");
}

// This open's epoch, durable before anything is appended under it.
void SqliteStore::start_epoch() {
  epoch_ = new_epoch();
  exec("BEGIN IMMEDIATE");
  stmt(kAddEpoch).bind(1, head_ + 1).bind(2, epoch_).run();
  exec("COMMIT");
}

SqliteStore::~SqliteStore() {
  if (in_unit_) rollback();
  statements_.clear();
  sqlite3_close(db_);
}

std::optional<std::string> SqliteStore::peek(const std::string& path, std::string_view table, std::string_view key) {
  sqlite3* db = nullptr;
  std::optional<std::string> out;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 1000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT value FROM state WHERE tbl = ?1 AND key = ?2", -1, &st, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, table.data(), static_cast<int>(table.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(st) == SQLITE_ROW)
        out = std::string(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                          static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
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

void SqliteStore::scan_after(std::string_view table, std::string_view after_key,
                             const std::function<bool(std::string_view, std::string_view)>& visit) {
  std::string after(after_key);
  std::vector<std::pair<std::string, std::string>> rows;
  for (;;) {
    // A chunk at a time, collected before visiting: the visitor may write to the table.
    rows.clear();
    auto& s = stmt(kScanAfter).bind(1, table).bind(2, std::string_view(after)).bind(3, kScanChunk);
    while (s.step()) rows.emplace_back(s.text(0), s.text(1));
    s.reset();
    for (const auto& [k, v] : rows)
      if (!visit(k, v)) return;
    if (rows.size() < static_cast<std::size_t>(kScanChunk)) return;
    after = rows.back().first;
  }
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
  auto dropped = static_cast<std::size_t>(sqlite3_changes(db_));
  prune_epochs();
  return dropped;
}

std::uint64_t SqliteStore::epoch_of(std::uint64_t sequence) {
  if (sequence == 0 || sequence > head_) return 0;
  auto& s = stmt(kEpochOf).bind(1, sequence);
  std::uint64_t e = 0;
  if (s.step()) e = static_cast<std::uint64_t>(s.i64(0));
  s.reset();
  return e;
}

// Keeps the records from the one covering oldest() - 1 on: the last pruned sequence is
// where a subscriber that is exactly caught up resumes from, so its epoch stays known.
void SqliteStore::prune_epochs() {
  std::uint64_t o = oldest();
  stmt(kPruneEpochs).bind(1, o > 1 ? o - 1 : o).run();
}

bool SqliteStore::column_exists(const char* table, const char* column) {
  sqlite3_stmt* q = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &q, nullptr) != SQLITE_OK)
    fail("reading the schema");
  sqlite3_bind_text(q, 1, table, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, column, -1, SQLITE_STATIC);
  bool found = sqlite3_step(q) == SQLITE_ROW;
  sqlite3_finalize(q);
  return found;
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

void SqliteStore::set_refusal(std::string_view id, std::string_view reason) {
  stmt(kSetRefusal).bind(1, id).bind(2, reason).run();
}

std::optional<std::string> SqliteStore::refusal(std::string_view id) {
  auto& s = stmt(kRefusal).bind(1, id);
  std::optional<std::string> out;
  if (s.step() && !s.null(0)) out = s.text(0);
  s.reset();
  return out;
}

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
  if (!l.message_id.empty()) {
    auto& m = stmt(kLetterOfMessage).bind(1, l.message_id);
    std::int64_t kept = m.step() ? m.i64(0) : 0;
    m.reset();
    if (kept) {
      stmt(kMergeLetter).bind(1, kept).bind(2, l.reason).bind(3, l.time).run();
      return kept;
    }
  }
  std::int64_t bytes = 0;
  for (const auto& f : l.frames) bytes += static_cast<std::int64_t>(f.size());
  stmt(kAddLetter).bind(1, l.time).bind(2, l.endpoint).bind(3, l.source).bind(4, l.type)
      .bind(5, l.reason).bind(6, l.message_id).bind(7, static_cast<std::int64_t>(l.attempts ? l.attempts : 1))
      .bind(8, bytes).run();
  std::int64_t id = sqlite3_last_insert_rowid(db_);
  for (std::size_t i = 0; i < l.frames.size(); ++i)
    stmt(kAddFrame).bind(1, id).bind(2, static_cast<std::int64_t>(i)).blob(3, l.frames[i]).run();
  return id;
}

namespace {

template <class S>
ports::DeadLetter read_letter(S& s) {
  return {s.i64(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), {},
          s.text(6), static_cast<std::uint32_t>(s.i64(7)), s.text(8)};
}

}  // namespace

std::vector<ports::DeadLetter> SqliteStore::dead_letters(std::size_t max) {
  std::vector<ports::DeadLetter> out;
  auto& s = stmt(kLetters).bind(1, static_cast<std::int64_t>(std::min<std::size_t>(max, INT64_MAX)));
  while (s.step()) out.push_back(read_letter(s));
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
  if (s.step()) l = read_letter(s);
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

std::uint64_t SqliteStore::dead_letter_count() { return dead_letter_totals().count; }

ports::DeadLetterTotals SqliteStore::dead_letter_totals() {
  auto [count, bytes] = two_ints(kLetterTotals);
  return {static_cast<std::uint64_t>(count), static_cast<std::uint64_t>(bytes)};
}

std::size_t SqliteStore::evict_dead_letters(std::uint64_t max_count, std::uint64_t max_bytes) {
  auto totals = dead_letter_totals();
  std::size_t evicted = 0;
  while (totals.count > max_count || totals.bytes > max_bytes) {
    auto [id, bytes] = two_ints(kOldestLetter);
    if (id == 0) break;
    remove_dead_letter(id);
    --totals.count;
    totals.bytes -= static_cast<std::uint64_t>(bytes);
    ++evicted;
  }
  return evicted;
}

}  // namespace troupe::adapters
