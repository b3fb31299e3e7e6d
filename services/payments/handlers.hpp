// payments: decode -> decide -> store -> emit.
#pragma once

#include "../shop/seed.hpp"

#include <troupe/runtime/node.hpp>

namespace shop::payments {
void install(troupe::Node& node, const Seed& seed);
}
