// Who may do what: CURVE keys and ZAP allow-lists, refused handshakes, subscriptions
// and tap mirrors, the source a command may claim, rate limits, and the built-in
// queries only some identities may ask.
#include "node_core.hpp"

#include <troupe/domain/id.hpp>
#include <troupe/adapters/zmq/keys.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

namespace troupe::detail {

void NodeCore::setup_curve() {
  auto pair = keys::load(topology_.defaults.keys_dir, name_);
  if (!pair)
    throw std::runtime_error("service '" + name_ + "': security is \"curve\" but its key pair is unusable: " +
                             pair.error().message() + " (`troupe keygen --mesh` makes missing keys)");
  keys_ = {pair->secret_key, pair->public_key};
  if (!self_->public_key.empty() && self_->public_key != keys_.public_key)
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

  zap_ = ZapAuthority::of(*context_);
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
  if (zap_) transport::secure_server(s, keys_, name_ + "/" + endpoint);
}

void NodeCore::secure_client(zmq::socket_t& s, const std::string& service) {
  if (zap_) transport::secure_client(s, keys_, server_keys_.at(service));
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
  if (topic == builtin::kHeartbeatTopic) count(metrics_.subscriptions);
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
  if (topic == builtin::kTapTopic) count(metrics_.taps);
}

void NodeCore::mirror(std::string_view what, std::string_view envelope, std::string_view payload) {
  if (metrics_.taps.load(std::memory_order_relaxed) == 0) return;  // an idle mesh pays nothing
  Envelope m = make_envelope(name_, std::string(what), Kind::event);
  m.sequence = ++mirror_sequence_;
  std::string topic(builtin::kTapTopic), menv = codec::encode_envelope(m);
  std::array<zmq::const_buffer, 4> bufs{zmq::buffer(topic), zmq::buffer(menv), zmq::buffer(envelope),
                                        zmq::buffer(payload)};
  zmq::send_multipart(pub_, bufs, zmq::send_flags::dontwait);
  metrics_.mirrored.fetch_add(1, std::memory_order_relaxed);
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

}  // namespace troupe::detail
