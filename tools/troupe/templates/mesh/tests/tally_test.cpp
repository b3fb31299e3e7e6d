// tally's pure rules.
#include "../services/tally/tally.hpp"

#include <catch2/catch.hpp>

using namespace {{mesh_ns}};

TEST_CASE("tally counts greetings per name") {
  auto first = tally::count(std::nullopt, greeter::Greeted{"Ada", "hello, Ada"});
  CHECK(first.name == "Ada");
  CHECK(first.count == 1);
  CHECK(tally::count(first, greeter::Greeted{"Ada", "hello, Ada"}).count == 2);
}
