// Messages in and out: running a handler in its savepoint, commands (one-shot and
// sequenced), what handlers emit and send, resends and pruning. Dead letters:
// dead_letters.cpp.
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

bool NodeCore::sends_to_us(std::string_view source) const {
  const ServiceSpec* sender = topology_.find(source);
  if (!sender) return false;
  return std::any_of(sender->sends.begin(), sender->sends.end(),
                     [&](const CommandRoute& r) { return r.target == self_->service(); });
}

std::string NodeCore::key_of(const ServiceSpec& owner, std::string_view type, std::string_view payload) {
  const std::string field = owner.key_field(type);
  if (field.empty()) return {};
  // Read within the limits the handler decodes with, so a payload it takes always has
  // its key read. One that cannot be read (not msgpack, no map, a key that is no string
  // or integer) counts as absent: the instance that owns the empty key takes it, and
  // its handler says what is wrong with it.
  auto key = codec::partition_key(payload, type, field, payload_limits(type));
  return key ? *key : std::string();
}

std::string NodeCore::not_ours(std::string_view type, const std::string& key) const {
  // The key as far as a message shows it: at most 128 bytes, printable.
  const std::string shown = key.size() > 128 ? printable(key.substr(0, 128)) + "…" : printable(key);
  return std::string(type) + " with key '" + shown + "' belongs to " + self_->group + "." +
         std::to_string(partition_of(key, self_->partitions)) + ", not to " + name_;
}

bool NodeCore::owns(std::string_view type, std::string_view payload) {
  if (!self_->partitioned() || self_->key_field(type).empty()) return true;
  return partition_of(key_of(*self_, type, payload), self_->partitions) == self_->partition;
}

bool NodeCore::mesh_type(std::string_view type) const {
  return std::any_of(topology_.services.begin(), topology_.services.end(), [&](const ServiceSpec& s) {
    return s.publishes_type(type) || s.accepts_type(type) || s.answers_type(type);
  });
}

void NodeCore::apply(const Envelope& env, std::string_view payload, const EventHandler& handler,
                     const char* endpoint, std::span<const std::string_view> raw) {
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
  tm.latency_us.add_since(t0);
  if (r) {
    store_->release();
    ++tm.handled;
    for (auto& o : message_out_) batch_out_.push_back(std::move(o));
  } else {
    store_->rollback_to();
    store_->release();
    std::string reason = r.error().message();
    // A payload this build cannot read: say which schema versions met, so an operator
    // sees a contract break (troupe compat) rather than a bad message.
    if ((r.error().code == Code::wrong_type || r.error().code == Code::missing) &&
        contract_.messages.count(env.type))
      reason += " (sent as schemaversion " + std::to_string(env.schemaversion) + " by " + env.source + "; " + name_ +
                " " + std::string(kVersion) + " reads schemaversion " + std::to_string(schema_version(env.type)) + ")";
    dead_letter(endpoint, &env, reason, raw, true);
  }
  message_out_.clear();
}

const codec::Limits& NodeCore::payload_limits(std::string_view type) {
  auto it = payload_limits_.find(type);
  if (it != payload_limits_.end()) return it->second;
  return payload_limits_.emplace(std::string(type), codec::payload_limits(topology_, type)).first->second;
}

void NodeCore::check_outgoing_size(std::string_view what, std::size_t bytes) const {
  const auto max = topology_.defaults.max_message_bytes;
  if (bytes > max)
    throw OversizedMessage(name_ + " emits " + std::string(what) + " of " + std::to_string(bytes) +
                           " bytes, over max_message_bytes (" + std::to_string(max) +
                           "): peers would refuse it, so it is not committed");
}

void NodeCore::check_outgoing_envelope(const Envelope& e, std::size_t encoded) const {
  // A correlation id is the handler's to choose (the shop's is its order id, which a
  // client chose): one over the envelope's limits would be committed, refused by every
  // reader, asked for again and refused again, and its stream would stall behind it.
  if (auto over = codec::envelope_over_limits(e, encoded))
    throw OversizedMessage(name_ + " emits " + e.type + " whose envelope every peer would refuse: " + *over +
                           " (docs/protocol.md §2), so it is not committed");
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
      metrics_.duplicates.fetch_add(1, std::memory_order_relaxed);
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
    if (!command_inbox_.knows(env->source))
      command_inbox_.restore(env->source, store_->position("cmd:" + env->source),
                             store_->get(kSendersTable, env->source).value_or(""));
    const auto verdict = command_inbox_.offer(env->source, env->sequence, env->epoch, fx_);
    carry_out(nullptr, fx_);
    switch (verdict) {
      case core::CommandInbox::Verdict::duplicate:
        metrics_.duplicates.fetch_add(1, std::memory_order_relaxed);
        return;
      case core::CommandInbox::Verdict::out_of_order:  // an earlier one is missing: it will be resent
        ++metrics_.commands_out_of_order;
        return;
      case core::CommandInbox::Verdict::apply: break;
    }
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
  if (!owns(env->type, view(in.frames[1]))) {
    const auto key = key_of(*self_, env->type, view(in.frames[1]));
    dead_letter("commands", &*env,
                not_ours(env->type, key) + " (misrouted: docs/protocol.md §7.10 says how to route)", raw);
    return;
  }
  apply(*env, view(in.frames[1]), h->second, "commands", raw);
  metrics_.commands_applied.fetch_add(1, std::memory_order_relaxed);
}

void NodeCore::add_event_handler(std::string_view type, EventHandler handler) {
  bool reacts = false;
  for (const auto& s : self_->reacts_to)
    if (contains(s.types, type)) reacts = true;
  if (!reacts)
    throw TopologyViolation("service '" + name_ + "' handles event '" + std::string(type) +
                            "', but its topology does not react to it");
  event_handlers_[std::string(type)] = std::move(handler);
}

void NodeCore::add_command_handler(std::string_view type, EventHandler handler) {
  if (!self_->accepts_type(type))
    throw TopologyViolation("service '" + name_ + "' handles command '" + std::string(type) +
                            "', but its topology does not list it in accepts");
  command_handlers_[std::string(type)] = std::move(handler);
}

void NodeCore::add_query_handler(std::string_view type, QueryHandler handler) {
  if (!self_->answers_type(type))
    throw TopologyViolation("service '" + name_ + "' answers query '" + std::string(type) +
                            "', but its topology does not list it in answers");
  query_handlers_[std::string(type)] = std::move(handler);
}

void NodeCore::set_peer_endpoints(const std::string& service, const Endpoints& endpoints) {
  if (auto* s = topology_.find(service)) s->endpoints = endpoints;
  self_ = topology_.find(name_);
}

void NodeCore::set_contract(schema::Contract contract) {
  contract.service = name_;
  contract.build = std::string(kVersion);
  if (!contract.publishes.empty()) {
    auto sorted = [](std::vector<std::string> v) {
      std::sort(v.begin(), v.end());
      return v;
    };
    if (sorted(contract.publishes) != sorted(self_->publishes)) {
      auto list = [](const std::vector<std::string>& v) {
        std::string out;
        for (const auto& t : v) out += (out.empty() ? "" : ", ") + t;
        return "[" + out + "]";
      };
      throw TopologyViolation("service '" + name_ + "' declares that it publishes " + list(contract.publishes) +
                              ", but its topology lists " + list(self_->publishes));
    }
  }
  if (!contract.sends.empty()) {
    std::map<std::string, std::set<std::string>> declared, routed;
    for (const auto& [target, types] : contract.sends) declared[target].insert(types.begin(), types.end());
    for (const auto& r : self_->sends) routed[r.target].insert(r.types.begin(), r.types.end());
    if (declared != routed) {
      auto list = [](const std::map<std::string, std::set<std::string>>& m) {
        std::string out;
        for (const auto& [target, types] : m)
          for (const auto& t : types) out += (out.empty() ? "" : ", ") + t + " to " + target;
        return "[" + out + "]";
      };
      throw TopologyViolation("service '" + name_ + "' declares that it sends " + list(declared) +
                              ", but its topology lists " + list(routed));
    }
  }
  if (auto keys = check_partition_keys(topology_, *self_, contract); !keys.empty())
    throw TopologyViolation(keys.front().message);
  contract_text_ = troupe::json::contract_text(contract);
  // Loud, not fatal: a service runs without being able to say what it speaks.
  if (contract_text_.size() + 4096 > topology_.defaults.max_message_bytes)
    log_->warn("its contract is {} bytes, over what max_message_bytes ({}) lets $schema answer: $schema will "
               "answer $error, and troupe asyncapi --mesh and scripts/upgrade cannot ask it",
               contract_text_.size(), topology_.defaults.max_message_bytes);
  contract_ = std::move(contract);
}

std::uint32_t NodeCore::schema_version(std::string_view type) const {
  auto it = contract_.messages.find(std::string(type));
  return it == contract_.messages.end() ? 1 : it->second.version;
}

void NodeCore::stage_event(const Envelope& cause, std::string_view type, std::string payload,
                           std::string correlation) {
  if (!self_->publishes_type(type))
    throw TopologyViolation("service '" + name_ + "' emits '" + std::string(type) +
                            "', which its topology does not list in publishes");
  Envelope e = make_caused_envelope(cause, name_, std::string(type), Kind::event);
  if (!correlation.empty()) e.correlationid = std::move(correlation);
  e.schemaversion = schema_version(type);
  e.sequence = store_->head() + 1;
  e.epoch = epoch_;
  std::string env = codec::encode_envelope(e);  // before e's strings move into the row
  check_outgoing_envelope(e, env.size());
  check_outgoing_size(type, type.size() + 1 + env.size() + payload.size());
  ports::OutboxEvent ev{e.sequence, std::move(e.type), std::move(e.correlationid), std::move(e.causationid),
                        std::move(env), std::move(payload)};
  store_->append_event(ev);
  ++metrics_.types[ev.type].published;
  message_out_.push_back({Outgoing::To::events, {}, 0, {topic_of(type), std::move(ev.envelope), std::move(ev.payload)}});
}

void NodeCore::stage_command(const Envelope& cause, std::string_view target, std::string_view type,
                             std::string payload, std::string correlation) {
  bool routed = false;
  for (const auto& r : self_->sends)
    if (r.target == target && contains(r.types, type)) routed = true;
  if (!routed)
    throw TopologyViolation("service '" + name_ + "' sends '" + std::string(type) + "' to '" +
                            std::string(target) + "', which its topology does not list in sends");
  // A partitioned target: the instance that owns the command's key (every instance
  // when its type is keyed "*"), each with its own sequence.
  auto instances = topology_.instances(target);
  if (instances.size() > 1) {
    const std::string key = key_of(*instances.front(), type, payload);
    const bool every = instances.front()->key_field(type).empty();
    for (const ServiceSpec* i : instances)
      if (every || i->partition == partition_of(key, i->partitions))
        stage_one_command(cause, i->name, type, payload, correlation);
    return;
  }
  stage_one_command(cause, target, type, std::move(payload), std::move(correlation));
}

void NodeCore::stage_one_command(const Envelope& cause, std::string_view target, std::string_view type,
                                 std::string payload, std::string correlation) {
  Envelope e = make_caused_envelope(cause, name_, std::string(type), Kind::command);
  if (!correlation.empty()) e.correlationid = std::move(correlation);
  e.schemaversion = schema_version(type);
  e.sequence = store_->command_head(target) + 1;
  // A receiver tells new commands under old numbers by it (a lost WAL tail). A memory
  // node starts its numbers again at every start: that loss is memory mode's own.
  if (store_->durable()) e.epoch = epoch_;
  std::string env = codec::encode_envelope(e);
  check_outgoing_envelope(e, env.size());
  check_outgoing_size(type, env.size() + payload.size());
  ports::OutboxCommand c{std::string(target), e.sequence, std::move(e.type), std::move(env), std::move(payload)};
  store_->append_command(c);
  ++metrics_.types[c.type].published;
  message_out_.push_back({Outgoing::To::command, c.target, c.sequence, {std::move(c.envelope), std::move(c.payload)}});
}

void NodeCore::resend_commands() {
  const auto now = Clock::now();
  bool durable = false;
  for (auto& [name, d] : downstreams_) {
    if (!d->outbox.resend_due(now)) continue;
    // What the store holds may not be on disk yet: a command is sent only once it is
    // (a wait of one sync at most, and only when something is unacknowledged).
    if (sync_ && !durable && store_->command_head(name) > d->outbox.acked()) {
      await_durable();
      durable = true;
    }
    for (const auto& c : store_->unacked_commands(name, 512)) {
      if (c.sequence > d->outbox.resend_limit()) break;
      std::array<zmq::const_buffer, 2> bufs{zmq::buffer(c.envelope), zmq::buffer(c.payload)};
      if (!zmq::send_multipart(d->push, bufs, zmq::send_flags::dontwait)) break;
      d->outbox.sent(c.sequence);
      ++metrics_.commands_resent;
    }
    d->outbox.resent(now);
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

}  // namespace troupe::detail
