// Subscriptions and taps: what reaches the events socket (XPUB, manual) is applied only
// if it is a subscription this node can serve, `$tap ` only for identities admitted as
// taps; while a tap listens, what the node handles is mirrored to it (never blocking: a
// slow tap loses mirrors, and sees it from the mirror sequence).
#include "node_core.hpp"

namespace troupe::detail {

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

}  // namespace troupe::detail
