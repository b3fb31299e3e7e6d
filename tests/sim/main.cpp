// troupe_sim: the deterministic simulator of the delivery core (docs/guarantees.md,
// "The simulator"). One seed reproduces a run exactly.
#include "shop.hpp"
#include "world.hpp"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

using namespace troupe;

namespace {

struct Outcome {
  std::optional<sim::Failure> failure;
  std::uint64_t delivered = 0;
};

Outcome run_one(sim::Options o) {
  sim::World world(o);
  Outcome out;
  out.failure = world.run();
  out.delivered = world.delivered;
  return out;
}

// The fewest fault kinds that still break the promise on this seed: each is switched
// off in turn and kept off when the failure stays.
unsigned shrink(sim::Options o) {
  for (unsigned bit = 1; bit <= sim::kAllFaults; bit <<= 1) {
    if (!(o.faults & bit)) continue;
    sim::Options t = o;
    t.faults &= ~bit;
    if (run_one(t).failure) o.faults = t.faults;
  }
  return o.faults;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"troupe_sim: the delivery core under a simulated network, disk and clock"};
  std::uint64_t seed = 0, seeds = 1, steps = 20000;
  double minutes = 0;
  std::string mutation = "none", scenario = "pair";
  bool expect_failure = false, verbose = false, no_shrink = false;
  app.add_option("--seed", seed, "first seed (default: from the time, printed)");
  app.add_option("--seeds", seeds, "how many consecutive seeds to run")->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "steps of 5 simulated ms per run, before the quiescent end");
  app.add_option("--minutes", minutes, "run consecutive seeds for this long instead of --seeds");
  app.add_option("--scenario", scenario,
                 "pair: a synthetic publisher and two subscribers; shop: the shop's five services with their "
                 "own handlers, and verify's invariants at rest")
      ->check(CLI::IsMember({"pair", "shop"}))
      ->capture_default_str();
  app.add_option("--mutation", mutation, "switch on a planted bug in the core (to prove the checks bite)");
  std::string faults_list;
  app.add_option("--faults", faults_list, "the kinds of fault to inject, comma-separated (default: all): " +
                                              sim::fault_names(sim::kAllFaults));
  app.add_flag("--expect-failure", expect_failure, "exit 0 only if some seed breaks the promise (mutation tests)");
  std::string expect_text;
  app.add_option("--expect-text", expect_text,
                 "with --expect-failure: ... and the broken promise says this (the planted bug, not another one)");
  app.add_flag("--no-shrink", no_shrink, "do not look for the fewest faults that still fail");
  app.add_flag("-v,--verbose", verbose, "print every event of the run");
  bool wiring = false;
  app.add_flag("--shop-wiring", wiring,
               "print the shop scenario's wiring and what each service's install() registered "
               "(SERVICE: PUBLISHER... | reacts: TYPE... | accepts: TYPE...) and exit");
  CLI11_PARSE(app, argc, argv);
  if (mutation == sim::kStateOutsideUnitOfWork && scenario != "shop") {
    std::cerr << "troupe_sim: " << sim::kStateOutsideUnitOfWork << " is planted in the shop's services: use --scenario shop\n";
    return 2;
  }
  if (wiring) {
    for (const auto& s : sim::shop_services()) {
      sim::Service service(s.name);
      std::printf("%s:", s.name.c_str());
      for (const auto& p : s.publishers) std::printf(" %s", p.c_str());
      std::printf(" | reacts:");
      for (const auto& t : service.reactions()) std::printf(" %s", t.c_str());
      std::printf(" | accepts:");
      for (const auto& t : service.accepted()) std::printf(" %s", t.c_str());
      std::printf("\n");
    }
    return 0;
  }

  core::active_mutation = core::Mutation::none;
  for (auto m : core::kMutations)
    if (core::to_string(m) == mutation) core::active_mutation = m;
  const bool node_mutation = mutation == sim::kStateOutsideUnitOfWork;
  if (mutation != "none" && core::active_mutation == core::Mutation::none && !node_mutation) {
    std::cerr << "troupe_sim: unknown mutation '" << mutation << "'; known:";
    for (auto m : core::kMutations) std::cerr << " " << core::to_string(m);
    std::cerr << " " << sim::kStateOutsideUnitOfWork << " (shop)\n";
    return 2;
  }
  unsigned faults = sim::kAllFaults;
  if (!faults_list.empty()) {
    faults = 0;
    std::string rest = faults_list + ",";
    for (std::size_t at; (at = rest.find(',')) != std::string::npos; rest.erase(0, at + 1)) {
      std::string name = rest.substr(0, at);
      unsigned found = 0;
      for (unsigned bit = 1; bit <= sim::kAllFaults; bit <<= 1)
        if (sim::fault_names(bit) == name) found = bit;
      if (!found && name != "none") {
        std::cerr << "troupe_sim: unknown fault '" << name << "'; known: " << sim::fault_names(sim::kAllFaults) << "\n";
        return 2;
      }
      faults |= found;
    }
  }
  if (!app.count("--seed"))
    seed = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) % 1000000007;

  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(minutes * 60);
  std::uint64_t runs = 0, delivered = 0;
  std::optional<sim::Failure> failure;
  sim::Options options;
  options.steps = steps;
  options.verbose = verbose;
  options.faults = faults;
  options.scenario = scenario;
  options.state_outside_unit_of_work = node_mutation;
  for (std::uint64_t s = seed;; ++s) {
    if (minutes > 0 ? std::chrono::steady_clock::now() >= deadline : runs >= seeds) break;
    options.seed = s;
    auto out = run_one(options);
    ++runs;
    delivered += out.delivered;
    if (out.failure) {
      failure = out.failure;
      break;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("troupe_sim: %s, %llu run(s) from seed %llu, %llu steps each, mutation %s: %llu deliveries in %.1f s "
              "(%.0f per second, %.1f million per minute)\n",
              scenario.c_str(), static_cast<unsigned long long>(runs), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(steps), mutation.c_str(), static_cast<unsigned long long>(delivered),
              secs, delivered / secs, delivered / secs * 60 / 1e6);
  if (!failure) {
    std::printf("no broken promise found\n");
    return expect_failure ? 1 : 0;
  }
  std::printf("BROKEN PROMISE at seed %llu, step %llu: %s\n", static_cast<unsigned long long>(options.seed),
              static_cast<unsigned long long>(failure->step), failure->what.c_str());
  if (!no_shrink) {
    unsigned faults = shrink(options);
    std::printf("fewest faults that still break it: %s\n", sim::fault_names(faults).c_str());
    sim::Options o = options;
    o.faults = faults;
    if (auto f = run_one(o).failure) {
      failure = f;
      std::printf("with those faults only, at step %llu: %s\n", static_cast<unsigned long long>(f->step),
                  f->what.c_str());
    }
    std::printf("reproduce: troupe_sim --scenario %s --seed %llu --steps %llu%s%s --faults %s\n",
                scenario.c_str(), static_cast<unsigned long long>(options.seed), static_cast<unsigned long long>(steps),
                mutation == "none" ? "" : " --mutation ", mutation == "none" ? "" : mutation.c_str(),
                sim::fault_names(faults).c_str());
  }
  std::printf("last events before it:\n");
  for (const auto& line : failure->trace) std::printf("  %s\n", line.c_str());
  if (expect_failure && failure->what.find(expect_text) == std::string::npos) {
    std::printf("expected a broken promise saying '%s': this is another one\n", expect_text.c_str());
    return 1;
  }
  return expect_failure ? 0 : 1;
}
