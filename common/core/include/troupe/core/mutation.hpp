// Planted bugs, for proving that the simulator bites (tests/sim). The runtime is built
// without TROUPE_CORE_MUTANTS, where mutant() is a constant false and every mutated
// branch compiles away; the simulator links a second build of the same sources with
// it, where one mutation at a time can be switched on.
#pragma once

#include <string_view>

namespace troupe::core {

enum class Mutation {
  none,
  skip_gap_check,            // apply an event past a gap as if it were next
  ack_before_commit,         // acknowledge commands a batch has not committed yet
  forget_incarnation_check,  // follow a publisher whose store was replaced
  drop_command_dedup,        // apply a sequenced command again
  apply_replay_twice,        // apply the last event of a replay page again
  accept_regressed_head,     // follow a publisher that lost committed events, in silence
};

inline constexpr Mutation kMutations[] = {
    Mutation::skip_gap_check,   Mutation::ack_before_commit,  Mutation::forget_incarnation_check,
    Mutation::drop_command_dedup, Mutation::apply_replay_twice, Mutation::accept_regressed_head};

constexpr std::string_view to_string(Mutation m) {
  switch (m) {
    case Mutation::none: return "none";
    case Mutation::skip_gap_check: return "skip_gap_check";
    case Mutation::ack_before_commit: return "ack_before_commit";
    case Mutation::forget_incarnation_check: return "forget_incarnation_check";
    case Mutation::drop_command_dedup: return "drop_command_dedup";
    case Mutation::apply_replay_twice: return "apply_replay_twice";
    case Mutation::accept_regressed_head: return "accept_regressed_head";
  }
  return "?";
}

#ifdef TROUPE_CORE_MUTANTS
// The one switched on (simulator builds only).
extern Mutation active_mutation;
inline bool mutant(Mutation m) { return active_mutation == m; }
#else
constexpr bool mutant(Mutation) { return false; }
#endif

}  // namespace troupe::core
