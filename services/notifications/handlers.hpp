// notifications: decode -> decide -> store.
#pragma once

#include "../shop/seed.hpp"

#include <troupe/runtime/handlers.hpp>

namespace shop::notifications {
void install(troupe::Handlers& node, const Seed& seed);
}
