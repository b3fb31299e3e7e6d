// Node and Context: the public facade over NodeCore (whose rooms are node_setup.cpp,
// reactor.cpp, streams.cpp, messages.cpp, queries.cpp and security.cpp), and stopping
// nodes on a signal. One thread runs a node (DESIGN.md §4-§5).
#include "node_core.hpp"

#include <algorithm>
#include <csignal>
#include <mutex>

namespace troupe {

void Context::emit_raw(std::string_view type, std::string payload, std::string correlation) {
  core_->stage_event(*message_, type, std::move(payload), std::move(correlation));
}

void Context::send_raw(std::string_view service, std::string_view type, std::string payload,
                       std::string correlation) {
  core_->stage_command(*message_, service, type, std::move(payload), std::move(correlation));
}

Node::Node(Topology topology, std::string service, NodeOptions options)
    : core_(std::make_unique<detail::NodeCore>(std::move(topology), std::move(service), std::move(options))) {}

Node::~Node() = default;

void Node::on_event_raw(std::string_view type, EventHandler handler) {
  bool reacts = false;
  for (const auto& s : core_->self_->reacts_to)
    if (std::find(s.types.begin(), s.types.end(), type) != s.types.end()) reacts = true;
  if (!reacts)
    throw TopologyViolation("service '" + core_->name_ + "' handles event '" + std::string(type) +
                            "', but its topology does not react to it");
  core_->event_handlers_[std::string(type)] = std::move(handler);
}

void Node::on_command_raw(std::string_view type, EventHandler handler) {
  if (!core_->self_->accepts_type(type))
    throw TopologyViolation("service '" + core_->name_ + "' handles command '" + std::string(type) +
                            "', but its topology does not list it in accepts");
  core_->command_handlers_[std::string(type)] = std::move(handler);
}

void Node::on_query_raw(std::string_view type, QueryHandler handler) {
  if (!core_->self_->answers_type(type))
    throw TopologyViolation("service '" + core_->name_ + "' answers query '" + std::string(type) +
                            "', but its topology does not list it in answers");
  core_->query_handlers_[std::string(type)] = std::move(handler);
}

void Node::run() { core_->run(); }

void Node::initialize(const std::function<void(StateView&)>& f) {
  auto& store = *core_->store_;
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
const Endpoints& Node::bound() const { return core_->bound_; }
const std::string& Node::name() const { return core_->name_; }
const NodeCounters& Node::counters() const { return core_->counters_; }
ports::Store& Node::store() { return *core_->store_; }

void Node::set_peer_endpoints(const std::string& service, const Endpoints& endpoints) {
  if (auto* s = core_->topology_.find(service)) s->endpoints = endpoints;
  core_->self_ = core_->topology_.find(core_->name_);
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
