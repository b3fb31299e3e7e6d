// The Store port's contract, run against both adapters: SQLite (real files) and memory.
#include <troupe/adapters/memory/memory_store.hpp>
#include <troupe/adapters/sqlite/sqlite_store.hpp>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "../../support/test_mesh.hpp"

using troupe::adapters::MemoryStore;
using troupe::adapters::SqliteStore;
using troupe::ports::DeadLetter;
using troupe::ports::OutboxEvent;
using troupe::ports::Store;

namespace {

OutboxEvent event(std::uint64_t seq) {
  return {seq, "Ping", "c-" + std::to_string(seq), "cause", "env" + std::to_string(seq), "payload"};
}

DeadLetter letter(std::string message_id, std::string reason, std::vector<std::string> frames,
                  std::string time = "2026-11-27T00:00:00Z") {
  DeadLetter l;
  l.time = std::move(time);
  l.endpoint = "commands";
  l.source = "cli";
  l.type = "PlaceOrder";
  l.reason = std::move(reason);
  l.frames = std::move(frames);
  l.message_id = std::move(message_id);
  return l;
}

template <class F>
void for_each_store(F&& f) {
  testmesh::TempDir dir;
  SECTION("sqlite") {
    auto s = std::make_shared<SqliteStore>(dir.str() + "/s.db");
    f(*s);
  }
  SECTION("memory") {
    auto s = std::make_shared<MemoryStore>();
    f(*s);
  }
}

}  // namespace

TEST_CASE("a unit of work commits state, outbox and positions together", "[store]") {
  for_each_store([](Store& s) {
    s.begin();
    s.put("stock", "SKU-1", "5");
    s.append_event(event(1));
    s.set_position("orders", 7);
    s.commit();
    CHECK(s.get("stock", "SKU-1") == "5");
    CHECK(s.head() == 1);
    CHECK(s.position("orders") == 7);

    s.begin();
    s.put("stock", "SKU-1", "4");
    s.append_event(event(2));
    s.set_position("orders", 8);
    s.rollback();
    CHECK(s.get("stock", "SKU-1") == "5");
    CHECK(s.head() == 1);
    CHECK(s.position("orders") == 7);
  });
}

TEST_CASE("a savepoint undoes one message and keeps the rest of the batch", "[store]") {
  for_each_store([](Store& s) {
    s.begin();
    s.savepoint();
    s.put("t", "a", "1");
    s.append_event(event(1));
    s.release();
    s.savepoint();
    s.put("t", "b", "2");
    s.append_event(event(2));
    s.rollback_to();
    s.release();
    s.commit();
    CHECK(s.get("t", "a") == "1");
    CHECK_FALSE(s.get("t", "b"));
    CHECK(s.head() == 1);
    CHECK(s.events(1, 100, 100).size() == 1);
  });
}

TEST_CASE("events are read back in order and pruned oldest first", "[store]") {
  for_each_store([](Store& s) {
    s.begin();
    for (std::uint64_t i = 1; i <= 50; ++i) s.append_event(event(i));
    s.commit();
    auto some = s.events(10, 20, 5);
    REQUIRE(some.size() == 5);
    CHECK(some.front().sequence == 10);
    CHECK(some.back().sequence == 14);
    CHECK(some.front().envelope == "env10");
    s.begin();
    CHECK(s.prune_events(20) == 30);
    s.commit();
    CHECK(s.oldest() == 31);
    CHECK(s.head() == 50);
  });
}

TEST_CASE("dead letters keep the whole message and its reason", "[store]") {
  for_each_store([](Store& s) {
    s.begin();
    auto id = s.add_dead_letter(letter("", "bad", {std::string("\x00\x01", 2), "second"}));
    s.commit();
    auto l = s.dead_letter(id);
    REQUIRE(l);
    CHECK(l->reason == "bad");
    REQUIRE(l->frames.size() == 2);
    CHECK(l->frames[0] == std::string("\x00\x01", 2));
    CHECK(s.dead_letter_count() == 1);
    s.begin();
    s.remove_dead_letter(id);
    s.commit();
    CHECK(s.dead_letter_count() == 0);
  });
}

TEST_CASE("commands wait in the outbox until acknowledged", "[store]") {
  for_each_store([](Store& s) {
    s.begin();
    for (std::uint64_t i = 1; i <= 3; ++i) s.append_command({"pub", i, "Emit", "e", "p"});
    s.mark_seen("cmd-1");
    s.commit();
    CHECK(s.command_head("pub") == 3);
    CHECK(s.unacked_commands("pub", 10).size() == 3);
    s.begin();
    s.ack_commands("pub", 2);
    s.commit();
    auto left = s.unacked_commands("pub", 10);
    REQUIRE(left.size() == 1);
    CHECK(left[0].sequence == 3);
    CHECK(s.seen("cmd-1"));
    CHECK_FALSE(s.seen("cmd-2"));
  });
}

TEST_CASE("a SQLite store keeps its sequence and incarnation across reopening", "[store][sqlite]") {
  testmesh::TempDir dir;
  std::string path = dir.str() + "/s.db";
  std::string incarnation;
  {
    SqliteStore s(path);
    incarnation = s.incarnation();
    s.begin();
    for (std::uint64_t i = 1; i <= 10; ++i) s.append_event(event(i));
    s.commit();
    s.begin();
    s.prune_events(0);
    s.commit();
  }
  SqliteStore again(path);
  CHECK(again.incarnation() == incarnation);
  CHECK(again.head() == 10);  // even with every event pruned
  CHECK(again.oldest() == 11);
}

TEST_CASE("a store that cannot be opened is an exception naming the file", "[store][sqlite]") {
  CHECK_THROWS_WITH(SqliteStore("/nonexistent/dir/s.db"),
                    "cannot create /nonexistent/dir/s.db: No such file or directory");
}

TEST_CASE("one-shot command ids are forgotten in the order they were marked, past a slack", "[store]") {
  for_each_store([](Store& s) {
    auto id = [](int i) { return "id-" + std::string(i < 10 ? "0" : "") + std::to_string(i); };
    s.begin();
    for (int i = 50; i >= 1; --i) s.mark_seen(id(i));  // marked in the reverse of the ids' order
    s.commit();
    CHECK(s.prune_seen(20, 40) == 0);  // 50 is within 20 + 40
    CHECK(s.prune_seen(20, 10) == 30);
    for (int i = 1; i <= 20; ++i) CHECK(s.seen(id(i)));   // the 20 marked last
    for (int i = 21; i <= 50; ++i) CHECK_FALSE(s.seen(id(i)));
    CHECK(s.prune_seen(20, 10) == 0);

    s.begin();
    s.mark_seen("rolled-back");
    s.rollback();
    s.begin();
    for (int i = 51; i <= 60; ++i) s.mark_seen(id(i));
    s.mark_seen(id(55));  // again: still one id
    s.commit();
    CHECK_FALSE(s.seen("rolled-back"));
    CHECK(s.prune_seen(20, 10) == 0);  // 30 kept: not past the slack
    CHECK(s.prune_seen(25, 0) == 5);   // the oldest five of those: ids 20 down to 16
    CHECK_FALSE(s.seen(id(16)));
    CHECK(s.seen(id(15)));
    CHECK(s.seen(id(60)));
  });
}

TEST_CASE("a refused one-shot command keeps its reason until a retry applies it, in the unit of work", "[store]") {
  for_each_store([](Store& s) {
    s.begin();
    s.mark_seen("ok-1");
    s.mark_seen("bad-1");
    s.set_refusal("bad-1", "field 'quantity': expected integer, got string");
    s.set_refusal("never-seen", "ignored: not seen");
    s.commit();
    CHECK_FALSE(s.refusal("ok-1"));
    CHECK(s.refusal("bad-1") == "field 'quantity': expected integer, got string");
    CHECK_FALSE(s.refusal("never-seen"));
    CHECK_FALSE(s.seen("never-seen"));
    s.begin();
    s.set_refusal("bad-1", "");  // retried and applied
    s.rollback();
    CHECK(s.refusal("bad-1"));  // the rollback undid the clearing
    s.begin();
    s.set_refusal("bad-1", "");
    s.commit();
    CHECK_FALSE(s.refusal("bad-1"));
    CHECK(s.seen("bad-1"));
    s.begin();
    s.set_refusal("ok-1", "refused after all");
    s.commit();
    CHECK(s.prune_seen(0, 0) == 2);  // forgetting an id forgets its refusal
    CHECK_FALSE(s.refusal("ok-1"));
  });
}

TEST_CASE("a schema 1 store keeps its one-shot command ids when opened by this version", "[store][sqlite]") {
  testmesh::TempDir dir;
  auto path = dir.str() + "/old.db";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TABLE troupe_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
                         "INSERT INTO troupe_meta VALUES ('schema_version', '1'), ('incarnation', 'inc-1');"
                         "CREATE TABLE troupe_seen(id TEXT PRIMARY KEY) WITHOUT ROWID;"
                         "INSERT INTO troupe_seen VALUES ('cmd-b'), ('cmd-a');",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  {
    SqliteStore s(path);
    CHECK(s.incarnation() == "inc-1");
    CHECK(s.seen("cmd-a"));
    CHECK(s.seen("cmd-b"));
    CHECK_FALSE(s.seen("cmd-c"));
    CHECK(s.prune_seen(1, 0) == 1);  // numbered in id order: cmd-a first
    CHECK_FALSE(s.seen("cmd-a"));
    CHECK(s.seen("cmd-b"));
  }
  SqliteStore again(path);  // reopening a schema 2 store migrates nothing
  CHECK(again.seen("cmd-b"));
}

namespace {

// One integer read straight from a database file, beside the store.
std::int64_t sql_int(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &q, nullptr) == SQLITE_OK);
  std::int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
  sqlite3_finalize(q);
  sqlite3_close(db);
  return v;
}

void append(Store& s, std::uint64_t from, std::uint64_t to) {
  s.begin();
  for (auto i = from; i <= to; ++i) s.append_event(event(i));
  s.commit();
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

}  // namespace

TEST_CASE("a store's epoch covers the events appended since it was opened", "[store][epoch]") {
  for_each_store([](Store& s) {
    CHECK(s.epoch() != 0);
    CHECK(s.epoch_of(0) == 0);
    CHECK(s.epoch_of(1) == 0);  // above head: not written yet
    append(s, 1, 3);
    for (std::uint64_t i = 1; i <= 3; ++i) CHECK(s.epoch_of(i) == s.epoch());
    CHECK(s.epoch_of(4) == 0);
    s.begin();
    s.prune_events(1);
    s.commit();
    CHECK(s.epoch_of(3) == s.epoch());
    CHECK(s.epoch_of(2) == s.epoch());  // oldest() - 1: where a caught-up reader resumes
  });
}

TEST_CASE("each open of a SQLite store starts a new epoch from head + 1", "[store][epoch][sqlite]") {
  testmesh::TempDir dir;
  std::string path = dir.str() + "/s.db";
  std::uint64_t first = 0, second = 0, third = 0, fourth = 0;
  {
    SqliteStore s(path);
    first = s.epoch();
    append(s, 1, 3);
  }
  {
    SqliteStore s(path);  // reopened without new events
    second = s.epoch();
    CHECK(second != 0);
    CHECK(second != first);
    CHECK(s.epoch_of(3) == first);
    CHECK(s.epoch_of(4) == 0);
  }
  {
    SqliteStore s(path);  // two opens with nothing between: the later one owns 4 on
    third = s.epoch();
    CHECK(third != second);
    append(s, 4, 6);
    CHECK(s.epoch_of(4) == third);
  }
  {
    SqliteStore s(path);
    fourth = s.epoch();
    append(s, 7, 7);
    CHECK(s.epoch_of(1) == first);
    CHECK(s.epoch_of(3) == first);
    CHECK(s.epoch_of(4) == third);
    CHECK(s.epoch_of(6) == third);
    CHECK(s.epoch_of(7) == fourth);
    CHECK(s.epoch_of(8) == 0);
    CHECK(sql_int(path, "SELECT count(*) FROM troupe_epochs") == 4);

    s.begin();
    CHECK(s.prune_events(2) == 5);  // 6 and 7 stay; 5 is where a caught-up reader resumes
    s.commit();
    CHECK(s.epoch_of(5) == third);
    CHECK(s.epoch_of(6) == third);
    CHECK(s.epoch_of(7) == fourth);
    // first's record and second's (no event of second's) are no longer needed
    CHECK(sql_int(path, "SELECT count(*) FROM troupe_epochs") == 2);
  }
  SqliteStore again(path);
  CHECK(again.epoch_of(6) == third);
  CHECK(again.epoch_of(7) == fourth);
}

TEST_CASE("a SQLite store that lost its last commits gives the re-used sequences another epoch",
          "[store][epoch][sqlite]") {
  testmesh::TempDir dir;
  std::string path = dir.str() + "/s.db", old_copy = dir.str() + "/old.db";
  {
    SqliteStore s(path);
    append(s, 1, 5);
  }  // closed: the WAL is checkpointed into the file
  std::filesystem::copy_file(path, old_copy);
  std::uint64_t lost_epoch = 0;
  {
    SqliteStore s(path);
    append(s, 6, 10);
    lost_epoch = s.epoch_of(8);
    CHECK(lost_epoch == s.epoch());
  }
  // The old copy is what a crash that lost the tail (or a restored backup) leaves.
  SqliteStore restored(old_copy);
  CHECK(restored.head() == 5);
  append(restored, 6, 9);  // sequences re-used for other events
  CHECK(restored.epoch_of(8) == restored.epoch());
  CHECK(restored.epoch_of(8) != lost_epoch);
  SqliteStore original(path);
  CHECK(original.epoch_of(5) == restored.epoch_of(5));  // what both kept agrees
}

TEST_CASE("a schema 2 store opened by this version keeps its data, its events get an epoch, its "
          "dead letters are counted",
          "[store][sqlite][epoch][deadletters]") {
  testmesh::TempDir dir;
  auto path = dir.str() + "/v2.db";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TABLE troupe_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
                         "INSERT INTO troupe_meta VALUES ('schema_version', '2'), ('incarnation', 'inc-2'),"
                         "  ('head', '3');"
                         "CREATE TABLE troupe_outbox(seq INTEGER PRIMARY KEY, type TEXT NOT NULL,"
                         "  correlationid TEXT NOT NULL, causationid TEXT NOT NULL, envelope BLOB NOT NULL,"
                         "  payload BLOB NOT NULL);"
                         "INSERT INTO troupe_outbox VALUES (1, 'Ping', 'c', 'x', X'01', X'02'),"
                         "  (2, 'Ping', 'c', 'x', X'01', X'02'), (3, 'Ping', 'c', 'x', X'01', X'02');"
                         "CREATE TABLE troupe_seen_ids(n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);"
                         "INSERT INTO troupe_seen_ids(id) VALUES ('cmd-a');"
                         "CREATE TABLE troupe_dead_letters(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                         "  time TEXT NOT NULL, endpoint TEXT NOT NULL, source TEXT NOT NULL,"
                         "  type TEXT NOT NULL, reason TEXT NOT NULL);"
                         "CREATE TABLE troupe_dead_letter_frames(letter INTEGER NOT NULL, idx INTEGER NOT NULL,"
                         "  data BLOB NOT NULL, PRIMARY KEY(letter, idx)) WITHOUT ROWID;"
                         "INSERT INTO troupe_dead_letters VALUES (1, 't1', 'commands', 'cli', 'A', 'bad'),"
                         "  (2, 't2', 'queries', 'cli', 'B', 'worse');"
                         "INSERT INTO troupe_dead_letter_frames VALUES (1, 0, X'0102'), (1, 1, X'030405'),"
                         "  (2, 0, X'06');",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  std::uint64_t old_events = 0;
  {
    SqliteStore s(path);
    CHECK(s.incarnation() == "inc-2");
    CHECK(s.seen("cmd-a"));
    CHECK_FALSE(s.refusal("cmd-a"));  // its table gained the refusal column
    s.begin();
    s.set_refusal("cmd-a", "no");
    s.commit();
    CHECK(s.refusal("cmd-a") == "no");
    CHECK(s.head() == 3);
    old_events = s.epoch_of(1);
    CHECK(old_events != 0);
    CHECK(s.epoch_of(3) == old_events);
    CHECK(old_events != s.epoch());
    append(s, 4, 4);
    CHECK(s.epoch_of(4) == s.epoch());

    auto totals = s.dead_letter_totals();
    CHECK(totals.count == 2);
    CHECK(totals.bytes == 6);
    auto l = s.dead_letter(1);
    REQUIRE(l);
    CHECK(l->first_time == "t1");
    CHECK(l->attempts == 1);
    CHECK(l->message_id.empty());
    CHECK(l->frames.size() == 2);
    s.begin();
    s.add_dead_letter(letter("m-1", "new", {"abcd"}));
    CHECK(s.evict_dead_letters(2, 1000) == 1);  // letter 1 goes first
    s.commit();
    CHECK_FALSE(s.dead_letter(1));
    CHECK(s.dead_letter_totals().bytes == 5);
  }
  CHECK(sql_int(path, "SELECT value FROM troupe_meta WHERE key = 'schema_version'") == 3);
  SqliteStore again(path);  // reopening a schema 3 store migrates nothing
  CHECK(again.epoch_of(2) == old_events);
  CHECK(again.dead_letter_totals().count == 2);
}

TEST_CASE("a damaged SQLite file is refused at open, naming the file and what quick_check found",
          "[store][sqlite]") {
  testmesh::TempDir dir;
  std::string path = dir.str() + "/orders.db";
  {
    SqliteStore s(path);
    s.begin();
    for (std::uint64_t i = 1; i <= 2000; ++i) s.append_event(event(i));
    s.commit();
  }
  auto size = std::filesystem::file_size(path);
  REQUIRE(size > 16 * 4096);
  {
    std::FILE* f = std::fopen(path.c_str(), "r+b");
    REQUIRE(f);
    std::fseek(f, static_cast<long>(size / 2 / 4096 * 4096), SEEK_SET);  // a whole page mid-file
    std::string garbage(4096, '\xa7');
    std::fwrite(garbage.data(), 1, garbage.size(), f);
    std::fclose(f);
  }
  try {
    SqliteStore s(path);
    FAIL("a damaged store was opened");
  } catch (const troupe::ports::StoreError& e) {
    std::string what = e.what();
    INFO(what);
    CHECK_THAT(what, Catch::StartsWith("store " + path + " is damaged (quick_check: ") &&
                         Catch::EndsWith("): restore it or move it aside"));
    CHECK(what.find('\n') == std::string::npos);
    CHECK(what.find("***") == std::string::npos);
  }
}

TEST_CASE("a SQLite store's files are made readable by its owner only", "[store][sqlite]") {
  testmesh::TempDir dir;
  std::string path = dir.str() + "/s.db";
  auto old_umask = ::umask(022);
  {
    SqliteStore s(path);
    append(s, 1, 1);  // the WAL and its index exist while the store is open
    CHECK(mode_of(path) == 0600);
    CHECK(mode_of(path + "-wal") == 0600);
    CHECK(mode_of(path + "-shm") == 0600);
  }
  ::umask(old_umask);
}

TEST_CASE("a SQLite store that cannot be created says why in the system's words", "[store][sqlite]") {
  testmesh::TempDir dir;
  std::string file = dir.str() + "/plain";
  std::FILE* f = std::fopen(file.c_str(), "w");
  REQUIRE(f);
  std::fclose(f);
  CHECK_THROWS_WITH(SqliteStore(file + "/s.db"), "cannot create " + file + "/s.db: Not a directory");
  if (::geteuid() != 0) {  // root writes anywhere
    std::string locked = dir.str() + "/locked";
    std::filesystem::create_directory(locked);
    std::filesystem::permissions(locked, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    CHECK_THROWS_WITH(SqliteStore(locked + "/s.db"), "cannot create " + locked + "/s.db: Permission denied");
    std::filesystem::permissions(locked, std::filesystem::perms::owner_all);
  }
}

TEST_CASE("a message dead-lettered again is one letter with its attempts counted", "[store][deadletters]") {
  for_each_store([](Store& s) {
    s.begin();
    auto id = s.add_dead_letter(letter("m-1", "first reason", {"ab", "cde"}, "2026-11-27T00:00:01Z"));
    auto other = s.add_dead_letter(letter("m-2", "other", {"x"}));
    s.commit();
    s.begin();
    CHECK(s.add_dead_letter(letter("m-1", "second reason", {"zzzzzzzz"}, "2026-11-27T00:00:09Z")) == id);
    s.commit();
    auto l = s.dead_letter(id);
    REQUIRE(l);
    CHECK(l->message_id == "m-1");
    CHECK(l->attempts == 2);
    CHECK(l->reason == "second reason");
    CHECK(l->time == "2026-11-27T00:00:09Z");
    CHECK(l->first_time == "2026-11-27T00:00:01Z");
    CHECK(l->frames == std::vector<std::string>{"ab", "cde"});  // the first copy is kept
    CHECK(s.dead_letter_totals().count == 2);
    CHECK(s.dead_letter_totals().bytes == 6);
    auto listed = s.dead_letters(10);
    REQUIRE(listed.size() == 2);
    CHECK(listed[0].id == id);  // keeps its place: oldest first
    CHECK(listed[0].attempts == 2);
    CHECK(listed[1].id == other);

    SECTION("a merge rolled back leaves the letter as it was") {
      s.begin();
      s.add_dead_letter(letter("m-1", "third", {"q"}, "2026-11-27T00:00:10Z"));
      s.rollback();
      l = s.dead_letter(id);
      CHECK(l->attempts == 2);
      CHECK(l->reason == "second reason");
    }
    SECTION("a message whose letter was removed gets a new one") {
      s.begin();
      s.remove_dead_letter(id);
      auto again = s.add_dead_letter(letter("m-1", "back", {"b"}));
      s.commit();
      CHECK(again != id);
      CHECK(s.dead_letter(again)->attempts == 1);
    }
  });
}

TEST_CASE("dead letters without a message id are never merged", "[store][deadletters]") {
  for_each_store([](Store& s) {
    s.begin();
    auto a = s.add_dead_letter(letter("", "garbage", {"12"}));
    auto b = s.add_dead_letter(letter("", "garbage", {"12"}));
    s.commit();
    CHECK(a != b);
    CHECK(s.dead_letter(a)->attempts == 1);
    CHECK(s.dead_letter(b)->attempts == 1);
    CHECK(s.dead_letter_totals().count == 2);
    CHECK(s.dead_letter_totals().bytes == 4);
  });
}

TEST_CASE("dead-letter totals are part of the unit of work", "[store][deadletters]") {
  for_each_store([](Store& s) {
    CHECK(s.dead_letter_totals().count == 0);
    CHECK(s.dead_letter_totals().bytes == 0);
    s.begin();
    s.add_dead_letter(letter("m-1", "kept", {"12345"}));
    s.commit();
    s.begin();
    s.add_dead_letter(letter("m-2", "rolled back", {"1234567890"}));
    CHECK(s.dead_letter_totals().count == 2);
    CHECK(s.dead_letter_totals().bytes == 15);
    s.rollback();
    CHECK(s.dead_letter_totals().count == 1);
    CHECK(s.dead_letter_totals().bytes == 5);
    CHECK(s.dead_letter_count() == 1);

    s.begin();
    s.savepoint();
    s.add_dead_letter(letter("m-3", "undone by its message", {"123"}));
    s.rollback_to();
    s.release();
    s.commit();
    CHECK(s.dead_letter_totals().count == 1);
    CHECK(s.dead_letter_totals().bytes == 5);
    CHECK(s.dead_letters(10).size() == 1);
  });
}

TEST_CASE("dead letters beyond a count or a size are evicted oldest first", "[store][deadletters]") {
  for_each_store([](Store& s) {
    s.begin();
    std::vector<std::int64_t> ids;
    for (int i = 1; i <= 5; ++i) ids.push_back(s.add_dead_letter(letter("m-" + std::to_string(i), "r",
                                                                        {std::string(10 * i, 'x')})));
    s.commit();
    CHECK(s.dead_letter_totals().bytes == 150);
    CHECK(s.evict_dead_letters(5, 150) == 0);

    SECTION("by count") {
      s.begin();
      CHECK(s.evict_dead_letters(3, 1000) == 2);
      s.commit();
      CHECK_FALSE(s.dead_letter(ids[0]));
      CHECK_FALSE(s.dead_letter(ids[1]));
      CHECK(s.dead_letter(ids[2]));
      CHECK(s.dead_letter_totals().count == 3);
      CHECK(s.dead_letter_totals().bytes == 120);
    }
    SECTION("by bytes") {
      s.begin();
      CHECK(s.evict_dead_letters(100, 100) == 3);  // 150 -> 140 -> 120 -> 90
      s.commit();
      CHECK(s.dead_letter_totals().count == 2);
      CHECK(s.dead_letter_totals().bytes == 90);
      CHECK(s.dead_letters(10).front().id == ids[3]);
    }
    SECTION("all of them") {
      s.begin();
      CHECK(s.evict_dead_letters(0, 0) == 5);
      s.commit();
      CHECK(s.dead_letters(10).empty());
      CHECK(s.dead_letter_totals().bytes == 0);
    }
    SECTION("an eviction rolled back keeps every letter, frames and merging included") {
      s.begin();
      CHECK(s.evict_dead_letters(1, 1000) == 4);
      s.rollback();
      CHECK(s.dead_letter_totals().count == 5);
      CHECK(s.dead_letter_totals().bytes == 150);
      REQUIRE(s.dead_letter(ids[0]));
      CHECK(s.dead_letter(ids[0])->frames == std::vector<std::string>{std::string(10, 'x')});
      s.begin();
      CHECK(s.add_dead_letter(letter("m-1", "again", {"y"})) == ids[0]);
      s.commit();
      CHECK(s.dead_letter(ids[0])->attempts == 2);
    }
  });
}

TEST_CASE("a scan after a key starts at the next key and may stop early", "[store][state]") {
  for_each_store([](Store& s) {
    auto keys_after = [&](std::string_view table, std::string_view after, std::size_t limit = 1000) {
      std::vector<std::string> keys;
      s.scan_after(table, after, [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return keys.size() < limit;
      });
      return keys;
    };
    s.begin();
    for (auto k : {"a", "b", "bb", "c", "d"}) s.put("t", k, std::string("v-") + k);
    s.put("u", "b2", "other table");
    s.commit();
    CHECK(keys_after("t", "") == std::vector<std::string>{"a", "b", "bb", "c", "d"});
    CHECK(keys_after("t", "b") == std::vector<std::string>{"bb", "c", "d"});
    CHECK(keys_after("t", "b1") == std::vector<std::string>{"bb", "c", "d"});  // need not be a key
    CHECK(keys_after("t", "b", 2) == std::vector<std::string>{"bb", "c"});
    CHECK(keys_after("t", "d").empty());
    CHECK(keys_after("none", "").empty());
    std::string value;
    s.scan_after("t", "c", [&](std::string_view, std::string_view v) {
      value = v;
      return false;
    });
    CHECK(value == "v-d");
  });
}

TEST_CASE("a long scan after a key sees every key once, even while it writes", "[store][state]") {
  for_each_store([](Store& s) {
    auto key = [](int i) {
      auto n = std::to_string(i);
      return "k" + std::string(4 - n.size(), '0') + n;
    };
    s.begin();
    for (int i = 1; i <= 1000; ++i) s.put("t", key(i), "v");
    std::vector<std::string> seen;
    s.scan_after("t", key(100), [&](std::string_view k, std::string_view) {
      seen.emplace_back(k);
      s.put("t", k, "visited");  // the visitor may write to the table it scans
      return true;
    });
    s.commit();
    REQUIRE(seen.size() == 900);
    CHECK(seen.front() == key(101));
    CHECK(seen.back() == key(1000));
    CHECK(std::is_sorted(seen.begin(), seen.end()));
    CHECK(s.get("t", key(500)) == "visited");
    CHECK(s.get("t", key(100)) == "v");
  });
}

TEST_CASE("a SQLite store can leave its fsync to a syncer that counts its writes and syncs its WAL",
          "[store][sqlite]") {
  testmesh::TempDir dir;
  std::string path = dir.str() + "/s.db";
  SqliteStore s(path);
  s.begin();
  CHECK_THROWS_AS(s.defer_sync(), std::logic_error);  // never inside a unit of work
  s.rollback();
  auto* syncer = s.defer_sync();
  REQUIRE(syncer);
  CHECK(s.defer_sync() == syncer);
  const auto before = syncer->written();
  s.begin();
  CHECK(s.position("orders") == 0);  // a unit that only reads is no write
  s.commit();
  CHECK(syncer->written() == before);
  s.begin();
  s.append_event(event(s.head() + 1));
  s.commit();
  CHECK(syncer->written() == before + 1);
  CHECK(syncer->written() == before + 1);  // asking again is not a write
  CHECK_NOTHROW(syncer->sync());
  // A WAL removed under the running store would make a sync of nothing: an error.
  std::filesystem::remove(path + "-wal");
  CHECK_THROWS_WITH(syncer->sync(), path + "-wal was removed or replaced under the running store: its commits "
                                            "since are in no file a restart reads");

  SqliteStore normal(dir.str() + "/n.db", troupe::Synchronous::normal);
  CHECK(normal.defer_sync() == nullptr);  // no promise to the disk to keep
  MemoryStore memory;
  CHECK(memory.defer_sync() == nullptr);
}
