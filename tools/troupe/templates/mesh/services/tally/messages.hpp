// tally's messages: what it publishes and answers.
#pragma once

#include <troupe/domain/message.hpp>

#include <cstdint>
#include <string>

namespace {{mesh_ns}}::tally {

// How often a name was greeted (event; also the reply to GetCount and the stored row).
struct Counted {
  std::string name;
  std::uint64_t count = 0;
  TROUPE_MESSAGE(Counted, name, count)
};

// Asks tally how often a name was greeted (query).
struct GetCount {
  std::string name;
  using Reply = Counted;
  TROUPE_MESSAGE(GetCount, name)
};

}  // namespace {{mesh_ns}}::tally
