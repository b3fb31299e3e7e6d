// Event streams: each publisher's events applied in order once, gaps repaired by
// $replay, the publisher's identity and epochs checked, losses and stalls reported;
// and this node's own heartbeat.
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

void NodeCore::save_upstream(Upstream& up) {
  store_->put(kUpstreamsTable, up.name, up.stream.identity());
  up.stream.identity_saved();
}

void NodeCore::carry_out(Upstream* up, core::Effects& fx) {
  for (const auto& r : fx.reports) {
    switch (r.level) {
      case core::Report::Level::debug: log_->debug("{}", r.text); break;
      case core::Report::Level::info: log_->info("{}", r.text); break;
      case core::Report::Level::warn: log_->warn("{}", r.text); break;
      case core::Report::Level::error: log_->error("{}", r.text); break;
    }
  }
  if (up && fx.save_identity) save_upstream(*up);
  metrics_.events_lost += fx.events_lost;
  if (fx.loss == core::Loss::commands_lost_here || fx.loss == core::Loss::commands_lost_there ||
      fx.loss == core::Loss::commands_rewritten)
    commands_lost_ = true;
  if (fx.health_changed) refresh_state();
  fx.clear();
}

void NodeCore::handle_event(Upstream& up, std::string_view env_bytes, std::string_view payload,
                            std::span<const std::string_view> raw, bool replayed) {
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
  const auto verdict = up.stream.offer(env->sequence, env->epoch, replayed, fx_);
  if (fx_.gap_opened) {
    metrics_.gaps_seen.fetch_add(1, std::memory_order_relaxed);
    mirror("$gap", codec::encode_envelope(*env),
           to_msgpack(json{{"publisher", up.name}, {"position", up.stream.position()}, {"seen", env->sequence}}));
  }
  const bool repaired = fx_.gap_repaired;
  carry_out(&up, fx_);
  switch (verdict) {
    case core::InboundStream::Verdict::stopped:
    case core::InboundStream::Verdict::held:
    case core::InboundStream::Verdict::gap: return;
    case core::InboundStream::Verdict::duplicate:
      metrics_.duplicates.fetch_add(1, std::memory_order_relaxed);
      return;
    case core::InboundStream::Verdict::apply: break;
  }
  if (up.reacts.count(env->type) && owns(env->type, payload)) {
    auto h = event_handlers_.find(env->type);
    if (h != event_handlers_.end()) apply(*env, payload, h->second, endpoint.c_str(), raw);
  }
  metrics_.events_applied.fetch_add(1, std::memory_order_relaxed);
  if (repaired) {
    mirror("$repaired", env_bytes, to_msgpack(json{{"publisher", up.name}, {"position", up.stream.position()}}));
    metrics_.gaps_repaired.fetch_add(1, std::memory_order_relaxed);
  }
}

namespace {
core::PublisherWord word_of(const builtin::Heartbeat& hb) {
  return {hb.incarnation, hb.boot, hb.head, hb.durable, hb.epoch};
}
}  // namespace

void NodeCore::handle_replay(Upstream& up, Incoming& in) {
  if (in.frames.size() < 2 || in.frames.size() % 2 != 0) {
    reject_frames(("replay:" + up.name).c_str(), "a $replay reply has an odd frame count", views(in.frames));
    return;
  }
  auto env = codec::decode_envelope(view(in.frames[0]));
  if (!env || !up.stream.awaits(env->causationid)) return;  // stale or foreign: ignore
  if (env->type == builtin::kError) {
    up.stream.refused(fx_);
    carry_out(&up, fx_);
    auto err = codec::decode<builtin::Error>(view(in.frames[1]));
    log_->warn("replay from {} refused: {}", up.name, err ? printable(err->error) : "(unreadable)");
    return;
  }
  auto hdr = codec::decode<builtin::ReplayReply>(view(in.frames[1]));
  if (!hdr) {
    up.stream.refused(fx_);  // answered, if unreadably: nothing to apply, asked again later
    carry_out(&up, fx_);
    reject_frames(("replay:" + up.name).c_str(), hdr.error().message(), views(in.frames));
    return;
  }
  core::ReplayAnswer answer{{hdr->incarnation, hdr->boot, hdr->head, hdr->durable, hdr->epoch},
                            hdr->oldest, hdr->epoch_of_from};
  const bool take = up.stream.answered(answer, fx_);
  carry_out(&up, fx_);
  if (!take) return;
  // Kept as [topic][envelope][payload] like a live event, so a dead letter can be retried.
  static const std::string kReplayedTopic = "$replayed ";
  for (std::size_t i = 2; i + 1 < in.frames.size(); i += 2)
    handle_event(up, view(in.frames[i]), view(in.frames[i + 1]),
                 std::array<std::string_view, 3>{kReplayedTopic, view(in.frames[i]), view(in.frames[i + 1])}, true);
}

void NodeCore::handle_heartbeat(Upstream* up, Incoming& in) {
  if (in.frames.size() != 3) return;
  auto hb = codec::decode<builtin::Heartbeat>(view(in.frames[2]));
  if (!hb) {
    reject_frames("heartbeats", hb.error().message(), views(in.frames));
    return;
  }
  if (up && hb->service == up->name) {
    up->stream.heartbeat(word_of(*hb), fx_);
    if (fx_.gap_opened) metrics_.gaps_seen.fetch_add(1, std::memory_order_relaxed);
    carry_out(up, fx_);
  }
  // Acks are read from the receiver's heartbeats socket only: a service that also
  // reacts to it gets the same heartbeats on its events socket too, later when events
  // queue before them, and an older ack read after a newer one would look like a loss.
  auto it = up ? downstreams_.end() : downstreams_.find(hb->service);
  if (it != downstreams_.end()) {
    Downstream& down = *it->second;
    auto ack = hb->acks.find(name_);
    const bool checked = down.outbox.may_send();
    auto prune_to = down.outbox.heartbeat(ack == hb->acks.end() ? std::nullopt : std::optional(ack->second),
                                          hb->incarnation, hb->durable, store_->command_head(down.name),
                                          store_->durable(), Clock::now(), fx_);
    if (fx_.save_identity) store_->put(kDownstreamsTable, down.name, down.outbox.incarnation());
    fx_.save_identity = false;
    carry_out(nullptr, fx_);
    if (prune_to) store_->ack_commands(down.name, *prune_to);
    if (!checked && down.outbox.may_send()) store_->put(kDownstreamsTable, down.name + " held", "none");
  }
}

void NodeCore::request_replays() {
  const auto now = Clock::now();
  for (auto& up : upstreams_) {
    auto due = up->stream.tick(now, fx_);
    carry_out(up.get(), fx_);
    if (due.reopen_subscription) {
      open_subscription(*up);
      ++metrics_.connections_renewed;
    }
    if (due.reopen_replay) {
      open_replay(*up);
      ++metrics_.connections_renewed;
    }
    if (!due.ask) continue;
    Envelope e = make_envelope(name_, std::string(builtin::kReplay), Kind::query);
    builtin::ReplayRequest req;
    req.from = *due.ask;
    std::string env = codec::encode_envelope(e);
    std::string body = codec::encode(req);
    std::array<zmq::const_buffer, 2> bufs{zmq::buffer(env), zmq::buffer(body)};
    if (zmq::send_multipart(up->dealer, bufs, zmq::send_flags::dontwait)) {
      up->stream.asked(e.id, req.from, now);
      metrics_.replays_requested.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

// The silence of every connection while this process was not running is its own, not
// theirs: nothing is reopened or counted unanswered for it (and closing sockets whose
// engines are just catching up on their heartbeat timeouts is what trips libzmq
// 4.3.4's `!_io_error` assertion).
void NodeCore::notice_suspension(Clock::time_point now) {
  const auto last = std::exchange(last_turn_, now);
  if (!core::suspended(last, now, topology_.defaults.heartbeat)) return;
  for (auto& up : upstreams_) up->stream.resumed(now);
}

void NodeCore::send_heartbeat() {
  builtin::Heartbeat hb;
  hb.service = name_;
  hb.incarnation = store_->incarnation();
  hb.boot = boot_;
  // Under a pipelined commit only what a sync has made durable: a receiver that
  // acknowledged a command it could still lose would have its sender forget it.
  hb.head = sync_ ? durable_head_ : store_->head();
  hb.oldest = std::min(store_->oldest(), hb.head + 1);
  hb.durable = store_->durable();
  hb.epoch = epoch_;
  for (const auto& [sender, pos] : sync_ ? durable_acks_ : command_inbox_.acks()) hb.acks[sender] = pos;
  Envelope e = make_envelope(name_, std::string(builtin::Heartbeat::kType), Kind::event);
  std::string topic(builtin::kHeartbeatTopic), env = codec::encode_envelope(e), body = codec::encode(hb);
  std::array<zmq::const_buffer, 3> bufs{zmq::buffer(topic), zmq::buffer(env), zmq::buffer(body)};
  zmq::send_multipart(pub_, bufs, zmq::send_flags::dontwait);
}

}  // namespace troupe::detail
