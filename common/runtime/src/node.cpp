// The node: binding, connecting, the reactor loop, units of work, relay, replay,
// heartbeats and the built-in queries. One thread runs all of it (DESIGN.md §4-§5).
#include "node_core.hpp"

#include <troupe/runtime/keys.hpp>

#include <troupe/domain/id.hpp>

#include <utility>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <thread>
#include <filesystem>
#include <mutex>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <troupe/adapters/memory/memory_store.hpp>
#include <troupe/adapters/sqlite/sqlite_store.hpp>

namespace troupe {
namespace detail {
namespace {

using json = nlohmann::json;
using Code = Rejection::Code;

std::string to_msgpack(const json& j) {
  auto v = json::to_msgpack(j);
  return std::string(v.begin(), v.end());
}

std::string topic_of(std::string_view type) { return std::string(type) + " "; }

std::vector<std::string_view> views(const Frames& frames) {
  std::vector<std::string_view> v;
  v.reserve(frames.size());
  for (const auto& f : frames) v.push_back(view(f));
  return v;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

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

// Where a node keeps, per publisher, the incarnation its position refers to.
constexpr std::string_view kUpstreamsTable = "$upstreams";

std::string_view view(const zmq::message_t& m) {
  return std::string_view(static_cast<const char*>(m.data()), m.size());
}

// ---------------------------------------------------------------------------
// construction

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
  if (stop_fd_ < 0) throw std::runtime_error(name_ + ": eventfd: " + std::strerror(errno));
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
  if (options_.store) {
    store_ = options_.store;
  } else if (d.durability == Durability::durable) {
    store_ = std::make_shared<adapters::SqliteStore>(d.state_dir + "/" + name_ + ".db", d.synchronous);
  } else {
    store_ = std::make_shared<adapters::MemoryStore>();
  }
  epoch_ = store_->epoch();
}

zmq::socket_t NodeCore::make_socket(zmq::socket_type type) {
  zmq::socket_t s(*context_, type);
  auto hb = static_cast<int>(topology_.defaults.heartbeat.count());
  s.set(zmq::sockopt::linger, 500);
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(topology_.defaults.max_message_bytes));
  s.set(zmq::sockopt::heartbeat_ivl, hb);
  s.set(zmq::sockopt::heartbeat_timeout, hb * 3);
  s.set(zmq::sockopt::heartbeat_ttl, hb * 3);
  return s;
}

// ---------------------------------------------------------------------------
// CURVE

void NodeCore::setup_curve() {
  auto pair = keys::load(topology_.defaults.keys_dir, name_);
  if (!pair)
    throw std::runtime_error("service '" + name_ + "': security is \"curve\" but its key pair is unusable: " +
                             pair.error().message() + " (`troupe keygen --mesh` makes missing keys)");
  secret_key_ = pair->secret_key;
  public_key_ = pair->public_key;
  if (!self_->public_key.empty() && self_->public_key != public_key_)
    throw std::runtime_error("service '" + name_ + "': its secret key in " + topology_.defaults.keys_dir +
                             " does not belong to the public_key the topology gives it; peers would refuse it");
  auto need = [&](const std::string& service) {
    if (server_keys_.count(service)) return;
    auto key = keys::public_key(topology_, service);
    if (!key)
      throw std::runtime_error("service '" + name_ + "': no public key of '" + service + "': " + key.error().message());
    server_keys_[service] = *key;
  };
  for (const auto& sub : self_->reacts_to) need(sub.publisher);
  for (const auto& route : self_->sends) need(route.target);

  zap_ = detail::ZapAuthority::of(*context_);
  Admission admission = topology_.admission(*self_);
  event_readers_.insert(admission.events.begin(), admission.events.end());
  command_senders_.insert(admission.commands.begin(), admission.commands.end());
  for (auto [endpoint, names] : {std::pair{"events", &admission.events}, std::pair{"commands", &admission.commands},
                                 std::pair{"queries", &admission.queries}}) {
    std::map<std::string, std::string> allowed;  // raw key -> name
    for (const auto& who : *names) {
      auto key = keys::public_key(topology_, who);
      if (!key) {
        log_->warn("no public key of '{}' ({}): it cannot reach {} (allow-lists are read at start-up)", who,
                   key.error().message(), endpoint);
        continue;
      }
      allowed[keys::decode(*key)] = who;
    }
    zap_->allow(name_ + "/" + endpoint, std::move(allowed));
  }
}

void NodeCore::secure_server(zmq::socket_t& s, const char* endpoint) {
  if (!zap_) return;
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, secret_key_);
  s.set(zmq::sockopt::zap_domain, name_ + "/" + endpoint);
}

void NodeCore::secure_client(zmq::socket_t& s, const std::string& service) {
  if (!zap_) return;
  s.set(zmq::sockopt::curve_serverkey, server_keys_.at(service));
  s.set(zmq::sockopt::curve_publickey, public_key_);
  s.set(zmq::sockopt::curve_secretkey, secret_key_);
}

void NodeCore::collect_refusals() {
  if (!zap_ || !zap_->has_refusals()) return;
  for (auto& r : zap_->take_refusals(name_ + "/")) {
    auto endpoint = r.domain.substr(name_.size() + 1);
    ++metrics_.auth_refused[endpoint];
    // Once per endpoint and key; past kMaxLoggedKeys distinct keys (someone cycling
    // through fresh ones) only the count grows, and that is said once.
    if (refused_logged_.size() < kMaxLoggedKeys) {
      if (refused_logged_.insert(r.domain + " " + r.key).second)
        log_->warn("refused a CURVE handshake on {} from {}: public key {} is not allowed there", endpoint,
                   r.address, r.key);
    } else if (refused_logged_.size() == kMaxLoggedKeys) {
      refused_logged_.insert("");  // past the cap: say so once
      log_->warn("refused CURVE handshakes from more than {} keys; further ones are counted in $metrics "
                 "(auth_refused), not logged", kMaxLoggedKeys);
    }
    // The tap sees it like a message from the peer: source = its address.
    Envelope peer = make_envelope(r.address.empty() ? "unknown-peer" : r.address, "$refused", Kind::command);
    mirror("$refused", codec::encode_envelope(peer),
           to_msgpack(json{{"endpoint", endpoint}, {"address", r.address}, {"key", r.key}}));
  }
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
  static std::atomic<int> unique{0};
  int events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED |
               ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_ACCEPT_FAILED;
  for (zmq::socket_t* s : {&pub_, &pull_, &router_}) {
    std::string address = "inproc://troupe-monitor-" + name_ + "-" + std::to_string(unique.fetch_add(1));
    if (zmq_socket_monitor(s->handle(), address.c_str(), events) != 0) continue;
    zmq::socket_t m(*context_, zmq::socket_type::pair);
    m.set(zmq::sockopt::linger, 0);
    m.connect(address);
    monitors_.push_back(std::move(m));
  }
}

void NodeCore::drain_monitor(zmq::socket_t& monitor) {
  while (true) {
    zmq::message_t event, address;
    if (!monitor.recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more() && !monitor.recv(address, zmq::recv_flags::dontwait)) return;
    if (event.size() < 6) continue;
    std::uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);
    const char* name = "other";
    switch (id) {
      case ZMQ_EVENT_ACCEPTED: name = "accepted"; break;
      case ZMQ_EVENT_ACCEPT_FAILED: name = "accept_failed"; break;
      case ZMQ_EVENT_DISCONNECTED: name = "disconnected"; break;
      case ZMQ_EVENT_CLOSED: name = "closed"; break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: name = "handshake_succeeded"; break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: name = "handshake_failed"; break;
      default: break;
    }
    ++metrics_.socket_events[name];
  }
}

void NodeCore::connect_all() {
  for (const auto& sub : self_->reacts_to) {
    const ServiceSpec* pub = topology_.find(sub.publisher);
    if (!pub) continue;  // check_topology rejects this earlier
    auto up = std::make_unique<Upstream>();
    up->name = pub->name;
    up->endpoints = pub->endpoints;
    for (const auto& t : sub.types) up->reacts.insert(t);
    open_subscription(*up);
    open_replay(*up);
    up->position = store_->position(up->name);
    up->known_head = up->position;
    // "INCARNATION EPOCH" (the epoch is absent in stores from before epochs).
    auto saved = store_->get(kUpstreamsTable, up->name).value_or("");
    auto space = saved.find(' ');
    up->incarnation = saved.substr(0, space);
    if (space != std::string::npos) up->epoch = up->saved_epoch = std::strtoull(saved.c_str() + space + 1, nullptr, 10);
    upstreams_.push_back(std::move(up));
  }
  for (const auto& route : self_->sends) {
    const ServiceSpec* target = topology_.find(route.target);
    if (!target) continue;
    auto down = std::make_unique<Downstream>();
    down->name = target->name;
    down->endpoints = target->endpoints;
    down->push = make_socket(zmq::socket_type::push);
    secure_client(down->push, target->name);
    down->push.connect(target->endpoints.commands);
    down->heartbeats = make_socket(zmq::socket_type::sub);
    down->heartbeats.set(zmq::sockopt::subscribe, builtin::kHeartbeatTopic);
    secure_client(down->heartbeats, target->name);
    down->heartbeats.connect(target->endpoints.events);
    down->head_at_start = store_->command_head(down->name);
    downstreams_.emplace(down->name, std::move(down));
  }
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
  up.subscribed_at = Clock::now();
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
  monitors_.clear();
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
  if (stop_fd_ >= 0) ::close(stop_fd_);
  stop_fd_ = -1;
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

// ---------------------------------------------------------------------------
// the reactor

void NodeCore::run() {
  // A reaction the topology declares and nobody handles would be consumed in silence
  // (its events still move the position): a broken contract, refused before serving.
  for (const auto& sub : self_->reacts_to)
    for (const auto& type : sub.types)
      if (!event_handlers_.count(type))
        throw std::runtime_error(topology_.file + ":" + std::to_string(sub.line) + ": service '" + name_ +
                                 "' reacts to " + sub.publisher + "/" + type +
                                 " but registered no handler for it (node.on<" + type + ">)");
  start_monitors();
  connect_all();
  if (topology_.curve())
    log_->info("security is \"curve\": only the topology's identities may connect (keys in {})",
               topology_.defaults.keys_dir);
  else
    log_->warn("SECURITY IS OFF (security = \"none\"): any peer that can reach {} may read, send and query",
               bound_.events);
  log_->info("{} {} ready: events {} commands {} queries {} ({} store, head {})", name_, kVersion,
             bound_.events, bound_.commands, bound_.queries,
             store_->durable() ? "durable" : "memory", store_->head());
  state_ = "ready";
  refresh_state();
  counters_.running.store(true);
  const auto hb = topology_.defaults.heartbeat;
  next_heartbeat_ = Clock::now();
  next_maintenance_ = Clock::now() + hb;
  request_replays();

  std::vector<Incoming> batch;
  std::vector<zmq::pollitem_t> items;
  while (!stop_requested_.load()) {
    items.clear();
    items.push_back({nullptr, stop_fd_, ZMQ_POLLIN, 0});
    items.push_back({pub_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({pull_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
    for (auto& up : upstreams_) {
      items.push_back({up->sub.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({up->dealer.handle(), 0, ZMQ_POLLIN, 0});
    }
    for (auto& [_, d] : downstreams_) items.push_back({d->heartbeats.handle(), 0, ZMQ_POLLIN, 0});
    const std::size_t first_monitor = items.size();
    for (auto& m : monitors_) items.push_back({m.handle(), 0, ZMQ_POLLIN, 0});

    auto now = Clock::now();
    auto wake = std::min(next_heartbeat_, next_maintenance_);
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now);
    if (timeout.count() < 0) timeout = std::chrono::milliseconds(0);
    try {
      zmq::poll(items, timeout);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;
    }
    if (items[0].revents & ZMQ_POLLIN) break;
    for (std::size_t i = 0; i < monitors_.size(); ++i)
      if (items[first_monitor + i].revents & ZMQ_POLLIN) drain_monitor(monitors_[i]);
    collect_refusals();

    // Subscriptions arriving on our XPUB (who is attached).
    if (items[1].revents & ZMQ_POLLIN) {
      zmq::message_t m;
      while (pub_.recv(m, zmq::recv_flags::dontwait)) on_subscription(m);
    }

    batch.clear();
    collect(batch, topology_.defaults.batch_max);
    if (!batch.empty() && topology_.defaults.batch_delay.count() > 0 &&
        batch.size() < topology_.defaults.batch_max) {
      auto until = Clock::now() + topology_.defaults.batch_delay;
      while (batch.size() < topology_.defaults.batch_max && Clock::now() < until) {
        if (collect(batch, topology_.defaults.batch_max - batch.size()) == 0)
          std::this_thread::yield();
      }
    }
    if (!batch.empty()) process(batch);

    now = Clock::now();
    if (now >= next_heartbeat_) {
      send_heartbeat();
      check_endpoints();
      next_heartbeat_ = now + hb;
    }
    if (now >= next_maintenance_) {
      request_replays();
      resend_commands();
      prune();
      probe_store(now);
      next_maintenance_ = now + hb / 2;
    }
  }
  // Handle what has already arrived before closing: a clean stop loses no message
  // that reached this process.
  state_ = "stopping";
  for (int round = 0; round < 100; ++round) {
    batch.clear();
    if (collect(batch, topology_.defaults.batch_max) == 0) break;
    process(batch);
  }
  counters_.running.store(false);
  log_->info("{} stopping", name_);
}

std::size_t NodeCore::collect(std::vector<Incoming>& batch, std::size_t max) {
  std::size_t got = 0;
  auto take = [&](zmq::socket_t& s, Incoming::From from, Upstream* up) {
    if (got >= max) return false;
    Frames frames;
    auto r = zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait);
    if (!r) return false;
    batch.push_back({from, up, std::move(frames)});
    ++got;
    return true;
  };
  // What clients send: never held beyond the limits, however many frames come.
  auto take_bounded = [&](zmq::socket_t& s, Incoming::From from) {
    if (got >= max) return false;
    zmq::message_t first;
    if (!s.recv(first, zmq::recv_flags::dontwait)) return false;
    Incoming in{from, nullptr, {}};
    receive_bounded(s, std::move(first), in);
    batch.push_back(std::move(in));
    ++got;
    return true;
  };
  // Round robin over sockets so no source starves the others.
  bool progress = true;
  while (progress && got < max) {
    progress = false;
    progress |= take_bounded(pull_, Incoming::From::command);
    progress |= take_bounded(router_, Incoming::From::query);
    for (auto& up : upstreams_) {
      zmq::socket_t& sub = up->sub;
      if (got >= max) break;
      Frames frames;
      if (zmq::recv_multipart(sub, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        bool hb = !frames.empty() && view(frames[0]) == builtin::kHeartbeatTopic;
        batch.push_back({hb ? Incoming::From::heartbeat : Incoming::From::event, up.get(), std::move(frames)});
        ++got;
        progress = true;
      }
      progress |= take(up->dealer, Incoming::From::replay, up.get());
    }
    for (auto& [_, d] : downstreams_) progress |= take(d->heartbeats, Incoming::From::heartbeat, nullptr);
  }
  return got;
}

// Reads the rest of a message whose first frame is `first`, keeping at most kMaxFrames
// frames and about max_message_bytes of it: a peer can make libzmq assemble a huge
// multipart message, but not make this node copy it, store it or hold it.
void NodeCore::receive_bounded(zmq::socket_t& s, zmq::message_t first, Incoming& in) {
  const std::size_t max_bytes = topology_.defaults.max_message_bytes + codec::kEnvelopeLimits.max_bytes + 1024;
  std::size_t frames = 0, bytes = 0, kept = 0;
  zmq::message_t m = std::move(first);
  while (true) {
    ++frames;
    bytes += m.size();
    bool more = m.more();
    if (frames <= kMaxFrames && kept + m.size() <= max_bytes) {
      kept += m.size();
      in.frames.push_back(std::move(m));
    }
    if (!more) break;
    m = zmq::message_t();
    if (!s.recv(m, zmq::recv_flags::dontwait)) break;  // all parts arrive together
  }
  if (frames > in.frames.size())
    in.oversize = "a message of " + std::to_string(frames) + " frames and " + std::to_string(bytes) +
                  " bytes, over the limit of " + std::to_string(kMaxFrames) + " frames and " +
                  std::to_string(max_bytes) + " bytes: kept its first " + std::to_string(in.frames.size()) +
                  " frame(s)";
}

void NodeCore::process(std::vector<Incoming>& batch) {
  auto t0 = Clock::now();
  // Commands, events and replays are what write; queries and heartbeats (which every
  // connected service gets each interval) say nothing about whether writes work.
  if (std::any_of(batch.begin(), batch.end(), [](const Incoming& in) {
        return in.from != Incoming::From::query && in.from != Incoming::From::heartbeat;
      }))
    last_writes_ = t0;
  std::vector<std::uint64_t> start_positions;
  for (auto& up : upstreams_) start_positions.push_back(up->position);
  auto start_commands = command_positions_;
  struct StreamMark {
    std::string incarnation;
    std::uint64_t epoch, saved_epoch;
  };
  std::vector<StreamMark> start_marks;
  for (auto& up : upstreams_) start_marks.push_back({up->incarnation, up->epoch, up->saved_epoch});
  std::map<std::string, std::uint64_t> start_acked;
  for (auto& [n, d] : downstreams_) start_acked[n] = d->acked;
  batch_out_.clear();
  const auto start_head = store_->head();
  bool wrote = false;  // a batch of queries and heartbeats alone proves nothing about writes
  try {
    store_->begin();
    for (auto& in : batch) {
      // Anything from a publisher's events socket shows that connection lives.
      if (in.upstream && in.from != Incoming::From::replay) in.upstream->last_heard = t0;
      switch (in.from) {
        case Incoming::From::command: handle_command(in); break;
        case Incoming::From::query: handle_query(in); break;
        case Incoming::From::event: {
          if (in.frames.size() != 3) {
            reject_frames(("events:" + in.upstream->name).c_str(),
                          "expected 3 frames (topic, envelope, payload), got " +
                              std::to_string(in.frames.size()),
                          views(in.frames));
            break;
          }
          handle_event(*in.upstream, view(in.frames[1]), view(in.frames[2]), views(in.frames));
          break;
        }
        case Incoming::From::replay: handle_replay(*in.upstream, in); break;
        case Incoming::From::heartbeat: handle_heartbeat(in.upstream, in); break;
      }
    }
    for (std::size_t i = 0; i < upstreams_.size(); ++i) {
      Upstream& up = *upstreams_[i];
      if (up.position != start_positions[i]) {
        store_->set_position(up.name, up.position);
        wrote = true;
      }
      if (up.epoch != up.saved_epoch) save_upstream(up);
    }
    for (const auto& [sender, pos] : command_positions_) {
      auto it = start_commands.find(sender);
      if (it == start_commands.end() || it->second != pos) {
        store_->set_position("cmd:" + sender, pos);
        wrote = true;
      }
    }
    wrote = wrote || store_->head() != start_head;
    store_->commit();
  } catch (const std::exception& e) {
    store_->rollback();
    // Nothing of this batch happened: positions, incarnations and acks go back to what
    // was committed, and the events come again through replay once writes work.
    for (std::size_t i = 0; i < upstreams_.size(); ++i) {
      Upstream& up = *upstreams_[i];
      up.position = start_positions[i];
      up.incarnation = start_marks[i].incarnation;
      up.epoch = start_marks[i].epoch;
      up.saved_epoch = start_marks[i].saved_epoch;
    }
    for (auto& [n, d] : downstreams_) d->acked = start_acked[n];
    command_positions_ = start_commands;
    batch_out_.clear();
    ++metrics_.store_failures;
    if (store_error_.empty()) log_->error("handling a batch failed, not acknowledging it: {}", e.what());
    store_error_ = e.what();
    refresh_state();
    answer_queries_outside_batch(batch);
    return;
  }
  if (!store_error_.empty() && wrote) store_works_again();
  auto commit_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  metrics_.commit_us.add(static_cast<std::uint64_t>(commit_us));
  metrics_.batch_size.add(batch.size());
  counters_.batches.fetch_add(1, std::memory_order_relaxed);
  relay();
  request_replays();
}

void NodeCore::store_works_again() {
  log_->info("store writes work again; resuming");
  store_error_.clear();
  refresh_state();  // still degraded if a loss was reported: that needs an operator, not a retry
}

void NodeCore::refresh_state() {
  if (state_ == "starting" || state_ == "stopping") return;
  bool wrong = !store_error_.empty() || commands_lost_ || !endpoint_error_.empty();
  for (const auto& up : upstreams_) wrong = wrong || stopped(*up) || up->stalled;
  state_ = wrong ? "degraded" : "ready";
}

void NodeCore::save_upstream(Upstream& up) {
  store_->put(kUpstreamsTable, up.name, up.epoch ? up.incarnation + " " + std::to_string(up.epoch) : up.incarnation);
  up.saved_epoch = up.epoch;
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

// After a failed batch, a service that is sent nothing more to write (it only answers
// queries, or the failed batch held only dead letters) would say "degraded" for good:
// once no command, event or replay has come for a heartbeat interval it tries one small
// write itself. Under load it never probes: the load's own batches say whether writes work.
void NodeCore::probe_store(Clock::time_point now) {
  if (store_error_.empty() || now - last_writes_ < topology_.defaults.heartbeat) return;
  last_writes_ = now;  // at most one probe per interval
  try {
    store_->begin();
    store_->put("$troupe", "write_probe", rfc3339_now());
    store_->commit();
  } catch (const std::exception& e) {
    store_->rollback();
    store_error_ = e.what();
    return;
  }
  store_works_again();
}

// Queries only read. When a batch could not be committed (a full disk, a failing store)
// its queries are answered again on their own, so `$health`, `$metrics` and the
// services' own queries keep working while writes fail and show why.
void NodeCore::answer_queries_outside_batch(std::vector<Incoming>& batch) {
  reanswering_ = true;
  for (auto& in : batch) {
    if (in.from != Incoming::From::query) continue;
    try {
      handle_query(in);
    } catch (const std::exception& e) {
      log_->debug("query not answered while the store fails: {}", e.what());
    }
  }
  reanswering_ = false;
  relay();
}

void NodeCore::relay() {
  for (auto& out : batch_out_) {
    std::vector<zmq::const_buffer> bufs;
    bufs.reserve(out.frames.size());
    for (const auto& f : out.frames) bufs.push_back(zmq::buffer(f));
    switch (out.to) {
      case Outgoing::To::events:
        zmq::send_multipart(pub_, bufs, zmq::send_flags::dontwait);
        counters_.published.fetch_add(1, std::memory_order_relaxed);
        break;
      case Outgoing::To::reply:
        try {
          zmq::send_multipart(router_, bufs, zmq::send_flags::dontwait);
        } catch (const zmq::error_t&) {
          // The client is gone (EHOSTUNREACH): its reply has nobody to go to.
        }
        break;
      case Outgoing::To::command: {
        auto it = downstreams_.find(out.target);
        // Until the receiver's first heartbeat has been checked (handle_heartbeat), new
        // commands wait in the outbox: resend_commands sends them after.
        if (it == downstreams_.end() || !it->second->start_checked) break;
        // If the receiver is not connected the send may fail: the command stays in the
        // outbox and is resent until acknowledged.
        zmq::send_multipart(it->second->push, bufs, zmq::send_flags::dontwait);
        break;
      }
    }
  }
  batch_out_.clear();
}

// ---------------------------------------------------------------------------
// handling

void NodeCore::on_subscription(const zmq::message_t& m) {
  auto v = view(m);
  // 1 subscribes and 0 unsubscribes; an XSUB peer can send anything else as well, and
  // that is no reason to stop mirroring for a tap.
  if (v.empty() || (v[0] != 0 && v[0] != 1)) return;
  auto topic = v.substr(1);
  auto apply_to = [&](std::string_view t) {
    if (v[0] == 1)
      pub_.set(zmq::sockopt::subscribe, t);
    else
      pub_.set(zmq::sockopt::unsubscribe, t);
  };
  auto apply = [&] { apply_to(topic); };
  auto count = [&](std::atomic<std::uint64_t>& c) {
    if (v[0] == 1)
      c.fetch_add(1);
    else if (c.load() > 0)
      c.fetch_sub(1);
  };
  // Only what can match something this node sends is applied: a prefix of one of its
  // topics. Anything else would match nothing, and XPUB would still keep it (one node
  // of its subscription trie per byte) for as long as the peer stays.
  auto prefix_of = [&](std::string_view t) { return t.substr(0, topic.size()) == topic; };
  bool ours = prefix_of(builtin::kHeartbeatTopic) || prefix_of(builtin::kTapTopic) ||
              std::any_of(self_->publishes.begin(), self_->publishes.end(),
                          [&](const std::string& t) { return topic.size() <= t.size() + 1 && prefix_of(topic_of(t)); });
  if (!ours) {
    if (v[0] == 1) ++metrics_.subscriptions_ignored;
    return;
  }
  if (topic == builtin::kHeartbeatTopic) count(counters_.subscriptions);
  if (!prefix_of(builtin::kTapTopic)) {
    apply();
    return;
  }
  // Mirrors show every command and query: under CURVE only [taps.*] identities get
  // them, whatever prefix of "$tap " ("", "$", "$t", ...) asks for them. A peer that
  // passed ZAP carries its identity as User-Id; an inproc peer (a node of this
  // process) has none and is trusted like the process itself.
  if (const char* user = user_of(m)) {
    const ClientSpec* who = topology_.find_client(user);
    if (!who || who->role != ClientSpec::Role::tap) {
      // What the prefix covers of the events and heartbeats, never the mirrors ("" is
      // the usual "everything").
      for (const auto& t : self_->publishes)
        if (prefix_of(topic_of(t))) apply_to(topic_of(t));
      if (prefix_of(builtin::kHeartbeatTopic)) apply_to(builtin::kHeartbeatTopic);
      if (v[0] != 1) {
        if (topic == builtin::kTapTopic && refused_taps_ > 0) --refused_taps_;
        return;
      }
      if (topic == builtin::kTapTopic) ++refused_taps_;
      ++metrics_.auth_refused["tap"];
      if (refused_logged_.size() < kMaxLoggedKeys && refused_logged_.insert(std::string("tap ") + user).second)
        log_->warn("'{}' subscribed to '{}', which would take tap mirrors, but is not a [taps.*] identity: "
                   "it gets events and heartbeats only", user, printable(topic));
      return;
    }
  } else if (topology_.curve() && v[0] == 0 && topic == builtin::kTapTopic && refused_taps_ > 0) {
    // libzmq unsubscribes a peer that leaves with no User-Id: a refused request going
    // away must not take the real taps' count down (if the real tap left first, the
    // count stays up until the other goes: mirrors nobody takes, no harm).
    --refused_taps_;
    return;
  }
  apply();
  if (topic == builtin::kTapTopic) count(counters_.taps);
}

void NodeCore::mirror(std::string_view what, std::string_view envelope, std::string_view payload) {
  if (counters_.taps.load(std::memory_order_relaxed) == 0) return;  // an idle mesh pays nothing
  Envelope m = make_envelope(name_, std::string(what), Kind::event);
  m.sequence = ++mirror_sequence_;
  std::string topic(builtin::kTapTopic), menv = codec::encode_envelope(m);
  std::array<zmq::const_buffer, 4> bufs{zmq::buffer(topic), zmq::buffer(menv), zmq::buffer(envelope),
                                        zmq::buffer(payload)};
  zmq::send_multipart(pub_, bufs, zmq::send_flags::dontwait);
  counters_.mirrored.fetch_add(1, std::memory_order_relaxed);
}

void NodeCore::log_rejection(const std::string& line) {
  ++rejections_logged_;
  if (rejections_logged_ <= 20 || rejections_logged_ % 1000 == 0)
    log_->warn("rejected{}: {}",
               rejections_logged_ > 20 ? " (" + std::to_string(rejections_logged_) + " so far)" : "",
               printable(line));  // the line quotes what the peer sent
}

void NodeCore::dead_letter(const char* endpoint, const Envelope* env, const std::string& reason,
                           const std::vector<std::string_view>& raw, bool mergeable) {
  ports::DeadLetter l;
  l.time = rfc3339_now();
  l.endpoint = endpoint;
  if (env) {
    l.source = env->source;
    l.type = env->type;
    if (mergeable) l.message_id = env->id;
  }
  l.reason = reason;
  for (auto f : raw) l.frames.emplace_back(f);
  // Each letter is within what a reply can carry; the frames a peer sent beyond that
  // were already dropped on receipt (receive_bounded).
  if (reanswering_) {
    // The query's first answer, in the batch that failed, counted, mirrored and logged
    // it; its letter was rolled back with the batch. Keep it if the store lets us, whole
    // (letter and frames in one unit), and answer the query either way.
    try {
      store_->begin();
      store_->add_dead_letter(l);
      store_->commit();
    } catch (const std::exception&) {
      store_->rollback();
    }
    return;
  }
  store_->add_dead_letter(l);
  const auto& d = topology_.defaults;
  auto totals = store_->dead_letter_totals();
  if (totals.count > d.max_dead_letters || totals.bytes > d.max_dead_letter_bytes) {
    auto evicted = store_->evict_dead_letters(d.max_dead_letters, d.max_dead_letter_bytes);
    metrics_.dead_letters_evicted += evicted;
    if (evicted && (metrics_.dead_letters_evicted == evicted || metrics_.dead_letters_evicted % 1000 < evicted))
      log_->warn("dead letters over their limits (max_dead_letters {}, max_dead_letter_bytes {}): dropped the {} "
                 "oldest ({} so far, counted in $metrics dead_letters_evicted)",
                 d.max_dead_letters, d.max_dead_letter_bytes, evicted, metrics_.dead_letters_evicted);
  }
  if (counters_.taps.load(std::memory_order_relaxed)) {
    Envelope dl = env ? *env : make_envelope("?", "?", Kind::event);
    mirror("$deadletter", codec::encode_envelope(dl),
           to_msgpack(json{{"endpoint", l.endpoint}, {"reason", l.reason}, {"frames", l.frames.size()}}));
  }
  ++metrics_.dead_letters;
  counters_.dead_letters.fetch_add(1, std::memory_order_relaxed);
  counters_.rejected.fetch_add(1, std::memory_order_relaxed);
  // Per type only for types of the mesh: a peer must not grow $metrics with names of
  // its own (nor put bytes that are not UTF-8 in its keys).
  if (env) ++metrics_.types[mesh_type(env->type) ? env->type : std::string(kUnknownType)].rejected;
  log_rejection(std::string(endpoint) + ": " + reason + " (kept as a dead letter)");
}

bool NodeCore::sends_to_us(std::string_view source) const {
  const ServiceSpec* sender = topology_.find(source);
  if (!sender) return false;
  return std::any_of(sender->sends.begin(), sender->sends.end(),
                     [&](const CommandRoute& r) { return r.target == name_; });
}

bool NodeCore::mesh_type(std::string_view type) const {
  return std::any_of(topology_.services.begin(), topology_.services.end(), [&](const ServiceSpec& s) {
    return s.publishes_type(type) || s.accepts_type(type) || s.answers_type(type);
  });
}

void NodeCore::reject_frames(const char* endpoint, const std::string& reason,
                             const std::vector<std::string_view>& raw) {
  if (!reanswering_) ++metrics_.rejected_frames;
  dead_letter(endpoint, nullptr, reason, raw);
}

void NodeCore::apply(const Envelope& env, std::string_view payload, const EventHandler& handler,
                     const char* endpoint, const std::vector<std::string_view>& raw) {
  auto& tm = metrics_.types[env.type];
  ++tm.received;
  if (auto fits = codec::validate(payload, env.type, payload_limits(env.type)); !fits) {
    dead_letter(endpoint, &env, fits.error().message(), raw, true);
    return;
  }
  store_->savepoint();
  message_out_.clear();
  Context ctx(*this, env, *store_);
  auto t0 = Clock::now();
  Result<void> r;
  try {
    r = handler(env, payload, ctx);
  } catch (const ports::StoreError&) {
    throw;
  } catch (const TopologyViolation& e) {
    r = reject(Code::invalid, env.type, e.what());
  } catch (const OversizedMessage& e) {
    ++metrics_.oversized_refused;
    r = reject(Code::too_large, env.type, e.what());
  } catch (const std::exception& e) {
    r = reject(Code::refused, env.type, std::string("handler failed: ") + e.what());
  }
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  tm.latency_us.add(static_cast<std::uint64_t>(us));
  if (r) {
    store_->release();
    ++tm.handled;
    for (auto& o : message_out_) batch_out_.push_back(std::move(o));
  } else {
    store_->rollback_to();
    store_->release();
    dead_letter(endpoint, &env, r.error().message(), raw, true);
  }
  message_out_.clear();
}

const codec::Limits& NodeCore::payload_limits(std::string_view type) {
  auto it = payload_limits_.find(type);
  if (it != payload_limits_.end()) return it->second;
  codec::Limits l;
  l.max_bytes = topology_.defaults.max_message_bytes;
  l.max_string = l.max_binary = topology_.max_field_bytes(type);
  return payload_limits_.emplace(std::string(type), l).first->second;
}

void NodeCore::check_outgoing_size(std::string_view what, std::size_t bytes) const {
  const auto max = topology_.defaults.max_message_bytes;
  if (bytes > max)
    throw OversizedMessage(name_ + " emits " + std::string(what) + " of " + std::to_string(bytes) +
                           " bytes, over max_message_bytes (" + std::to_string(max) +
                           "): peers would refuse it, so it is not committed");
}

const char* NodeCore::user_of(const zmq::message_t& frame) const {
  return topology_.curve() ? zmq_msg_gets(frame.handle(), "User-Id") : nullptr;
}

// Under CURVE who sent a command is known (the ZAP User-Id): a sequenced command must
// come from the service whose stream it claims, and no command may name another
// identity of the topology as its source. One-shot clients may name themselves freely
// ("load", "verify") as long as that is nobody else's name.
bool NodeCore::source_forged(const Envelope& env, const char* user, std::string& why) const {
  if (!user || env.source == user) return false;
  bool identity = topology_.find(env.source) || topology_.find_client(env.source);
  if (env.sequence == 0 && !identity) return false;
  why = "source '" + env.source + "' is not the sender's identity '" + user + "': refused";
  return true;
}

void NodeCore::rate_limited(const char* user, const char* what) {
  ++metrics_.rate_limited[what];
  if (rate_logged_.size() < kMaxLoggedKeys && rate_logged_.insert(std::string(what) + " " + user).second)
    log_->warn("'{}' sends {} faster than its limit in the topology: the excess is refused (counted in $metrics "
               "rate_limited)", user, what);
}

void NodeCore::handle_command(Incoming& in) {
  auto raw = views(in.frames);
  if (!in.oversize.empty()) {
    ++metrics_.oversized_received;
    reject_frames("commands", in.oversize, raw);
    return;
  }
  const char* user = in.frames.empty() ? nullptr : user_of(in.frames[0]);
  if (user && !rate_limits_.admit(user, RateLimits::Kind::command, Clock::now())) {
    rate_limited(user, "commands");  // dropped, not kept: the client resends until $seen says so
    return;
  }
  if (in.frames.size() != 2) {
    reject_frames("commands", "expected 2 frames (envelope, payload), got " + std::to_string(in.frames.size()), raw);
    return;
  }
  auto env = codec::decode_envelope(view(in.frames[0]));
  if (!env) {
    reject_frames("commands", env.error().message(), raw);
    return;
  }
  mirror("$command", view(in.frames[0]), view(in.frames[1]));
  if (std::string why; source_forged(*env, user, why)) {
    ++metrics_.auth_refused["source"];
    dead_letter("commands", &*env, why, raw);
    return;
  }
  if (env->sequence == 0) {
    // From a one-shot client: handled once per command id — applied or dead-lettered,
    // either way a resend changes nothing ($seen tells the client).
    if (store_->seen(env->id)) {
      ++metrics_.duplicates;
      counters_.duplicates.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    store_->mark_seen(env->id);
  }
  if (env->sequence > 0) {
    // Only services the topology routes to us number their commands. Anyone else's
    // numbers would add a position to the store and an ack to every heartbeat, for good.
    if (!sends_to_us(env->source)) {
      dead_letter("commands", &*env,
                  "a sequenced command from '" + env->source +
                      "', which the topology does not list as sending to '" + name_ + "'",
                  raw);
      return;
    }
    // From a service's command outbox: handled strictly in its order, once — the
    // position moves on even when the command is then refused, so one bad command
    // cannot block its sender's stream.
    auto it = command_positions_.find(env->source);
    if (it == command_positions_.end())
      it = command_positions_.emplace(env->source, store_->position("cmd:" + env->source)).first;
    if (env->sequence <= it->second) {
      ++metrics_.duplicates;
      counters_.duplicates.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (env->sequence > it->second + 1) {  // an earlier one is missing: it will be resent
      ++metrics_.commands_out_of_order;
      return;
    }
    it->second = env->sequence;
  }
  if (env->kind != Kind::command) {
    dead_letter("commands", &*env, "expected kind 'command', got '" + std::string(to_string(env->kind)) + "'", raw);
    return;
  }
  auto h = command_handlers_.find(env->type);
  if (!self_->accepts_type(env->type) || h == command_handlers_.end()) {
    dead_letter("commands", &*env, "service '" + name_ + "' does not accept command '" + env->type + "'", raw);
    return;
  }
  apply(*env, view(in.frames[1]), h->second, "commands", raw);
  counters_.commands_applied.fetch_add(1, std::memory_order_relaxed);
}

void NodeCore::handle_event(Upstream& up, std::string_view env_bytes, std::string_view payload,
                            const std::vector<std::string_view>& raw, bool replayed) {
  std::string endpoint = "events:" + up.name;
  auto env = codec::decode_envelope(env_bytes);
  if (!env) {
    reject_frames(endpoint.c_str(), env.error().message(), raw);
    return;
  }
  if (env->source != up.name || env->kind != Kind::event || env->sequence == 0) {
    dead_letter(endpoint.c_str(), &*env,
                "not an event of '" + up.name + "' with a sequence (source '" + env->source +
                    "', kind '" + std::string(to_string(env->kind)) + "', sequence " +
                    std::to_string(env->sequence) + ")",
                raw);
    return;
  }
  if (stopped(up)) return;  // stopped loudly: see check_publisher
  std::uint64_t seq = env->sequence;
  if (!replayed && env->epoch != 0 && env->epoch != up.trusted_epoch && up.verified) {
    // The publisher opened its store again since it was checked: nothing more from it
    // until a $replay reply shows it still has our position's event (a lost WAL tail
    // hands out the same sequence numbers again, under a new epoch).
    up.verified = false;
    up.replay_wanted = true;
  }
  if (!up.verified) {  // not yet known to be the publisher our position refers to
    up.known_head = std::max(up.known_head, seq);
    return;
  }
  if (seq <= up.position) {
    ++metrics_.duplicates;
    counters_.duplicates.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (seq > up.position + 1) {
    up.known_head = std::max(up.known_head, seq);
    if (!up.in_gap) {
      up.in_gap = true;
      ++metrics_.gaps_seen;
      counters_.gaps_seen.fetch_add(1, std::memory_order_relaxed);
      log_->debug("gap from {}: have {}, saw {}; replaying", up.name, up.position, seq);
      mirror("$gap", codec::encode_envelope(*env),
             to_msgpack(json{{"publisher", up.name}, {"position", up.position}, {"seen", seq}}));
    }
    return;
  }
  up.position = seq;
  if (env->epoch != 0) up.epoch = env->epoch;
  up.known_head = std::max(up.known_head, seq);
  if (up.reacts.count(env->type)) {
    auto h = event_handlers_.find(env->type);
    if (h != event_handlers_.end()) apply(*env, payload, h->second, endpoint.c_str(), raw);
  }
  counters_.events_applied.fetch_add(1, std::memory_order_relaxed);
  if (up.in_gap && up.position >= up.known_head) {
    up.in_gap = false;
    mirror("$repaired", env_bytes, to_msgpack(json{{"publisher", up.name}, {"position", up.position}}));
    ++metrics_.gaps_repaired;
    counters_.gaps_repaired.fetch_add(1, std::memory_order_relaxed);
  }
}

void NodeCore::handle_replay(Upstream& up, Incoming& in) {
  if (in.frames.size() < 2 || in.frames.size() % 2 != 0) {
    reject_frames(("replay:" + up.name).c_str(), "a $replay reply has an odd frame count", views(in.frames));
    return;
  }
  auto env = codec::decode_envelope(view(in.frames[0]));
  if (!env || env->causationid != up.replay_id) return;  // stale or foreign: ignore
  up.replay_in_flight = false;
  stream_moves(up);  // answered: the connection carries what it is asked
  if (env->type == builtin::kError) {
    auto err = codec::decode<builtin::Error>(view(in.frames[1]));
    log_->warn("replay from {} refused: {}", up.name, err ? printable(err->error) : "(unreadable)");
    return;
  }
  auto hdr = codec::decode<builtin::ReplayReply>(view(in.frames[1]));
  if (!hdr) {
    reject_frames(("replay:" + up.name).c_str(), hdr.error().message(), views(in.frames));
    return;
  }
  check_publisher(up, hdr->incarnation, hdr->boot, hdr->head, hdr->durable, hdr->epoch);
  if (stopped(up) || !check_epoch(up, *hdr)) return;
  up.known_head = std::max(up.known_head, hdr->head);
  if (up.position + 1 < hdr->oldest && up.position < hdr->head) {
    std::uint64_t lost = hdr->oldest - 1 - up.position;
    if (store_->durable()) {
      if (!up.behind_retention)
        log_->error("LOSS: {} no longer retains events {}..{} that this service has not applied "
                    "(it keeps {}..{}); not applying {} until an operator decides",
                    up.name, up.position + 1, hdr->oldest - 1, hdr->oldest, hdr->head, up.name);
      up.behind_retention = true;
      refresh_state();
      return;
    }
    log_->warn("memory mode: {} events of {} are gone ({}..{}); skipping ahead", lost, up.name,
               up.position + 1, hdr->oldest - 1);
    metrics_.events_lost += lost;
    up.position = hdr->oldest - 1;
  }
  ++metrics_.replays_served;
  // Kept as [topic][envelope][payload] like a live event, so a dead letter can be retried.
  static const std::string kReplayedTopic = "$replayed ";
  for (std::size_t i = 2; i + 1 < in.frames.size(); i += 2)
    handle_event(up, view(in.frames[i]), view(in.frames[i + 1]),
                 {kReplayedTopic, view(in.frames[i]), view(in.frames[i + 1])}, true);
}

void NodeCore::handle_heartbeat(Upstream* up, Incoming& in) {
  if (in.frames.size() != 3) return;
  auto hb = codec::decode<builtin::Heartbeat>(view(in.frames[2]));
  if (!hb) {
    reject_frames("heartbeats", hb.error().message(), views(in.frames));
    return;
  }
  if (up && hb->service == up->name) {
    check_publisher(*up, hb->incarnation, hb->boot, hb->head, hb->durable, hb->epoch);
    if (!stopped(*up)) {
      up->known_head = std::max(up->known_head, hb->head);
      if (up->position < hb->head && !up->in_gap && !up->replay_in_flight) {
        up->in_gap = true;
        ++metrics_.gaps_seen;
        counters_.gaps_seen.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  auto it = downstreams_.find(hb->service);
  if (it != downstreams_.end()) {
    Downstream* down = it->second.get();
    auto ack = hb->acks.find(name_);
    if (!std::exchange(down->start_checked, true)) {
      // Its first heartbeat since we started. Commands numbered past our head at start
      // were held back until now (relay), so an ack beyond that head means it applied
      // commands of ours that our store no longer has: they were committed, sent, and
      // lost here (a lost WAL tail), and the numbers we hand out again are ones it
      // takes for duplicates.
      std::uint64_t acked = ack == hb->acks.end() ? 0 : ack->second;
      if (acked > down->head_at_start && store_->durable()) {
        log_->error("LOSS: {} applied our commands up to #{}, but this service's store ends at #{}: commands "
                    "#{}..#{} were lost here after they were sent (a lost WAL tail?), and new commands with those "
                    "numbers will be dropped by {} as duplicates",
                    down->name, acked, down->head_at_start, down->head_at_start + 1, acked, down->name);
        commands_lost_ = true;
        refresh_state();
      }
      down->last_progress = Clock::time_point{};  // what was held back goes at the next maintenance
    }
    if (ack != hb->acks.end() && ack->second > down->acked) {
      down->acked = ack->second;
      down->last_progress = Clock::now();
      store_->ack_commands(down->name, ack->second);
    } else if (ack != hb->acks.end() && ack->second < down->acked) {
      log_->error("LOSS: {} acknowledges our commands only up to #{} after #{}: it lost applied "
                  "commands (its store was replaced?); they are not resent",
                  down->name, ack->second, down->acked);
      down->acked = ack->second;
      commands_lost_ = true;
      refresh_state();
    }
  }
}

void NodeCore::check_publisher(Upstream& up, const std::string& incarnation, const std::string& boot,
                               std::uint64_t head, bool durable, std::optional<std::uint64_t> epoch) {
  if (stopped(up) || incarnation.empty()) return;
  // A head is compared with our position only on the first word from a new start of
  // the publisher: later heartbeats can be older than events that reached us by replay.
  bool new_boot = boot != up.boot;
  up.boot = boot;
  if (up.incarnation.empty()) {
    up.incarnation = incarnation;  // first contact: remembered with our position
    save_upstream(up);
  } else if (incarnation != up.incarnation) {
    if (!durable) {
      std::uint64_t lost = up.known_head > up.position ? up.known_head - up.position : 0;
      log_->warn("{} restarted without its history (memory mode): {} event(s) never applied are gone; "
                 "position {} -> 0", up.name, lost, up.position);
      metrics_.events_lost += lost;
      up.position = 0;
      up.known_head = head;
      up.in_gap = false;
      up.incarnation = incarnation;
      up.epoch = 0;
      up.trusted_epoch = epoch.value_or(0);
      save_upstream(up);
      up.verified = true;
      return;
    }
    log_->error("LOSS: {}'s store was replaced (incarnation {}, this service applied up to #{} of {}); "
                "not applying {} until an operator decides",
                up.name, incarnation, up.position, up.incarnation, up.name);
    up.head_regressed = true;
    refresh_state();
    return;
  }
  if (new_boot && head < up.position) {
    log_->error("LOSS: {}'s head #{} is behind this service's position #{}: it lost committed events "
                "(synchronous=normal and a power cut?); not applying {} until an operator decides",
                up.name, head, up.position, up.name);
    up.head_regressed = true;
    refresh_state();
    return;
  }
  // A publisher with epochs is trusted only in the epoch a $replay reply checked
  // (check_epoch): a heartbeat cannot say whether our position's event is still its own.
  if (!epoch || *epoch == up.trusted_epoch) {
    up.verified = true;
  } else if (up.verified) {
    up.verified = false;
    up.replay_wanted = true;
  }
}

bool NodeCore::check_epoch(Upstream& up, const builtin::ReplayReply& hdr) {
  if (!hdr.epoch || *hdr.epoch == up.trusted_epoch) return up.verified;
  const std::uint64_t at = up.replay_from - 1;  // the event whose epoch the reply gives
  if (at != up.position) {  // live events moved us on meanwhile: ask again from here
    up.replay_wanted = true;
    return false;
  }
  const std::uint64_t theirs = hdr.epoch_of_from.value_or(0);
  // Below what it retains the publisher no longer knows epochs either: that is a
  // retention loss, which handle_replay reports as such.
  const bool retained = at + 1 >= hdr.oldest;
  if (at > 0 && retained && (at > hdr.head || (up.epoch != 0 && theirs != up.epoch))) {
    log_->error("LOSS: {} lost committed events: this service applied its event #{} (epoch {:x}), which {} now "
                "{} (its head is #{}): it wrote other events under the same numbers (a lost WAL tail, or an "
                "older copy of its store?); not applying {} until an operator decides",
                up.name, at, up.epoch, up.name,
                at > hdr.head ? std::string("no longer has") : fmt::format("has from epoch {:x}", theirs), hdr.head,
                up.name);
    up.head_regressed = true;
    refresh_state();
    return false;
  }
  up.trusted_epoch = *hdr.epoch;
  up.verified = true;
  return true;
}

// Built-in queries that read what the service handled, or act on it, answer only the
// identities the topology admits for that under CURVE, not everyone who may ask queries:
// $replay and $trace read the outbox, which is the events endpoint's content (the
// services that react to this one, clients whose `events` names it); $deadletters holds
// what others sent, so it wants the same, and its `retry` applies a message again, so
// it wants an identity that may also send this service commands. A peer without a
// User-Id is in this process (inproc) and trusted.
std::string NodeCore::builtin_refusal(std::string_view type, std::string_view payload,
                                      const zmq::message_t& envelope_frame, bool count) {
  if (!topology_.curve() || (type != builtin::kReplay && type != builtin::kTrace && type != builtin::kDeadLetters))
    return {};
  const char* user = zmq_msg_gets(envelope_frame.handle(), "User-Id");
  if (!user) return {};
  std::string why;
  if (!event_readers_.count(user)) {
    why = "may not read the events of " + name_;
  } else if (type == builtin::kDeadLetters && !command_senders_.count(user)) {
    auto req = codec::decode<builtin::DeadLettersRequest>(payload);
    if (req && req->op == "retry") why = "may not send commands to " + name_;
  }
  if (why.empty()) return {};
  if (count) ++metrics_.auth_refused["builtin"];
  if (refused_logged_.size() < kMaxLoggedKeys &&
      refused_logged_.insert("builtin " + std::string(type) + " " + user).second)
    log_->warn("'{}' asked {} but {}: refused", user, type, why);
  return "identity '" + std::string(user) + "' " + why + " (" + std::string(type) +
         "): the topology does not admit it there";
}

void NodeCore::handle_query(Incoming& in) {
  auto raw = views(in.frames);
  if (!in.oversize.empty()) {
    if (!reanswering_) ++metrics_.oversized_received;
    reject_frames("queries", in.oversize, raw);
    return;
  }
  // [routing...][envelope][payload]; a REQ peer adds an empty delimiter to the routing.
  if (in.frames.size() < 3) {
    reject_frames("queries", "expected routing, envelope and payload frames, got " +
                                 std::to_string(in.frames.size()) + " frame(s)", raw);
    return;
  }
  std::size_t env_at = in.frames.size() - 2;
  Outgoing out;
  out.to = Outgoing::To::reply;
  for (std::size_t i = 0; i < env_at; ++i) out.frames.emplace_back(view(in.frames[i]));

  auto reply = [&](const Envelope* cause, std::string type, std::string payload,
                   std::vector<std::string> extra = {}) {
    Envelope r = cause ? make_caused_envelope(*cause, name_, type, Kind::reply)
                       : make_envelope(name_, type, Kind::reply);
    std::string env = codec::encode_envelope(r);
    std::size_t bytes = env.size() + payload.size();
    for (const auto& f : extra) bytes = std::max(bytes, f.size());  // frames of a page are limited one by one
    try {
      check_outgoing_size("reply " + type, bytes);
    } catch (const OversizedMessage& e) {
      ++metrics_.oversized_refused;
      r.type = std::string(builtin::kError);
      env = codec::encode_envelope(r);
      payload = codec::encode(builtin::Error{e.what()});
      extra.clear();
    }
    out.frames.push_back(std::move(env));
    out.frames.push_back(std::move(payload));
    for (auto& f : extra) out.frames.push_back(std::move(f));
    batch_out_.push_back(std::move(out));
  };
  auto error_reply = [&](const Envelope* cause, const std::string& message) {
    reply(cause, std::string(builtin::kError), codec::encode(builtin::Error{message}));
  };

  auto env = codec::decode_envelope(view(in.frames[env_at]));
  const char* user = user_of(in.frames[env_at]);
  if (user && !reanswering_ && !rate_limits_.admit(user, RateLimits::Kind::query, Clock::now())) {
    rate_limited(user, "queries");
    error_reply(env ? &*env : nullptr,  // the cause lets the client match the answer
                "rate limit: identity '" + std::string(user) + "' may ask " +
                    std::to_string(static_cast<std::uint64_t>(rate_limits_.rate(user, RateLimits::Kind::query))) +
                    " queries per second of " + name_);
    return;
  }
  if (!env) {
    reject_frames("queries", env.error().message(), raw);
    error_reply(nullptr, env.error().message());
    return;
  }
  auto payload = view(in.frames[env_at + 1]);
  // Answered again after a failed batch: the first answer counted, mirrored and logged it.
  bool first = !reanswering_;
  if (first) counters_.queries_answered.fetch_add(1, std::memory_order_relaxed);
  if (!env->type.empty() && env->type[0] == '$') {
    if (auto refusal = builtin_refusal(env->type, payload, in.frames[env_at], first); !refusal.empty()) {
      error_reply(&*env, refusal);
      return;
    }
    std::string type = env->type;
    std::vector<std::string> extra;
    std::string body = answer_builtin(*env, payload, type, extra);
    reply(&*env, type, std::move(body), std::move(extra));
    return;
  }
  if (first) mirror("$query", view(in.frames[env_at]), payload);
  auto h = query_handlers_.find(env->type);
  if (!self_->answers_type(env->type) || h == query_handlers_.end()) {
    std::string msg = "service '" + name_ + "' does not answer query '" + env->type + "'";
    dead_letter("queries", &*env, msg, raw);
    error_reply(&*env, msg);
    return;
  }
  auto& tm = metrics_.types[env->type];
  if (first) ++tm.received;
  if (auto fits = codec::validate(payload, env->type, payload_limits(env->type)); !fits) {
    dead_letter("queries", &*env, fits.error().message(), raw);
    error_reply(&*env, fits.error().message());
    return;
  }
  QueryContext ctx(*env, *store_);
  auto t0 = Clock::now();
  Result<std::string> r = reject(Code::refused, env->type, "not run");
  try {
    r = h->second(*env, payload, ctx);
  } catch (const ports::StoreError&) {
    throw;
  } catch (const std::exception& e) {
    r = reject(Code::refused, env->type, std::string("handler failed: ") + e.what());
  }
  tm.latency_us.add(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
  if (!r) {
    // A payload that does not decode is bad input: kept. A handler's refusal ("no such
    // order") is an answer: the client gets it, nothing is kept.
    auto code = r.error().code;
    if (code != Code::invalid && code != Code::refused) dead_letter("queries", &*env, r.error().message(), raw);
    else if (!std::exchange(in.finished, true)) ++tm.rejected;
    error_reply(&*env, r.error().message());
    return;
  }
  if (!std::exchange(in.finished, true)) ++tm.handled;
  reply(&*env, env->type, std::move(*r));
}

// ---------------------------------------------------------------------------
// staging from handlers

void NodeCore::stage_event(const Envelope& cause, std::string_view type, std::string payload,
                           std::string correlation) {
  if (!self_->publishes_type(type))
    throw TopologyViolation("service '" + name_ + "' emits '" + std::string(type) +
                            "', which its topology does not list in publishes");
  Envelope e = make_caused_envelope(cause, name_, std::string(type), Kind::event);
  if (!correlation.empty()) e.correlationid = std::move(correlation);
  e.sequence = store_->head() + 1;
  e.epoch = epoch_;
  std::string env = codec::encode_envelope(e);  // before e's strings move into the row
  check_outgoing_size(type, type.size() + 1 + env.size() + payload.size());
  ports::OutboxEvent ev{e.sequence, std::move(e.type), std::move(e.correlationid), std::move(e.causationid),
                        std::move(env), std::move(payload)};
  store_->append_event(ev);
  ++metrics_.types[ev.type].published;
  message_out_.push_back({Outgoing::To::events, {}, {topic_of(type), std::move(ev.envelope), std::move(ev.payload)}});
}

void NodeCore::stage_command(const Envelope& cause, std::string_view target, std::string_view type,
                             std::string payload, std::string correlation) {
  bool routed = false;
  for (const auto& r : self_->sends)
    if (r.target == target && contains(r.types, type)) routed = true;
  if (!routed)
    throw TopologyViolation("service '" + name_ + "' sends '" + std::string(type) + "' to '" +
                            std::string(target) + "', which its topology does not list in sends");
  Envelope e = make_caused_envelope(cause, name_, std::string(type), Kind::command);
  if (!correlation.empty()) e.correlationid = std::move(correlation);
  e.sequence = store_->command_head(target) + 1;
  std::string env = codec::encode_envelope(e);
  check_outgoing_size(type, env.size() + payload.size());
  ports::OutboxCommand c{std::string(target), e.sequence, std::move(e.type), std::move(env), std::move(payload)};
  store_->append_command(c);
  ++metrics_.types[c.type].published;
  message_out_.push_back({Outgoing::To::command, c.target, {std::move(c.envelope), std::move(c.payload)}});
}

// ---------------------------------------------------------------------------
// timers

void NodeCore::request_replays() {
  auto now = Clock::now();
  auto timeout = std::max<std::chrono::milliseconds>(topology_.defaults.heartbeat * 2, std::chrono::milliseconds(1000));
  for (auto& up : upstreams_) {
    if (stopped(*up)) continue;
    // libzmq ends a connection for good (no reconnect) when a peer sends a message over
    // ZMQ_MAXMSGSIZE: a publisher silent for three heartbeats (and 5 s at least: a busy
    // subscriber reads its events late) gets a new subscription socket, and a replay
    // that timed out a new replay socket. Both are cheap, and harmless when the
    // publisher is only down.
    if (now - std::max(up->last_heard, up->subscribed_at) >
        std::max<Clock::duration>(topology_.defaults.heartbeat * 3, std::chrono::seconds(5))) {
      open_subscription(*up);
      ++metrics_.connections_renewed;
    }
    // Each unanswered replay waits twice as long as the last one (up to 8 timeouts): a
    // publisher slow to answer under load is given the time, not asked again and again.
    auto wait = timeout * (1 << std::min(up->unanswered_replays, 3));
    if (up->replay_in_flight && now - up->replay_sent < wait) continue;
    if (up->replay_in_flight) {
      up->replay_in_flight = false;
      open_replay(*up);
      ++metrics_.connections_renewed;
      // Unanswered: does the stream move at all?
      if (up->position != up->replay_position)
        stream_moves(*up);
      else if (now - up->last_heard < wait && ++up->unanswered_replays >= kStallReplays)
        stalled_stream(*up);
    }
    bool wanted = up->replay_wanted || up->position < up->known_head;
    if (!wanted) continue;
    Envelope e = make_envelope(name_, std::string(builtin::kReplay), Kind::query);
    builtin::ReplayRequest req;
    req.from = up->position + 1;
    std::string env = codec::encode_envelope(e);
    std::string body = codec::encode(req);
    std::array<zmq::const_buffer, 2> bufs{zmq::buffer(env), zmq::buffer(body)};
    if (zmq::send_multipart(up->dealer, bufs, zmq::send_flags::dontwait)) {
      up->replay_in_flight = true;
      up->replay_wanted = false;
      up->replay_id = e.id;
      up->replay_from = req.from;
      up->replay_position = up->position;
      up->replay_sent = now;
      ++metrics_.replays_requested;
      counters_.replays_requested.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void NodeCore::stalled_stream(Upstream& up) {
  if (up.stalled) return;
  up.stalled = true;
  log_->error("stream from {} stuck at #{} (its head is #{}): {} replays from #{} went unanswered while its "
              "heartbeats arrive: a message the sockets refuse (over max_message_bytes = {}?) or a connection "
              "that keeps failing. Nothing after #{} is applied until it moves",
              up.name, up.position, up.known_head, up.unanswered_replays, up.position + 1,
              topology_.defaults.max_message_bytes, up.position);
  refresh_state();
}

void NodeCore::stream_moves(Upstream& up) {
  up.unanswered_replays = 0;
  if (!up.stalled) return;
  up.stalled = false;
  log_->info("stream from {} moves again (at #{})", up.name, up.position);
  refresh_state();
}

void NodeCore::send_heartbeat() {
  builtin::Heartbeat hb;
  hb.service = name_;
  hb.incarnation = store_->incarnation();
  hb.boot = boot_;
  hb.head = store_->head();
  hb.oldest = store_->oldest();
  hb.durable = store_->durable();
  hb.epoch = epoch_;
  for (const auto& [sender, pos] : command_positions_) hb.acks[sender] = pos;
  Envelope e = make_envelope(name_, std::string(builtin::Heartbeat::kType), Kind::event);
  std::string topic(builtin::kHeartbeatTopic), env = codec::encode_envelope(e), body = codec::encode(hb);
  std::array<zmq::const_buffer, 3> bufs{zmq::buffer(topic), zmq::buffer(env), zmq::buffer(body)};
  zmq::send_multipart(pub_, bufs, zmq::send_flags::dontwait);
}

void NodeCore::resend_commands() {
  auto now = Clock::now();
  for (auto& [name, d] : downstreams_) {
    // Resend when acknowledgements have not moved for two heartbeats — not "when we
    // have not sent lately", which steady traffic would postpone forever.
    if (now - d->last_progress < topology_.defaults.heartbeat * 2) continue;
    auto pending = store_->unacked_commands(name, 512);
    if (pending.empty()) {
      d->last_progress = now;
      continue;
    }
    for (const auto& c : pending) {
      std::array<zmq::const_buffer, 2> bufs{zmq::buffer(c.envelope), zmq::buffer(c.payload)};
      if (!zmq::send_multipart(d->push, bufs, zmq::send_flags::dontwait)) break;
      ++metrics_.commands_resent;
    }
    d->last_progress = now;
  }
}

void NodeCore::prune() {
  // Both in steps of a tenth, so a steady trickle does not make every tick a write.
  const auto keep = topology_.defaults.retention_events;
  const auto keep_ids = topology_.defaults.retention_command_ids;
  try {
    if (store_->head() - store_->oldest() + 1 > keep + keep / 10) {
      store_->begin();
      std::size_t n = store_->prune_events(keep);
      store_->commit();
      if (n) log_->info("pruned {} events from the outbox (keeping {})", n, keep);
    }
    if (auto ids = store_->prune_seen(keep_ids, keep_ids / 10))
      log_->info("forgot {} one-shot command ids (keeping the newest {})", ids, keep_ids);
  } catch (const ports::StoreError& e) {
    store_->rollback();
    log_->error("pruning the outbox failed: {}", e.what());
  }
}

// ---------------------------------------------------------------------------
// built-in queries

std::string NodeCore::answer_builtin(const Envelope& env, std::string_view payload,
                                     std::string& type, std::vector<std::string>& extra) {
  if (env.type == builtin::kHealth) return health_reply();
  if (env.type == builtin::kMetrics) return metrics_reply();
  if (env.type == builtin::kTopology) return topology_reply();
  if (env.type == builtin::kDeadLetters) return deadletters_reply(payload, type);
  if (env.type == builtin::kSeen) {
    auto req = codec::decode<builtin::SeenRequest>(payload);
    if (!req) {
      type = builtin::kError;
      return codec::encode(builtin::Error{req.error().message()});
    }
    builtin::SeenReply reply;
    for (const auto& id : req->ids) reply.seen.push_back(store_->seen(id));
    return codec::encode(reply);
  }
  if (env.type == builtin::kTrace) {
    auto req = codec::decode<builtin::TraceRequest>(payload);
    if (!req) {
      type = builtin::kError;
      return codec::encode(builtin::Error{req.error().message()});
    }
    auto events = store_->events_of(req->correlationid, std::clamp<std::uint32_t>(req->max, 1, 10000));
    for (auto& ev : events) {
      extra.push_back(std::move(ev.envelope));
      extra.push_back(std::move(ev.payload));
    }
    return to_msgpack(json{{"count", events.size()}});
  }
  if (env.type == builtin::kReplay) {
    auto req = codec::decode<builtin::ReplayRequest>(payload);
    if (!req) {
      type = builtin::kError;
      return codec::encode(builtin::Error{req.error().message()});
    }
    std::uint32_t max = std::clamp<std::uint32_t>(req->max, 1, 2048);
    builtin::ReplayReply hdr;
    hdr.head = store_->head();
    hdr.oldest = store_->oldest();
    hdr.incarnation = store_->incarnation();
    hdr.durable = store_->durable();
    hdr.boot = boot_;
    hdr.epoch = epoch_;
    hdr.epoch_of_from = req->from > 0 ? store_->epoch_of(req->from - 1) : 0;
    auto events = store_->events(req->from, req->to, max);
    hdr.count = static_cast<std::uint32_t>(events.size());
    for (auto& ev : events) {
      extra.push_back(std::move(ev.envelope));
      extra.push_back(std::move(ev.payload));
    }
    counters_.replays_served.fetch_add(1, std::memory_order_relaxed);
    return codec::encode(hdr);
  }
  type = builtin::kError;
  return codec::encode(builtin::Error{"unknown built-in query '" + env.type + "'"});
}

std::string NodeCore::health_reply() {
  json j;
  j["service"] = name_;
  j["version"] = std::string(kVersion);
  j["incarnation"] = store_->incarnation();
  j["uptime_s"] = std::chrono::duration<double>(Clock::now() - started_).count();
  j["state"] = state_;
  j["durable"] = store_->durable();
  j["head"] = store_->head();
  j["oldest"] = store_->oldest();
  j["subscriptions"] = counters_.subscriptions.load();
  j["dead_letters"] = store_->dead_letter_count();
  if (!store_error_.empty()) j["store_error"] = store_error_;
  if (!endpoint_error_.empty()) j["endpoint_error"] = endpoint_error_;
  json ups = json::array();
  for (const auto& up : upstreams_) {
    json u;
    u["publisher"] = up->name;
    u["position"] = up->position;
    u["known_head"] = up->known_head;
    u["lag"] = up->known_head > up->position ? up->known_head - up->position : 0;
    u["behind_retention"] = up->behind_retention;
    u["head_regressed"] = up->head_regressed;
    u["stalled"] = up->stalled;
    ups.push_back(u);
  }
  j["upstreams"] = ups;
  return to_msgpack(j);
}

std::string NodeCore::metrics_reply() {
  auto hist = [](const Histogram& h) {
    json j;
    j["count"] = h.count();
    j["sum"] = h.sum();
    j["max"] = h.max();
    j["p50"] = h.quantile(0.5);
    j["p99"] = h.quantile(0.99);
    json b = json::array();
    for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i)
      b.push_back({Histogram::kBounds[i] == UINT64_MAX ? json("+Inf") : json(Histogram::kBounds[i]),
                   h.buckets()[i]});
    j["buckets"] = b;
    return j;
  };
  json j;
  j["service"] = name_;
  json types = json::object();
  for (const auto& [type, m] : metrics_.types)
    types[type] = {{"received", m.received},
                   {"handled", m.handled},
                   {"rejected", m.rejected},
                   {"published", m.published},
                   {"latency_us", hist(m.latency_us)}};
  j["types"] = types;
  j["batch_size"] = hist(metrics_.batch_size);
  j["commit_us"] = hist(metrics_.commit_us);
  j["replays_requested"] = metrics_.replays_requested;
  j["replays_served"] = counters_.replays_served.load();
  j["gaps_seen"] = metrics_.gaps_seen;
  j["gaps_repaired"] = metrics_.gaps_repaired;
  j["duplicates"] = metrics_.duplicates;
  j["dead_letters"] = metrics_.dead_letters;
  j["rejected_frames"] = metrics_.rejected_frames;
  j["commands_resent"] = metrics_.commands_resent;
  j["commands_out_of_order"] = metrics_.commands_out_of_order;
  j["store_failures"] = metrics_.store_failures;
  j["events_lost"] = metrics_.events_lost;
  j["oversized_refused"] = metrics_.oversized_refused;
  j["oversized_received"] = metrics_.oversized_received;
  j["connections_renewed"] = metrics_.connections_renewed;
  j["subscriptions_ignored"] = metrics_.subscriptions_ignored;
  j["dead_letters_evicted"] = metrics_.dead_letters_evicted;
  j["rate_limited"] = metrics_.rate_limited;
  j["published"] = counters_.published.load();
  j["subscriptions"] = counters_.subscriptions.load();
  j["taps"] = counters_.taps.load();
  j["mirrored"] = counters_.mirrored.load();
  j["socket_events"] = metrics_.socket_events;
  j["auth_refused"] = metrics_.auth_refused;
  return to_msgpack(j);
}

std::string NodeCore::topology_reply() {
  json j;
  j["mesh"] = topology_.mesh;
  j["file"] = topology_.file;
  j["service"] = name_;
  j["endpoints"] = {{"events", bound_.events}, {"commands", bound_.commands}, {"queries", bound_.queries}};
  j["publishes"] = self_->publishes;
  j["accepts"] = self_->accepts;
  j["answers"] = self_->answers;
  json reacts = json::object();
  for (const auto& s : self_->reacts_to) reacts[s.publisher] = s.types;
  j["reacts_to"] = reacts;
  json sends = json::object();
  for (const auto& s : self_->sends) sends[s.target] = s.types;
  j["sends"] = sends;
  j["heartbeat_ms"] = topology_.defaults.heartbeat.count();
  j["durability"] = topology_.defaults.durability == Durability::durable ? "durable" : "memory";
  return to_msgpack(j);
}

std::string NodeCore::deadletters_reply(std::string_view payload, std::string& type) {
  auto req = codec::decode<builtin::DeadLettersRequest>(payload);
  auto error = [&](const std::string& msg) {
    type = builtin::kError;
    return codec::encode(builtin::Error{msg});
  };
  if (!req) return error(req.error().message());
  // A letter is within the limits, but its frames as JSON binaries beside its fields
  // could pass max_message_bytes: `show` cuts each frame to its share and says so.
  const std::size_t budget = topology_.defaults.max_message_bytes > 65536 ? topology_.defaults.max_message_bytes - 65536
                                                                         : topology_.defaults.max_message_bytes / 2;
  auto describe = [budget](const ports::DeadLetter& l, bool frames) {
    json j{{"id", l.id},         {"time", l.time},         {"first_time", l.first_time},
           {"endpoint", l.endpoint}, {"source", l.source},     {"type", l.type},
           {"reason", l.reason}, {"attempts", l.attempts}, {"frames", l.frames.size()}};
    if (frames) {
      json f = json::array();
      const std::size_t share = budget / std::max<std::size_t>(l.frames.size(), 1);
      bool cut = false;
      for (const auto& fr : l.frames) {
        auto n = std::min(fr.size(), share);
        cut = cut || n < fr.size();
        f.push_back(json::binary(std::vector<std::uint8_t>(fr.begin(), fr.begin() + static_cast<std::ptrdiff_t>(n))));
      }
      j["raw"] = f;
      if (cut) j["truncated"] = true;
    }
    return j;
  };
  if (req->op == "list") {
    json list = json::array();
    for (const auto& l : store_->dead_letters(req->max)) list.push_back(describe(l, false));
    return to_msgpack(json{{"count", store_->dead_letter_count()}, {"letters", list}});
  }
  auto letter = store_->dead_letter(req->id);
  if (!letter) return error("no dead letter " + std::to_string(req->id) + " in " + name_);
  if (req->op == "show") return to_msgpack(describe(*letter, true));
  if (req->op != "retry") return error("op must be list, show or retry, got '" + req->op + "'");
  if (reanswering_) return error("the batch this retry came in failed (the store cannot be written): ask again");
  // A letter without its message's id was refused at the door (a forged source, over
  // the limits, an unrouted sequenced command) or kept before letters carried ids:
  // applying it now would skip the checks that refused it.
  if (letter->message_id.empty())
    return error("dead letter " + std::to_string(req->id) + " was refused before any handler (or kept by an older "
                 "version): not retried");

  // Retry: run the handler again on the stored message, inside this batch's unit of work.
  std::size_t env_at = letter->endpoint.rfind("events:", 0) == 0 ? 1 : 0;
  if (letter->endpoint == "queries") return error("a query has nobody waiting for it any more: not retried");
  if (letter->frames.size() < env_at + 2) return error("dead letter " + std::to_string(req->id) + " has too few frames to retry");
  auto env = codec::decode_envelope(letter->frames[env_at]);
  if (!env) return error("cannot retry: " + env.error().message());
  const EventHandler* h = nullptr;
  if (env_at == 1) {
    auto it = event_handlers_.find(env->type);
    if (it != event_handlers_.end()) h = &it->second;
  } else {
    auto it = command_handlers_.find(env->type);
    if (it != command_handlers_.end()) h = &it->second;
  }
  if (!h) return error("no handler for '" + env->type + "' in " + name_);
  auto before = counters_.dead_letters.load();
  std::vector<std::string_view> raw;
  for (const auto& f : letter->frames) raw.push_back(f);
  // A refusal again updates this same letter (it carries the message's id): one letter
  // per message, however often it is retried.
  apply(*env, letter->frames[env_at + 1], *h, letter->endpoint.c_str(), raw);
  bool ok = counters_.dead_letters.load() == before;
  std::uint32_t attempts = letter->attempts;
  if (ok) {
    store_->remove_dead_letter(letter->id);
  } else if (auto again = store_->dead_letter(letter->id)) {
    attempts = again->attempts;
  }
  return to_msgpack(json{{"id", letter->id}, {"retried", true}, {"ok", ok}, {"attempts", attempts}});
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Context and Node: thin forwards to the core

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
