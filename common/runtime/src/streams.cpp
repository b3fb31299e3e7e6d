// Event streams: each publisher's events applied in order once, gaps repaired by
// $replay, the publisher's identity and epochs checked, losses and stalls reported;
// and this node's own heartbeat.
#include "node_core.hpp"

#include <troupe/domain/id.hpp>
#include <troupe/runtime/keys.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

namespace troupe::detail {

void NodeCore::save_upstream(Upstream& up) {
  store_->put(kUpstreamsTable, up.name, up.epoch ? up.incarnation + " " + std::to_string(up.epoch) : up.incarnation);
  up.saved_epoch = up.epoch;
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
    counters_.duplicates.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (seq > up.position + 1) {
    up.known_head = std::max(up.known_head, seq);
    if (!up.in_gap) {
      up.in_gap = true;
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
      log_->error("LOSS: {} no longer retains events {}..{} that this service has not applied "
                  "(it keeps {}..{}); not applying {} until an operator decides",
                  up.name, up.position + 1, hdr->oldest - 1, hdr->oldest, hdr->head, up.name);
      up.stop = Upstream::Stop::behind_retention;
      refresh_state();
      return;
    }
    log_->warn("memory mode: {} events of {} are gone ({}..{}); skipping ahead", lost, up.name,
               up.position + 1, hdr->oldest - 1);
    metrics_.events_lost += lost;
    up.position = hdr->oldest - 1;
  }
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
    up.stop = Upstream::Stop::history_lost;
    refresh_state();
    return;
  }
  if (new_boot && head < up.position) {
    log_->error("LOSS: {}'s head #{} is behind this service's position #{}: it lost committed events "
                "(synchronous=normal and a power cut?); not applying {} until an operator decides",
                up.name, head, up.position, up.name);
    up.stop = Upstream::Stop::history_lost;
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
    up.stop = Upstream::Stop::history_lost;
    refresh_state();
    return false;
  }
  up.trusted_epoch = *hdr.epoch;
  up.verified = true;
  return true;
}

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
      counters_.replays_requested.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

// The loop wakes at least every half heartbeat; a much longer gap means this process
// was not running (SIGSTOP, a suspended machine, a debugger). The silence of every
// connection meanwhile is ours, not theirs: nothing is reopened or counted unanswered
// for it (and closing sockets whose engines are just catching up on their heartbeat
// timeouts is what trips libzmq 4.3.4's `!_io_error` assertion).
void NodeCore::notice_suspension(Clock::time_point now) {
  const auto last = std::exchange(last_turn_, now);
  if (last == Clock::time_point{} ||
      now - last < std::max<Clock::duration>(topology_.defaults.heartbeat * 4, std::chrono::seconds(2)))
    return;
  for (auto& up : upstreams_) {
    up->last_heard = now;
    if (up->replay_in_flight) up->replay_sent = now;
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

}  // namespace troupe::detail
