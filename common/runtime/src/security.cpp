// Who may do what: CURVE keys and ZAP allow-lists, refused handshakes, the source a
// command may claim, rate limits, and the built-in queries only some identities may
// ask. Subscriptions and tap mirrors: taps.cpp.
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
  for (const auto& route : self_->sends)
    for (const ServiceSpec* target : topology_.instances(route.target)) need(target->name);

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
