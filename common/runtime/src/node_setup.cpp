// NodeCore, its sockets and store: construction, the state directory and lock, binding
// (with the ipc guard), socket monitors, the connections to publishers and command
// receivers, and closing.
#include "node_core.hpp"

#include <troupe/domain/id.hpp>
#include <troupe/adapters/zmq/keys.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace troupe::detail {

namespace {

// Creates `dir` (and its parents) readable by this user only; an existing directory
// is left as it is. Throws one line naming the directory and the reason.
void make_private_dir(const std::string& service, const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("service '" + service + "': cannot create directory " + dir.string() + ": " +
                             ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
}

void make_ipc_dir(const std::string& service, const std::string& endpoint) {
  std::filesystem::path p(IpcGuard::path_of(endpoint));
  if (p.has_parent_path()) make_private_dir(service, p.parent_path());
}

// Lock files this process holds: a second Node of the same service in this process
// is told so, not that "another process" holds the lock.
std::mutex g_locks_mutex;
std::set<std::string> g_locks;

}  // namespace

std::string_view view(const zmq::message_t& m) {
  return std::string_view(static_cast<const char*>(m.data()), m.size());
}

NodeCore::NodeCore(Topology topology, std::string service, NodeOptions options)
    : topology_(std::move(topology)),
      name_(std::move(service)),
      options_(std::move(options)),
      rate_limits_(topology_) {
  self_ = topology_.find(name_);
  if (!self_)
    throw std::runtime_error("service '" + name_ + "' is not in topology " + topology_.file);
  log_ = spdlog::get(name_);
  if (!log_) {
    log_ = spdlog::stderr_color_mt(name_);
    log_->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %^%l%$: %v");
  }
  if (options_.context) {
    context_ = options_.context;
  } else {
    own_context_ = std::make_unique<zmq::context_t>(1);
    context_ = own_context_.get();
  }
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  post_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  sync_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stop_fd_ < 0 || post_fd_ < 0 || sync_fd_ < 0) throw std::runtime_error(name_ + ": eventfd: " + std::strerror(errno));
  try {
    open_store();
    bind_all();
  } catch (...) {
    close_all();
    throw;
  }
}

NodeCore::~NodeCore() { close_all(); }

void NodeCore::open_store() {
  const auto& d = topology_.defaults;
  make_private_dir(name_, d.state_dir);
  struct stat st {};
  if (::stat(d.state_dir.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
    log_->warn("state directory {} is open to other users (mode {:o}): its stores and logs hold every "
               "message; chmod 700 it", d.state_dir, st.st_mode & 07777);
  std::string lock_path = d.state_dir + "/" + name_ + ".lock";
  {
    std::lock_guard lock(g_locks_mutex);
    if (g_locks.count(lock_path))
      throw std::runtime_error("service '" + name_ + "' already has a Node in this process (lock " + lock_path +
                               ")");
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0)
      throw std::runtime_error("service '" + name_ + "': cannot open lock file " + lock_path + ": " +
                               std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
      throw std::runtime_error("service '" + name_ + "' is already running (lock " + lock_path +
                               " is held by another process)");
    g_locks.insert(lock_path);
    lock_path_ = lock_path;
  }
  check_partition_files();
  store_ = options_.store ? options_.store : default_store(topology_, name_);
  epoch_ = store_->epoch();
  check_partition_count();
}

// Changing a service's partition count re-hashes its keys: every key may now belong to
// another instance, whose store does not hold it. That is never done in silence (a
// store of the other layout beside this one, or a count recorded in this store that
// differs), and docs/operations.md says how to move from N to M.
void NodeCore::check_partition_files() {
  if (options_.store || topology_.defaults.durability != Durability::durable) return;
  const std::string other = other_layout_store(topology_.defaults.state_dir, *self_);
  std::error_code ec;
  if (std::filesystem::exists(other, ec))
    throw std::runtime_error("service '" + name_ + "': " + other + " is the store of " +
                             (self_->partitioned() ? "an unpartitioned " + self_->group
                                                   : "a partitioned " + name_) +
                             ", and the topology now says " + std::to_string(self_->partitions) +
                             " partition(s): its keys would be lost or owned twice. Move it as "
                             "docs/operations.md \"Changing the partition count\" says, or remove it");
}

void NodeCore::check_partition_count() {
  // The count, and the key: another field (or per-type rule) re-hashes keys just the same.
  auto recorded = store_->get(kNodeTable, "partitions");
  auto rule = store_->get(kNodeTable, "partition key");
  if (auto differs = partition_record_mismatch(*self_, recorded, rule); !differs.empty())
    throw std::runtime_error("service '" + name_ + "': its store was " + differs +
                             ": the keys would be re-hashed to other instances. Move it as docs/operations.md "
                             "\"Changing the partition count\" says");
  if (!recorded || (self_->partitioned() && !rule)) {
    store_->begin();
    store_->put(kNodeTable, "partitions", std::to_string(self_->partitions));
    if (self_->partitioned()) store_->put(kNodeTable, "partition key", self_->key_rule());
    store_->commit();
  }
}

zmq::socket_t NodeCore::make_socket(zmq::socket_type type) {
  return transport::make_socket(*context_, type,
                                {topology_.defaults.heartbeat, topology_.defaults.max_message_bytes, 500});
}

void NodeCore::bind_all() {
  if (topology_.curve()) setup_curve();
  auto bind = [&](zmq::socket_t& s, const std::string& endpoint, const char* role, std::string& out) {
    make_ipc_dir(name_, endpoint);
    // ZeroMQ would unlink a live ipc socket of another process and take its place. A
    // listener of a process that is exiting (libzmq closes it after the lock is gone)
    // is given a moment.
    auto path = IpcGuard::path_of(endpoint);
    for (int i = 0; i < 10 && IpcGuard::served(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (IpcGuard::served(path))
      throw std::runtime_error("service '" + name_ + "': cannot bind " + role + " endpoint " + endpoint +
                               ": another process is serving it (a second mesh on the same paths?)");
    try {
      s.bind(endpoint);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("service '" + name_ + "': cannot bind " + role + " endpoint " +
                               endpoint + ": " + e.what());
    }
    out = s.get(zmq::sockopt::last_endpoint);
    ipc_guard_.watch(endpoint);
    if (!IpcGuard::path_of(endpoint).empty()) ipc_sockets_.emplace_back(endpoint, &s);
  };
  pub_ = make_socket(zmq::socket_type::xpub);
  pub_.set(zmq::sockopt::xpub_verboser, 1);
  // Manual: a subscription takes effect only when on_subscription applies it, so a peer
  // that may read events but is no tap never receives the `$tap ` mirrors.
  pub_.set(zmq::sockopt::xpub_manual, 1);
  // What reaches an XPUB is subscriptions, which libzmq keeps (a trie node per byte)
  // before the node sees them: none may be much longer than the longest topic it sends.
  // The bound also applies to the handshake (a CURVE INITIATE is some 300 bytes), so
  // it is never below 4 KiB.
  std::size_t longest = std::max(builtin::kHeartbeatTopic.size(), builtin::kTapTopic.size());
  for (const auto& t : self_->publishes) longest = std::max(longest, t.size() + 1);
  pub_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(std::max<std::size_t>(longest + 64, 4096)));
  pub_.set(zmq::sockopt::sndhwm, options_.pub_sndhwm);
  pull_ = make_socket(zmq::socket_type::pull);
  router_ = make_socket(zmq::socket_type::router);
  router_.set(zmq::sockopt::sndhwm, 100000);
  secure_server(pub_, "events");
  secure_server(pull_, "commands");
  secure_server(router_, "queries");
  bind(pub_, self_->endpoints.events, "events", bound_.events);
  bind(pull_, self_->endpoints.commands, "commands", bound_.commands);
  bind(router_, self_->endpoints.queries, "queries", bound_.queries);
  std::string ignored;
  if (!self_->expose.events.empty()) bind(pub_, self_->expose.events, "exposed events", ignored);
  if (!self_->expose.commands.empty()) bind(pull_, self_->expose.commands, "exposed commands", ignored);
  if (!self_->expose.queries.empty()) bind(router_, self_->expose.queries, "exposed queries", ignored);
}

void NodeCore::start_monitors() {
  for (zmq::socket_t* s : {&pub_, &pull_, &router_}) monitors_.watch(*context_, *s, name_);
}

void NodeCore::connect_all() {
  // Every sender's position from the start, so heartbeats acknowledge what this store
  // has applied of each (not only of those that sent something since).
  for (const auto& svc : topology_.services)
    if (sends_to_us(svc.name))
      command_inbox_.restore(svc.name, store_->position("cmd:" + svc.name),
                             store_->get(kSendersTable, svc.name).value_or(""));
  for (const auto& sub : self_->reacts_to) {
    const ServiceSpec* pub = topology_.find(sub.publisher);
    if (!pub) continue;  // check_topology rejects this earlier
    // "INCARNATION EPOCH [lost]" (the epoch is absent in stores from before epochs).
    auto up = std::make_unique<Upstream>(
        pub->name,
        core::StreamSettings{topology_.defaults.heartbeat, store_->durable(), topology_.defaults.max_message_bytes},
        store_->position(pub->name),
        core::InboundStream::parse_identity(store_->get(kUpstreamsTable, pub->name).value_or("")));
    up->stream.recall(fx_);
    carry_out(nullptr, fx_);
    up->endpoints = pub->endpoints;
    for (const auto& t : sub.types) up->reacts.insert(t);
    open_subscription(*up);
    open_replay(*up);
    upstreams_.push_back(std::move(up));
  }
  for (const auto& route : self_->sends)
    for (const ServiceSpec* target : topology_.instances(route.target)) connect_downstream(*target);
}

void NodeCore::connect_downstream(const ServiceSpec& spec) {
  const ServiceSpec* target = &spec;
  if (downstreams_.count(target->name)) return;
  // How far it acknowledged our commands: they are acknowledged in prefixes, so up to
  // the first one still waiting (or all of them).
  const auto head = store_->command_head(target->name);
  const auto waiting = store_->unacked_commands(target->name, 1);
  // Commands from here on are held back until the receiver's first heartbeat is
  // checked; an earlier start whose check never came held back some already, which
  // were never sent either: the mark stays where that start put it.
  const std::string held_key = target->name + " held";
  auto held = store_->get(kDownstreamsTable, held_key).value_or("none");
  std::uint64_t held_from = held == "none" ? head + 1 : std::strtoull(held.c_str(), nullptr, 10);
  if (held_from == 0 || held_from > head + 1) held_from = head + 1;
  if (held == "none") {
    store_->begin();
    store_->put(kDownstreamsTable, held_key, std::to_string(held_from));
    store_->commit();
  }
  auto down = std::make_unique<Downstream>(target->name, held_from - 1,
                                           waiting.empty() ? head : waiting.front().sequence - 1,
                                           store_->get(kDownstreamsTable, target->name).value_or(""),
                                           topology_.defaults.heartbeat);
  down->endpoints = target->endpoints;
  down->push = make_socket(zmq::socket_type::push);
  secure_client(down->push, target->name);
  down->push.connect(target->endpoints.commands);
  down->heartbeats = make_socket(zmq::socket_type::sub);
  down->heartbeats.set(zmq::sockopt::subscribe, builtin::kHeartbeatTopic);
  secure_client(down->heartbeats, target->name);
  down->heartbeats.connect(target->endpoints.events);
  downstreams_.emplace(down->name, std::move(down));
}

void NodeCore::open_subscription(Upstream& up) {
  const ServiceSpec* pub = topology_.find(up.name);
  up.sub.close();
  up.sub = make_socket(zmq::socket_type::sub);
  up.sub.set(zmq::sockopt::rcvhwm, options_.sub_rcvhwm);
  // Every type of the publisher: its sequence is one stream, so events we do not
  // handle still move our position (and a missing one is a gap, not a filter).
  for (const auto& t : pub->publishes) up.sub.set(zmq::sockopt::subscribe, topic_of(t));
  up.sub.set(zmq::sockopt::subscribe, builtin::kHeartbeatTopic);
  secure_client(up.sub, pub->name);
  up.sub.connect(pub->endpoints.events);
  up.stream.subscribed(Clock::now());
}

void NodeCore::open_replay(Upstream& up) {
  const ServiceSpec* pub = topology_.find(up.name);
  up.dealer.close();
  up.dealer = make_socket(zmq::socket_type::dealer);
  up.dealer.set(zmq::sockopt::immediate, 1);
  up.dealer.set(zmq::sockopt::linger, 0);
  secure_client(up.dealer, pub->name);
  up.dealer.connect(pub->endpoints.queries);
}

void NodeCore::close_all() noexcept {
  for (zmq::socket_t* s : {&pub_, &pull_, &router_})
    if (s->handle()) zmq_socket_monitor(s->handle(), nullptr, 0);
  monitors_.close();
  for (auto& up : upstreams_) {
    up->sub.close();
    up->dealer.close();
  }
  upstreams_.clear();
  for (auto& [_, d] : downstreams_) {
    d->push.close();
    d->heartbeats.close();
  }
  downstreams_.clear();
  pub_.close();
  pull_.close();
  router_.close();
  if (zap_) {
    for (const char* e : {"events", "commands", "queries"}) zap_->forget(name_ + "/" + e);
    zap_.reset();  // before an owned context closes: the last node stops the authority
  }
  sync_.reset();  // before its eventfd and the store
  for (int* fd : {&stop_fd_, &post_fd_, &sync_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  store_.reset();
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
    std::lock_guard lock(g_locks_mutex);
    g_locks.erase(lock_path_);
  }
  lock_fd_ = -1;
}

void NodeCore::stop() noexcept {
  stop_requested_.store(true);
  if (stop_fd_ >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
  }
}

// Each heartbeat: are the ipc socket files we bound still ours? A removed one, or a
// dead socket left in its place, is bound again; one another live process serves is
// reported (peers reach that process, not this service) until it is gone.
void NodeCore::check_endpoints() {
  std::string error;
  for (const auto& st : ipc_guard_.check()) {
    if (st.finding == IpcGuard::Finding::ours) continue;
    if (st.finding == IpcGuard::Finding::replaced_live) {
      if (error.empty())
        error = "ipc endpoint " + st.endpoint + " was taken over by another process: peers reach it, not " + name_;
      continue;
    }
    auto it = std::find_if(ipc_sockets_.begin(), ipc_sockets_.end(), [&](auto& e) { return e.first == st.endpoint; });
    if (it == ipc_sockets_.end()) continue;
    try {
      try {
        it->second->unbind(st.endpoint);
      } catch (const zmq::error_t&) {
      }
      it->second->bind(st.endpoint);
      ipc_guard_.watch(st.endpoint);
      log_->warn("ipc endpoint {} was {}; bound it again", st.endpoint,
                 st.finding == IpcGuard::Finding::removed ? "removed" : "replaced by a dead socket");
    } catch (const zmq::error_t& e) {
      if (error.empty()) error = "cannot bind ipc endpoint " + st.endpoint + " again: " + e.what();
    }
  }
  if (error == endpoint_error_) return;
  if (!error.empty())
    log_->error("{}", error);
  else
    log_->info("every endpoint is this service's again");
  endpoint_error_ = error;
  refresh_state();
}

}  // namespace troupe::detail
