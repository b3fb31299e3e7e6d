// The Store port's contract, run against both adapters: SQLite (real files) and memory.
#include <troupe/adapters/memory/memory_store.hpp>
#include <troupe/adapters/sqlite/sqlite_store.hpp>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <filesystem>
#include <memory>

#include "../../support/test_mesh.hpp"

using troupe::adapters::MemoryStore;
using troupe::adapters::SqliteStore;
using troupe::ports::OutboxEvent;
using troupe::ports::Store;

namespace {

OutboxEvent event(std::uint64_t seq) {
  return {seq, "Ping", "c-" + std::to_string(seq), "cause", "env" + std::to_string(seq), "payload"};
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
    auto id = s.add_dead_letter({0, "2026-11-27T00:00:00Z", "commands", "cli", "PlaceOrder", "bad",
                                 {std::string("\x00\x01", 2), "second"}});
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
                    Catch::StartsWith("/nonexistent/dir/s.db: cannot open"));
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
