// UUIDv7 ids: format, time order, uniqueness across threads.
#include <troupe/domain/id.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <set>
#include <thread>
#include <vector>

using troupe::id_unix_ms;
using troupe::new_id;

TEST_CASE("an id is a canonical UUIDv7", "[id]") {
  std::string id = new_id();
  REQUIRE(id.size() == 36);
  CHECK(id[8] == '-');
  CHECK(id[13] == '-');
  CHECK(id[14] == '7');  // version nibble
  CHECK(std::string("89ab").find(id[19]) != std::string::npos);  // RFC 9562 variant
}

TEST_CASE("an id carries the time it was made", "[id]") {
  auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto ms = id_unix_ms(new_id());
  auto after = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  REQUIRE(ms);
  CHECK(*ms >= before);
  CHECK(*ms <= after + 1);
}

TEST_CASE("ids made on one thread sort in the order they were made", "[id]") {
  std::vector<std::string> ids;
  for (int i = 0; i < 20000; ++i) ids.push_back(new_id());
  for (std::size_t i = 1; i < ids.size(); ++i) REQUIRE(ids[i - 1] < ids[i]);
}

TEST_CASE("ids made on many threads at once never collide", "[id]") {
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::vector<std::string>> per(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) per[t].push_back(new_id());
    });
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (auto& v : per) all.insert(v.begin(), v.end());
  CHECK(all.size() == std::size_t{kThreads} * kEach);
}

TEST_CASE("a string that is not a UUIDv7 has no time", "[id]") {
  CHECK_FALSE(id_unix_ms("not-an-id"));
  CHECK_FALSE(id_unix_ms("0193c8f2-7a4b-4c3d-9e1f-0a1b2c3d4e5f"));  // version 4
  CHECK_FALSE(id_unix_ms("0193c8f2-7a4b-7c3d-9e1f-0a1b2c3d4e5g"));  // wrong length + char
}
