// Node: the public facade over NodeCore (whose rooms are node_setup.cpp,
// reactor.cpp, streams.cpp, messages.cpp, queries.cpp and security.cpp), and stopping
// nodes on a signal. One thread runs a node (DESIGN.md §4-§5).
#include "node_core.hpp"

#include <algorithm>
#include <csignal>
#include <mutex>

namespace troupe {

Node::Node(Topology topology, std::string service, NodeOptions options)
    : core_(std::make_unique<detail::NodeCore>(std::move(topology), std::move(service), std::move(options))) {}

Node::~Node() = default;

void Node::on_event_raw(std::string_view type, EventHandler handler) {
  core_->add_event_handler(type, std::move(handler));
}
void Node::on_command_raw(std::string_view type, EventHandler handler) {
  core_->add_command_handler(type, std::move(handler));
}
void Node::on_query_raw(std::string_view type, QueryHandler handler) {
  core_->add_query_handler(type, std::move(handler));
}

void Node::run() {
  core_->set_contract(contract_);
  core_->run();
}

void Node::initialize(const std::function<void(StateView&)>& f) {
  auto& store = core_->store();
  store.begin();
  try {
    StateView view(store);
    f(view);
    store.commit();
  } catch (...) {
    store.rollback();
    throw;
  }
}
void Node::every(std::chrono::milliseconds period, Task task) {
  if (period.count() <= 0) throw std::invalid_argument("Node::every: the period must be positive");
  core_->add_timer(period, period, std::move(task));
}
void Node::after(std::chrono::milliseconds delay, Task task) {
  core_->add_timer(std::max(delay, std::chrono::milliseconds(0)), {}, std::move(task));
}
void Node::post(Task task) { core_->post(std::move(task)); }
void Node::stop() noexcept { core_->stop(); }
const Endpoints& Node::bound() const { return core_->bound(); }
const std::string& Node::name() const { return core_->name(); }
const Metrics& Node::counters() const { return core_->counters(); }
ports::Store& Node::store() { return core_->store(); }
void Node::set_peer_endpoints(const std::string& service, const Endpoints& endpoints) {
  core_->set_peer_endpoints(service, endpoints);
}

namespace {
std::mutex g_signal_mutex;
Node* g_nodes_fixed[16];
std::atomic<int> g_nodes_count{0};

extern "C" void on_stop_signal(int) {
  int saved = errno;
  int n = g_nodes_count.load();
  for (int i = 0; i < n; ++i) g_nodes_fixed[i]->stop();
  errno = saved;
}
}  // namespace

void stop_on_signal(std::vector<Node*> nodes) {
  std::lock_guard lock(g_signal_mutex);
  int n = 0;
  for (Node* node : nodes)
    if (n < 16) g_nodes_fixed[n++] = node;
  g_nodes_count.store(n);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

int run_until_signal(Node& node) {
  stop_on_signal({&node});
  int code = 0;
  try {
    node.run();
  } catch (const std::exception& e) {
    spdlog::error("{}: {}", node.name(), e.what());
    code = 1;
  }
  g_nodes_count.store(0);  // the node may be destroyed after this: signals must not reach it
  return code;
}

}  // namespace troupe
