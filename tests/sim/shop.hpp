// The shop in the simulator: each of the five services runs its own handlers (installed
// by the same install() its executable uses) over a simulated node's disk. A handler's
// writes and emitted events are kept apart until it returns, as the node's savepoint
// keeps them: a rejected message leaves nothing behind.
#pragma once

#include "world.hpp"

#include "shop/seed.hpp"

#include <troupe/ports/state.hpp>
#include <troupe/runtime/handlers.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace troupe::sim {

// The seed every shop run starts from: few SKUs and customers, some of them short of
// stock or credit, so that sagas end both ways.
const shop::Seed& shop_seed();

// Who reacts to whom in the shop (as topology/shop.toml says; a test compares them).
struct ShopService {
  std::string name;
  std::vector<std::string> publishers;
};
const std::vector<ShopService>& shop_services();

class Service final : public Handlers, public Stager, public ports::State {
 public:
  explicit Service(const std::string& name);

  struct Emitted {
    std::string type, payload, correlation;
  };
  struct Outcome {
    bool handled = false;       // some handler of this service took the message
    std::string rejected;       // the handler's reason, when it refused it
    std::vector<Emitted> events;
  };
  bool reacts(const std::string& type) const { return events_.count(type) != 0; }
  // What install() registered: the events it reacts to and the commands it accepts.
  std::vector<std::string> reactions() const;
  std::vector<std::string> accepted() const;
  // Runs the handler of `type` (an event it reacts to, or a command it accepts); its
  // writes reach `disk` only if it succeeds. Throws what the handler throws.
  Outcome apply(Disk& disk, bool command, const Envelope& env, const std::string& payload);
  // What the service's initialize() calls write (on each start: they only add what is missing).
  void seed(Disk& disk);
  // Answers one of the service's queries from the committed state.
  Result<std::string> query(Disk& disk, const std::string& type, const std::string& payload);

  // Handlers
  void on_event_raw(std::string_view type, EventHandler handler) override;
  void on_command_raw(std::string_view type, EventHandler handler) override;
  void on_query_raw(std::string_view type, QueryHandler handler) override;
  void initialize(const std::function<void(StateView&)>& f) override;
  // Stager
  void stage_event(const Envelope& cause, std::string_view type, std::string payload,
                   std::string correlation) override;
  void stage_command(const Envelope& cause, std::string_view target, std::string_view type,
                     std::string payload, std::string correlation) override;
  // ports::State over the disk's tables and this message's writes
  std::optional<std::string> get(std::string_view table, std::string_view key) override;
  void put(std::string_view table, std::string_view key, std::string_view value) override;
  void erase(std::string_view table, std::string_view key) override;
  void scan(std::string_view table, const std::function<bool(std::string_view, std::string_view)>& visit) override;
  void scan_after(std::string_view table, std::string_view after_key,
                  const std::function<bool(std::string_view, std::string_view)>& visit) override;

 private:
  std::map<std::string, EventHandler, std::less<>> events_, commands_;
  std::map<std::string, QueryHandler, std::less<>> queries_;
  std::vector<std::function<void(StateView&)>> initializers_;
  Disk* disk_ = nullptr;
  std::map<std::pair<std::string, std::string>, std::optional<std::string>> writes_;
  std::vector<Emitted> emitted_;
};

// The shop's invariants over the simulated services' committed state (what `troupe
// verify` checks over a live mesh): the violations found, or an error.
std::vector<std::string> shop_violations(World& world);

}  // namespace troupe::sim
