// Queries: the service's own and the built-in ones ($health, $metrics, $topology,
// $schema, $deadletters, $seen, $trace, $replay).
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
  if (first) metrics_.queries_answered.fetch_add(1, std::memory_order_relaxed);
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
  if (self_->partitioned()) {
    // A keyed query asked of the wrong instance would be answered "no such order":
    // it is told where to ask instead. One without its key (a list) is answered here
    // for this instance's keys; the client asks every instance and merges.
    const auto key = key_of(*self_, env->type, payload);
    if (!key.empty() && partition_of(key, self_->partitions) != self_->partition) {
      error_reply(&*env, not_ours(env->type, key));
      return;
    }
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
  tm.latency_us.add_since(t0);
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

std::string NodeCore::answer_builtin(const Envelope& env, std::string_view payload,
                                     std::string& type, std::vector<std::string>& extra) {
  if (env.type == builtin::kHealth) return health_reply();
  if (env.type == builtin::kMetrics) return metrics_reply();
  if (env.type == builtin::kTopology) return topology_reply();
  if (env.type == builtin::kSchema) return schema_reply();
  if (env.type == builtin::kDeadLetters) return deadletters_reply(payload, type);
  if (env.type == builtin::kSeen) {
    auto req = codec::decode<builtin::SeenRequest>(payload);
    if (!req) {
      type = builtin::kError;
      return codec::encode(builtin::Error{req.error().message()});
    }
    // An answer is made on the node's one thread: a peer may not make it build a big one.
    if (req->ids.size() > builtin::kMaxSeenIds) {
      type = builtin::kError;
      return codec::encode(builtin::Error{"$seen: " + std::to_string(req->ids.size()) + " ids asked, at most " +
                                         std::to_string(builtin::kMaxSeenIds) + " per query"});
    }
    builtin::SeenReply reply;
    reply.outcomes.emplace();
    for (const auto& id : req->ids) {
      bool seen = store_->seen(id);
      reply.seen.push_back(seen);
      auto refusal = seen ? store_->refusal(id) : std::nullopt;
      reply.outcomes->push_back({id, !seen ? "unseen" : refusal ? "refused" : "applied", std::move(refusal)});
    }
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
    return codec::encode(builtin::TraceReply{events.size()});
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
    metrics_.replays_served.fetch_add(1, std::memory_order_relaxed);
    return codec::encode(hdr);
  }
  type = builtin::kError;
  return codec::encode(builtin::Error{"unknown built-in query '" + env.type + "'"});
}

std::string NodeCore::health_reply() {
  builtin::Health h;
  h.service = name_;
  h.version = std::string(kVersion);
  h.incarnation = store_->incarnation();
  h.uptime_s = std::chrono::duration<double>(Clock::now() - started_).count();
  h.state = state_;
  h.durable = store_->durable();
  h.head = store_->head();
  h.oldest = store_->oldest();
  h.subscriptions = metrics_.subscriptions.load();
  h.dead_letters = store_->dead_letter_count();
  if (!store_error_.empty()) h.store_error = store_error_;
  if (!endpoint_error_.empty()) h.endpoint_error = endpoint_error_;
  for (const auto& up : upstreams_) {
    const auto& st = up->stream;
    h.upstreams.push_back({up->name, st.position(), st.known_head(),
                           st.known_head() > st.position() ? st.known_head() - st.position() : 0,
                           st.phase() == core::InboundStream::Phase::behind_retention,
                           st.phase() == core::InboundStream::Phase::history_lost, st.stalled()});
  }
  return codec::encode(h);
}

std::string NodeCore::metrics_reply() { return codec::encode(report(metrics_, name_)); }

std::string NodeCore::topology_reply() {
  builtin::TopologyReply t;
  t.mesh = topology_.mesh;
  t.file = topology_.file;
  t.service = name_;
  t.endpoints = {{"events", bound_.events}, {"commands", bound_.commands}, {"queries", bound_.queries}};
  t.publishes = self_->publishes;
  t.accepts = self_->accepts;
  t.answers = self_->answers;
  for (const auto& s : self_->reacts_to) t.reacts_to[s.publisher] = s.types;
  for (const auto& s : self_->sends) t.sends[s.target] = s.types;
  t.heartbeat_ms = static_cast<std::uint64_t>(topology_.defaults.heartbeat.count());
  t.durability = topology_.defaults.durability == Durability::durable ? "durable" : "memory";
  return codec::encode(t);
}

std::string NodeCore::schema_reply() {
  return codec::encode(builtin::SchemaReply{name_, std::string(kVersion), contract_text_});
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
    builtin::DeadLetterInfo d{l.id,     l.time,   l.first_time, l.endpoint, l.source, l.type,
                              l.reason, l.attempts, l.frames.size(), std::nullopt, std::nullopt};
    if (frames) {
      d.raw.emplace();
      const std::size_t share = budget / std::max<std::size_t>(l.frames.size(), 1);
      for (const auto& fr : l.frames) {
        d.raw->push_back({fr.substr(0, share)});
        if (fr.size() > share) d.truncated = true;
      }
    }
    return d;
  };
  if (req->op == "list") {
    builtin::DeadLetterList list{store_->dead_letter_count(), {}};
    for (const auto& l : store_->dead_letters(req->max)) list.letters.push_back(describe(l, false));
    return codec::encode(list);
  }
  auto letter = store_->dead_letter(req->id);
  if (!letter) return error("no dead letter " + std::to_string(req->id) + " in " + name_);
  if (req->op == "show") return codec::encode(describe(*letter, true));
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
  auto before = metrics_.dead_letters.load();
  std::vector<std::string_view> raw;
  for (const auto& f : letter->frames) raw.push_back(f);
  // A refusal again updates this same letter (it carries the message's id): one letter
  // per message, however often it is retried.
  apply(*env, letter->frames[env_at + 1], *h, letter->endpoint.c_str(), raw);
  bool ok = metrics_.dead_letters.load() == before;
  std::uint32_t attempts = letter->attempts;
  if (ok) {
    store_->remove_dead_letter(letter->id);
    if (env_at == 0 && env->sequence == 0) store_->set_refusal(env->id, "");  // a one-shot command: applied now
  } else if (auto again = store_->dead_letter(letter->id)) {
    attempts = again->attempts;
  }
  return codec::encode(builtin::DeadLetterRetried{letter->id, true, ok, attempts});
}

}  // namespace troupe::detail
