#include <troupe/adapters/zmq/zap.hpp>

#include <troupe/adapters/zmq/keys.hpp>

#include <zmq_addon.hpp>

#include <cerrno>
#include <stdexcept>

namespace troupe::transport {
namespace {

std::mutex registry_mutex;
std::map<void*, std::weak_ptr<ZapAuthority>>& registry() {
  static std::map<void*, std::weak_ptr<ZapAuthority>> r;
  return r;
}

}  // namespace

std::shared_ptr<ZapAuthority> ZapAuthority::of(zmq::context_t& context) {
  std::lock_guard lock(registry_mutex);
  auto& slot = registry()[context.handle()];
  if (auto existing = slot.lock()) return existing;
  auto fresh = std::make_shared<ZapAuthority>(context);
  slot = fresh;
  return fresh;
}

ZapAuthority::ZapAuthority(zmq::context_t& context) : context_(context), socket_(context, zmq::socket_type::rep) {
  socket_.set(zmq::sockopt::linger, 0);
  try {
    socket_.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t& e) {
    throw std::runtime_error(std::string("cannot start troupe's ZAP handler: inproc://zeromq.zap.01 of this "
                                         "ZeroMQ context is taken (another ZAP handler?): ") + e.what());
  }
  thread_ = std::thread([this] { serve(); });
}

ZapAuthority::~ZapAuthority() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  socket_.close();
  std::lock_guard lock(registry_mutex);
  auto it = registry().find(context_.handle());
  if (it != registry().end() && it->second.expired()) registry().erase(it);
}

void ZapAuthority::allow(const std::string& domain, std::map<std::string, std::string> keys) {
  std::lock_guard lock(mutex_);
  allowed_[domain] = std::move(keys);
}

void ZapAuthority::forget(const std::string& domain) {
  std::lock_guard lock(mutex_);
  allowed_.erase(domain);
}

std::vector<ZapAuthority::Refusal> ZapAuthority::take_refusals(const std::string& prefix) {
  std::lock_guard lock(mutex_);
  std::vector<Refusal> out, keep;
  for (auto& r : refusals_) (r.domain.rfind(prefix, 0) == 0 ? out : keep).push_back(std::move(r));
  refusals_ = std::move(keep);
  pending_.store(!refusals_.empty(), std::memory_order_relaxed);
  return out;
}

void ZapAuthority::serve() {
  // The poll timeout bounds how long the last node waits for this thread to stop.
  while (!stop_.load()) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
      std::vector<zmq::message_t> request;
      if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait)) continue;
      answer(request);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal reached this thread: keep answering
      return;                          // ETERM: the context is terminating
    }
  }
}

// RFC 27: request = version, request id, domain, address, routing id, mechanism,
// credentials...; reply = version, request id, status code, status text, user id, metadata.
void ZapAuthority::answer(std::vector<zmq::message_t>& request) {
  auto text = [&](std::size_t i) { return i < request.size() ? request[i].to_string() : std::string(); };
  std::string version = text(0), id = text(1), domain = text(2), address = text(3), mechanism = text(5);
  std::string status = "400", reason = "not admitted", user;
  if (version == "1.0" && mechanism == "CURVE" && request.size() >= 7) {
    std::string key = request[6].to_string();
    std::lock_guard lock(mutex_);
    auto d = allowed_.find(domain);
    if (d != allowed_.end()) {
      if (auto k = d->second.find(key); k != d->second.end()) {
        status = "200";
        reason = "OK";
        user = k->second;
      }
    }
    // Bounded: a peer cycling through fresh keys cannot grow this while a node is busy.
    if (status != "200" && refusals_.size() < kMaxPending) {
      refusals_.push_back({domain, address, keys::encode(key)});
      pending_.store(true, std::memory_order_relaxed);
    }
  }
  std::array<zmq::const_buffer, 6> reply{zmq::buffer(std::string_view("1.0")), zmq::buffer(id),
                                         zmq::buffer(status),  zmq::buffer(reason),
                                         zmq::buffer(user),    zmq::buffer(std::string_view())};
  zmq::send_multipart(socket_, reply);
}

}  // namespace troupe::transport
