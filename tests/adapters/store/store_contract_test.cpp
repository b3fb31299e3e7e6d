// The Store port's contract, run against both adapters: SQLite (real files) and memory.
#include <troupe/adapters/memory/memory_store.hpp>
#include <troupe/adapters/sqlite/sqlite_store.hpp>

#include <catch2/catch.hpp>

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
