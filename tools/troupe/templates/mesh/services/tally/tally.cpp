#include "tally.hpp"

namespace {{mesh_ns}}::tally {

Counted count(const std::optional<Counted>& before, const greeter::Greeted& greeted) {
  return Counted{greeted.name, (before ? before->count : 0) + 1};
}

}  // namespace {{mesh_ns}}::tally
