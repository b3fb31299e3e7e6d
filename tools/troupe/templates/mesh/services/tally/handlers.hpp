// tally's handlers: its rules, installed on a node.
#pragma once

#include <troupe/runtime/handlers.hpp>

namespace {{mesh_ns}}::tally {

void install(troupe::Handlers& node);

}  // namespace {{mesh_ns}}::tally
