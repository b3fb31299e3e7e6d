// notifications: decode -> decide -> store.
#pragma once

#include "../shop/seed.hpp"

#include <troupe/runtime/node.hpp>

namespace shop::notifications {
void install(troupe::Node& node, const Seed& seed);
}
