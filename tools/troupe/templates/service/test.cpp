// {{name}}'s pure rules.
#include "../services/{{name}}/{{name}}.hpp"

#include <catch2/catch.hpp>

using namespace {{mesh_ns}}::{{name}};

TEST_CASE("{{name}} records a value under its key") {
  auto recorded = record(Record{{Name}}{"k", "v"});
  REQUIRE(recorded);
  CHECK(recorded->key == "k");
  CHECK(recorded->value == "v");
}

TEST_CASE("{{name}} refuses an empty key") { CHECK_FALSE(record(Record{{Name}}{"", "v"})); }
