// Node: one service instance on brokerless ZeroMQ (DESIGN.md §5). It binds XPUB
// (events), PULL (commands) and ROUTER (queries) as its topology says, connects to the
// publishers it reacts to and the services it sends commands to, and runs one reactor
// loop: handlers run one at a time, so domain code needs no locks. In durable mode
// every batch of handled messages commits in one store transaction with what it
// emitted and the positions it consumed up to (docs/guarantees.md).
//
//   troupe::Node node(topology, "inventory");
//   node.on<OrderPlaced>([](const OrderPlaced& e, troupe::Context& ctx) { ... });
//   node.on_query<GetStock>([](const GetStock& q, const troupe::QueryContext& ctx) {
//     return StockLevel{...}; });
//   return troupe::run_until_signal(node);
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/domain/result.hpp>
#include <troupe/domain/topology.hpp>
#include <troupe/ports/store.hpp>
#include <troupe/runtime/context.hpp>
#include <troupe/runtime/handlers.hpp>
#include <troupe/runtime/metrics.hpp>
#include <troupe/runtime/version.hpp>

namespace zmq {
class context_t;
}

namespace troupe {

struct NodeOptions {
  // Shared context (required for inproc between nodes of one process); nullptr = own.
  zmq::context_t* context = nullptr;
  // Store override (tests); by default the topology's durability decides: SQLite file
  // <state_dir>/<service>.db, or memory.
  std::shared_ptr<ports::Store> store;
  // Receive high-water mark for subscriptions (tests make it tiny to force drops).
  int sub_rcvhwm = 100000;
  // Send high-water mark of the events socket.
  int pub_sndhwm = 100000;
};

// The node's counters (metrics.hpp): one struct, whose atomic counters any thread may
// read. (NodeCounters is its former name.)
using NodeCounters = Metrics;

namespace detail {
class NodeCore;
}

class Node final : public Handlers {
 public:
  // Binds the service's endpoints and opens its store. Throws std::runtime_error with
  // one clear line when the service is unknown, an address is in use, another instance
  // holds the state lock, or the store cannot be opened.
  Node(Topology topology, std::string service, NodeOptions options = {});
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Registrations (on<E>, on_command<C>, on_query<Q>: handlers.hpp) are checked against
  // the topology: a type the service may not handle throws TopologyViolation.
  void on_event_raw(std::string_view type, EventHandler handler) override;
  void on_command_raw(std::string_view type, EventHandler handler) override;
  void on_query_raw(std::string_view type, QueryHandler handler) override;

  // Runs `f` in one unit of work before the node serves (seeding state on first start,
  // say). Throws what f throws, or StoreError; nothing is kept unless it succeeds.
  void initialize(const std::function<void(StateView&)>& f) override;

  // Runs `task` every `period` on the node's thread, the first time one period after
  // run() starts; each run is a unit of work of its own batch (state and emitted events
  // commit together). A task that throws is rolled back and logged; the timer goes on.
  // Call before run() or from the node's thread (a handler or a task).
  void every(std::chrono::milliseconds period, Task task);
  // Runs `task` once, `delay` after run() starts (or after now, once running); same rules.
  void after(std::chrono::milliseconds delay, Task task);
  // Runs `task` on the node's thread as soon as it can: safe from any thread (a device
  // driver's callback). Tasks run in the order they were posted; one whose batch
  // cannot be committed (a failing store) is run again with the next batch.
  void post(Task task);

  // Runs the reactor on the calling thread until stop(). Throws only for a broken
  // environment (a store that cannot be written at start, say).
  void run();

  // Asks run() to return; safe from any thread and from a signal handler.
  void stop() noexcept;

  // The endpoints actually bound (tcp "*" ports resolved).
  const Endpoints& bound() const;
  // Tells the node where a peer really is (tests with tcp://127.0.0.1:* ports); before run().
  void set_peer_endpoints(const std::string& service, const Endpoints& endpoints);

  const std::string& name() const;
  const Metrics& counters() const;
  ports::Store& store();

 private:
  std::unique_ptr<detail::NodeCore> core_;
};

// Runs `node` until SIGTERM or SIGINT, then stops it cleanly. Returns the process exit
// code: 0 after a clean stop, 1 if the node failed (the reason is logged).
int run_until_signal(Node& node);

// Installs SIGTERM/SIGINT handlers that call stop() on every node given, e.g. for
// several nodes in one process, each run() on its own thread.
void stop_on_signal(std::vector<Node*> nodes);

}  // namespace troupe
