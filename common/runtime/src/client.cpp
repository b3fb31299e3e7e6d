// Client: DEALER per service for queries, PUSH per service for commands, one SUB to watch.
#include <troupe/runtime/builtin.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/adapters/zmq/keys.hpp>
#include <troupe/adapters/zmq/sockets.hpp>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <thread>

namespace troupe {
namespace {

std::string_view sv(const zmq::message_t& m) { return {static_cast<const char*>(m.data()), m.size()}; }

}  // namespace

void curve_client(zmq::socket_t& socket, const Topology& topology, const std::string& service,
                  const std::string& identity) {
  if (!topology.curve()) return;
  auto me = keys::load(topology.defaults.keys_dir, identity);
  if (!me)
    throw std::runtime_error("identity '" + identity + "' has no usable CURVE key pair: " + me.error().message());
  auto server = keys::public_key(topology, service);
  if (!server) throw std::runtime_error("no public key of service '" + service + "': " + server.error().message());
  transport::secure_client(socket, {me->secret_key, me->public_key}, *server);
}

Client::Client(Topology topology, std::string name, zmq::context_t* context)
    : topology_(std::move(topology)), name_(std::move(name)) {
  if (context) {
    context_ = context;
  } else {
    own_context_ = std::make_unique<zmq::context_t>(1);
    context_ = own_context_.get();
  }
}

Client::~Client() {
  dealers_.clear();
  pushes_.clear();  // linger lets queued commands leave
  watcher_.reset();
}

void Client::set_endpoints(const std::string& service, const Endpoints& endpoints) {
  if (auto* s = topology_.find(service)) {
    s->endpoints = endpoints;
    s->expose = {};
  }
  dealers_.erase(service);
  pushes_.erase(service);
}

zmq::socket_t& Client::dealer(const std::string& service) {
  auto& slot = dealers_[service];
  if (!slot) {
    slot = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::dealer);
    slot->set(zmq::sockopt::linger, 0);
    // A tool usually starts right after the mesh (scripts/mesh up polls $health): a
    // connection made before the service has bound is retried after 10 ms, backing off
    // to libzmq's usual 100 ms, so the first reply comes as soon as the service is up
    // (shop-edge: 194 -> 30 ms). Only here: libzmq starts the interval afresh after a
    // connection that was made and then dropped (a refused CURVE handshake is one), and
    // a query socket lives for one query's timeout, while a watching SUB may live for hours.
    slot->set(zmq::sockopt::reconnect_ivl, 10);
    slot->set(zmq::sockopt::reconnect_ivl_max, 100);
    slot->set(zmq::sockopt::sndtimeo, 1000);
    slot->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(64u << 20));
    curve_client(*slot, topology_, service, identity_);
    slot->connect(topology_.external(*topology_.find(service)).queries);
  }
  return *slot;
}

zmq::socket_t& Client::push(const std::string& service) {
  auto& slot = pushes_[service];
  if (!slot) {
    slot = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::push);
    slot->set(zmq::sockopt::linger, 5000);
    slot->set(zmq::sockopt::sndtimeo, 5000);  // a receiver that is down never blocks us for good
    curve_client(*slot, topology_, service, identity_);
    slot->connect(topology_.external(*topology_.find(service)).commands);
  }
  return *slot;
}

Result<std::string> Client::route(const std::string& service, const std::string& type,
                                  std::string_view payload) const {
  auto instances = topology_.instances(service);
  if (instances.empty()) return reject(Rejection::Code::invalid, service, "no such service in " + topology_.file);
  if (instances.size() == 1) return instances.front()->name;
  const ServiceSpec& first = *instances.front();
  const std::string field = first.key_field(type);
  const std::string all = service + ".0 … " + service + "." + std::to_string(instances.size() - 1);
  if (field.empty())
    return reject(Rejection::Code::invalid, service,
                  "is partitioned, and every instance takes " + type + ": send it to each (" + all + ")");
  auto key = codec::partition_key(payload, type, field, codec::payload_limits(topology_, type));  // as its node reads it
  if (!key) return key.error();
  if (key->empty() && !first.accepts_type(type))
    return reject(Rejection::Code::invalid, service,
                  "is partitioned into " + std::to_string(instances.size()) + " by '" + field + "', and this " + type +
                      " has none: ask each instance (" + all + ") and merge the replies");
  return instances[partition_of(*key, static_cast<int>(instances.size()))]->name;
}

Result<Received> Client::query_raw(const std::string& service_or_group, const std::string& type,
                                   std::string payload, std::chrono::milliseconds timeout) {
  auto routed = type.rfind('$', 0) == 0 ? Result<std::string>(service_or_group) : route(service_or_group, type, payload);
  if (!routed) return routed.error();
  const std::string& service = *routed;
  const ServiceSpec* spec = topology_.find(service);
  if (!spec) return reject(Rejection::Code::invalid, service, "no such service in " + topology_.file);
  Envelope e = make_envelope(name_, type, Kind::query);
  std::string env = codec::encode_envelope(e);
  auto& s = dealer(service);
  std::array<zmq::const_buffer, 2> bufs{zmq::buffer(env), zmq::buffer(payload)};
  if (!zmq::send_multipart(s, bufs)) {
    dealers_.erase(service);
    return reject(Rejection::Code::timeout, service, "cannot send " + type + ": its queue is full (is it running?)");
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto now = std::chrono::steady_clock::now();  // rounded up, as in next_event
    if (now >= deadline) break;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, left);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;
    }
    if (!(item.revents & ZMQ_POLLIN)) continue;
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(s, std::back_inserter(frames))) continue;
    if (frames.size() < 2) continue;
    auto renv = codec::decode_envelope(sv(frames[0]));
    if (!renv || renv->causationid != e.id) continue;  // a late reply to an earlier query
    Received r{std::move(*renv), std::string(sv(frames[1])), {}};
    for (std::size_t i = 2; i < frames.size(); ++i) r.extra.emplace_back(sv(frames[i]));
    if (r.envelope.type == builtin::kError) {
      auto err = codec::decode<builtin::Error>(r.payload);
      return reject(Rejection::Code::refused, service, err ? err->error : "error reply");
    }
    return r;
  }
  dealers_.erase(service);  // drop the request still queued for a dead peer
  return reject(Rejection::Code::timeout, service,
                "no reply to " + type + " within " + std::to_string(timeout.count()) +
                    " ms (is it running? queries endpoint " + topology_.external(*spec).queries + ")");
}

Result<Envelope> Client::send_raw(const std::string& service_or_group, const std::string& type,
                                  std::string payload, std::string correlation, std::string traceparent,
                                  std::uint32_t schemaversion, std::string id) {
  auto routed = route(service_or_group, type, payload);
  if (!routed) return routed.error();
  const std::string& service = *routed;
  const ServiceSpec* spec = topology_.find(service);
  if (!spec) return reject(Rejection::Code::invalid, service, "no such service in " + topology_.file);
  if (!spec->accepts_type(type))
    return reject(Rejection::Code::invalid, service, "does not accept command '" + type + "'");
  if (!traceparent.empty() && !valid_traceparent(traceparent))
    return reject(Rejection::Code::invalid, "traceparent",
                  "expected 00-<32 hex>-<16 hex>-<2 hex> (W3C Trace Context), got '" + printable(traceparent) + "'");
  Envelope e = make_envelope(name_, type, Kind::command);
  if (!id.empty()) e.id = std::move(id);
  e.correlationid = std::move(correlation);
  e.traceparent = std::move(traceparent);
  e.schemaversion = schemaversion;
  std::string env = codec::encode_envelope(e);
  if (auto over = codec::envelope_over_limits(e, env.size()))
    return reject(Rejection::Code::too_large, type, "the envelope would be refused: " + *over);
  std::array<zmq::const_buffer, 2> bufs{zmq::buffer(env), zmq::buffer(payload)};
  if (!zmq::send_multipart(push(service), bufs))
    return reject(Rejection::Code::timeout, service, "cannot send " + type + ": its queue is full (is it running?)");
  return e;
}

Result<void> Client::resend(const std::string& service_or_group, const Envelope& envelope, const std::string& payload) {
  auto routed = route(service_or_group, envelope.type, payload);
  if (!routed) return routed.error();
  const std::string& service = *routed;
  std::string env = codec::encode_envelope(envelope);
  std::array<zmq::const_buffer, 2> bufs{zmq::buffer(env), zmq::buffer(payload)};
  if (!zmq::send_multipart(push(service), bufs))
    return reject(Rejection::Code::timeout, service, "cannot resend: its queue is full (is it running?)");
  return {};
}

std::optional<std::vector<bool>> Client::seen(const std::string& service, const std::vector<std::string>& ids,
                                              std::chrono::milliseconds timeout) {
  auto r = query_raw(service, std::string(builtin::kSeen), codec::encode(builtin::SeenRequest{ids}), timeout);
  if (!r) return std::nullopt;
  auto reply = codec::decode<builtin::SeenReply>(r->payload);
  if (!reply || reply->seen.size() != ids.size()) return std::nullopt;
  return reply->seen;
}

std::optional<std::vector<builtin::SeenOutcome>> Client::outcomes(const std::string& service,
                                                                  const std::vector<std::string>& ids,
                                                                  std::chrono::milliseconds timeout) {
  auto r = query(service, builtin::SeenQuery{ids}, timeout);
  if (!r || r->seen.size() != ids.size()) return std::nullopt;
  if (r->outcomes && r->outcomes->size() == ids.size()) return std::move(*r->outcomes);
  std::vector<builtin::SeenOutcome> out;  // a node from before outcomes: seen is all it says
  for (std::size_t i = 0; i < ids.size(); ++i) out.push_back({ids[i], r->seen[i] ? "applied" : "unseen", {}});
  return out;
}

Result<Envelope> Client::send_confirmed(const std::string& service_or_group, const std::string& type, std::string payload,
                                        std::string correlation, std::chrono::milliseconds timeout,
                                        std::string traceparent, std::string id) {
  auto routed = route(service_or_group, type, payload);
  if (!routed) return routed.error();
  const std::string& service = *routed;
  auto sent = send_raw(service, type, payload, std::move(correlation), std::move(traceparent), 1, std::move(id));
  if (!sent) return sent;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wait = std::chrono::milliseconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = outcomes(service, {sent->id}, std::chrono::milliseconds(300));
    if (s && s->at(0).state == "refused")
      return reject(Rejection::Code::refused, service,
                    "command " + type + " " + sent->id + " refused: " + s->at(0).reason.value_or("(no reason kept)"));
    if (s && s->at(0).state != "unseen") return sent;
    std::this_thread::sleep_for(wait);
    wait = std::min(wait * 2, std::chrono::milliseconds(200));
    (void)resend(service, *sent, payload);
  }
  return reject(Rejection::Code::timeout, service,
                "command " + type + " " + sent->id + " not applied within " + std::to_string(timeout.count()) +
                    " ms (is it running? it may still arrive; resending it is safe)");
}

void Client::watch(const std::vector<std::string>& services, bool heartbeats) {
  watcher_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::sub);
  watcher_->set(zmq::sockopt::rcvhwm, 1000000);
  for (const auto& s : topology_.services) {
    if (!services.empty() && std::find(services.begin(), services.end(), s.name) == services.end() &&
        std::find(services.begin(), services.end(), s.service()) == services.end())
      continue;
    for (const auto& t : s.publishes) watcher_->set(zmq::sockopt::subscribe, t + " ");
    if (heartbeats) watcher_->set(zmq::sockopt::subscribe, builtin::kHeartbeatTopic);
    curve_client(*watcher_, topology_, s.name, identity_);  // per connection: each has its server key
    watcher_->connect(topology_.external(s).events);
  }
}

std::optional<Received> Client::next_event(std::chrono::milliseconds timeout) {
  if (!watcher_) return std::nullopt;
  zmq::pollitem_t item{watcher_->handle(), 0, ZMQ_POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    std::vector<zmq::message_t> frames;
    const bool got = zmq::recv_multipart(*watcher_, std::back_inserter(frames), zmq::recv_flags::dontwait).has_value();
    if (got && frames.size() == 3) {
      if (auto env = codec::decode_envelope(sv(frames[1])))
        return Received{std::move(*env), std::string(sv(frames[2])), {}};
    }
    // A malformed message is dropped, and the deadline still holds: a publisher sending
    // nothing else cannot keep the caller here past its timeout. Rounded up: with less
    // than a millisecond left, rounding down returned at once and a caller waiting in a
    // loop (troupe shop load between two orders) spun a core.
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::nullopt;
    if (got) continue;  // look again before sleeping: more may be queued
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    try {
      zmq::poll(&item, 1, left);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
  }
}

}  // namespace troupe
