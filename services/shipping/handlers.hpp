// shipping: decode -> decide -> store -> emit.
#pragma once

#include "../shop/seed.hpp"

#include <troupe/runtime/handlers.hpp>

namespace shop::shipping {
void install(troupe::Handlers& node, const Seed& seed);
}
