// The switch of the simulator's build of the core (TROUPE_CORE_MUTANTS).
#include <troupe/core/mutation.hpp>

namespace troupe::core {
#ifdef TROUPE_CORE_MUTANTS
Mutation active_mutation = Mutation::none;
#endif
}  // namespace troupe::core
