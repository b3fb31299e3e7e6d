// troupe-shop: the example shop's own commands, `troupe shop load` and `troupe shop
// verify`. `troupe` runs it for `troupe shop …` (docs/operations.md "Commands of your
// own"): the generic CLI knows nothing of orders or SKUs.
#include "shop_cli.hpp"

#include <troupe/runtime/version.hpp>

#include <iostream>

int main(int argc, char** argv) {
  using namespace troupe::cli;
  CLI::App app{"troupe shop: drive the example shop and check its invariants", "troupe shop"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(troupe::kVersion));
  std::vector<Runner> runners{add_load(app), add_verify(app)};
  return run_app(app, runners, argc, argv, "troupe shop");
}
