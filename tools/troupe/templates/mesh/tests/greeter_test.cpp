// greeter's pure rules.
#include "../services/greeter/greeter.hpp"

#include <catch2/catch.hpp>

using namespace {{mesh_ns}}::greeter;

TEST_CASE("greeter greets by name") {
  auto greeted = greet(Greet{"Ada"});
  REQUIRE(greeted);
  CHECK(greeted->name == "Ada");
  CHECK(greeted->greeting == "hello, Ada");
}

TEST_CASE("greeter refuses an empty or overlong name") {
  CHECK_FALSE(greet(Greet{""}));
  CHECK_FALSE(greet(Greet{std::string(101, 'x')}));
  CHECK(greet(Greet{std::string(100, 'x')}));
}
