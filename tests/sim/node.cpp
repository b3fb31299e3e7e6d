// The simulator's nodes and disks: what the reactor does around the delivery core —
// units of work that commit or roll back, heartbeats, replays, resends — over a disk
// that keeps exactly what was committed.
#include "world.hpp"

#include "orders/messages.hpp"
#include "shop.hpp"

#include <algorithm>

namespace troupe::sim {

using namespace std::chrono_literals;
using Verdict = core::InboundStream::Verdict;

// --- the disk

Disk::Mark Disk::mark() const {
  return {outbox.size(), commands.size(), applied_commands.size(), undo.size(), oldest, acked, positions, identities,
          sender_epochs, last_applied, incarnation, receiver_incarnation, held_from};
}

void Disk::write(const std::string& table, const std::string& key, std::optional<std::string> value) {
  auto& t = tables[table];
  auto it = t.find(key);
  undo.push_back({table, key, it == t.end() ? std::nullopt : std::optional<std::string>(it->second)});
  if (!value) {
    if (it != t.end()) t.erase(it);
  } else if (it != t.end()) {
    it->second = std::move(*value);
  } else {
    t.emplace(key, std::move(*value));
  }
}

void Disk::revert(const Mark& m) {
  for (; undo.size() > m.undo && !keep_state; undo.pop_back()) {
    auto& u = undo.back();
    auto& t = tables[u.table];
    if (u.before) t[u.key] = std::move(*u.before);
    else t.erase(u.key);
  }
  outbox.resize(m.outbox);
  commands.resize(m.commands);
  if (applied_commands.size() != m.applied_commands) {
    applied_commands.resize(m.applied_commands);
    applied_numbers.resize(m.applied_commands);
    applied_set = {applied_commands.begin(), applied_commands.end()};
  }
  oldest = m.oldest;
  acked = m.acked;
  positions = m.positions;
  identities = m.identities;
  sender_epochs = m.sender_epochs;
  last_applied = m.last_applied;
  incarnation = m.incarnation;
  receiver_incarnation = m.receiver_incarnation;
  held_from = m.held_from;
}

// --- a node: what the reactor does around the core

void Node::start(Time now) {
  live_ = std::make_unique<Live>();
  ++generation;
  live_->boot = world_.next_id(name_ + "-boot");
  live_->epoch = epochs ? (world_.rng()() | 1) : 0;
  if (disk.incarnation.empty()) disk.incarnation = world_.next_id(name_ + "-store");
  for (const auto& pub : publishers) {
    core::StreamSettings settings{world_.heartbeat, true, max_bytes_};
    auto& s = live_->streams
                  .emplace(pub, core::InboundStream(pub, settings, disk.positions[pub],
                                                    core::InboundStream::parse_identity(disk.identities[pub])))
                  .first->second;
    s.subscribed(now);
    core::Effects fx;
    s.recall(fx);
    carry_out(fx, pub);
  }
  if (!command_target.empty()) {
    // What this start holds back until the first heartbeat is checked, unless an earlier
    // unchecked start holds back more (the mark is in the store, like the runtime's).
    if (disk.held_from == 0 || disk.held_from > disk.commands.size() + 1) disk.held_from = disk.commands.size() + 1;
    live_->outbox.emplace(command_target, disk.held_from - 1, disk.acked, disk.receiver_incarnation,
                          world_.heartbeat, now);
  }
  for (const auto& sender : command_senders)
    live_->inbox.restore(sender, disk.positions["cmd:" + sender], disk.sender_epochs[sender]);
  if (service) {  // initialize(): a unit of work of its own at start
    try {
      service->seed(disk);
    } catch (const std::exception& x) {
      world_.fail(name_ + "'s initialize() threw: " + x.what());
    }
  }
  live_->next_heartbeat = now;
  live_->next_maintenance = now + world_.heartbeat;
  live_->next_emit = now;
  live_->last_turn = now;
  commits.assign(1, disk.mark());
  inbox_.clear();
  std::string follows;
  for (const auto& pub : publishers)
    follows += ", follows " + pub + " from #" + std::to_string(disk.positions[pub]) + " (" + disk.identities[pub] + ")";
  world_.note(name_ + " starts (store " + disk.incarnation + ", head " + std::to_string(disk.outbox.size()) +
              (epochs ? ", epoch " + std::to_string(live_->epoch) : "") + follows +
              (command_target.empty() ? "" : ", commands to " + command_target + " up to #" + std::to_string(disk.commands.size()) +
                                                 ", held from #" + std::to_string(disk.held_from)) + ")");
}

void Node::crash(Time now, unsigned how) {
  if (!live_) return;
  live_.reset();
  inbox_.clear();
  disk.revert(commits.back());  // what was not committed is gone
  std::string what = "crashes";
  // A publisher from before epochs can lose a WAL tail in silence (docs/guarantees.md:
  // its first batch after the restart may run its head past a subscriber's position
  // before the head is compared): a known limit, not injected.
  if (how == kLostTail && !epochs && !subscribers.empty()) how = 0;
  if (how == kLostTail && commits.size() > 1) {
    std::size_t back = 1 + world_.rng()() % (commits.size() - 1);
    disk.revert(commits[commits.size() - 1 - back]);
    ++disk_faults;
    what += " and its store loses its last " + std::to_string(back) + " commit(s) (a lost WAL tail)";
  } else if (how == kReplacedStore) {
    const bool keep_state = disk.keep_state;  // a planted bug stays planted
    disk = Disk{};
    disk.keep_state = keep_state;
    ++disk_faults;
    what += " and its store is replaced by an empty one";
  }
  // Mostly back within seconds; one crash in ten stays down for up to 40 s (the others
  // move on meanwhile: a replaced publisher can pass a subscriber's position).
  const bool long_outage = world_.rng()() % 10 == 0;
  restart_at = now + std::chrono::milliseconds(long_outage ? 5000 + world_.rng()() % 35000 : 50 + world_.rng()() % 3000);
  world_.note(name_ + " " + what);
}

void Node::deliver(Packet p) {
  auto& q = inbox_[{p.from, socket_of(p.body)}];
  q.push_back(std::move(p));
}

void Node::operator_reset(Time now, const std::string& publisher) {
  if (live_) {
    live_.reset();
    inbox_.clear();
    disk.revert(commits.back());
  }
  Node& pub = world_.node(publisher);
  const std::uint64_t to = pub.disk.oldest > 1 ? std::min<std::uint64_t>(pub.disk.oldest - 1, pub.disk.outbox.size()) : 0;
  disk.positions[publisher] = to;
  // The publisher's store and the epoch of the event at the new position, as a reset
  // must record them (without the epoch a later lost tail could not be told).
  const std::uint64_t epoch = to ? pub.disk.outbox[to - 1].epoch : 0;
  disk.identities[publisher] = pub.disk.incarnation + (epoch ? " " + std::to_string(epoch) : "");
  disk.last_applied[publisher] = {to, to ? pub.disk.outbox[to - 1].id : ""};
  commits.assign(1, disk.mark());
  restart_at = now + std::chrono::milliseconds(100);
  stopped_since = Time{};
  world_.note("an operator resets " + name_ + "'s stream of " + publisher + " to #" + std::to_string(to) +
              " and starts it again");
}

void Node::send(std::string to, Body body) {
  live_->pending.push_back({name_, std::move(to), {}, 0, std::move(body)});
}

void Node::carry_out(core::Effects& fx, const std::string& about) {
  if (world_.verbose())
    for (const auto& r : fx.reports)
      if (r.level >= core::Report::Level::info && r.text.rfind("LOSS", 0) != 0) world_.note(name_ + ": " + r.text);
  if (fx.loss != core::Loss::none) {
    std::string text = fx.reports.empty() ? "LOSS" : fx.reports.back().text;
    world_.note(name_ + ": " + text);
    if (!world_.excused(*this, fx.loss, about))
      world_.fail(name_ + " reported a loss that did not happen: " + text);
    losses.insert({fx.loss, about});
  }
  if (world_.failed()) return;
  fx.clear();
}

void Node::on_event(const std::string& pub, const Event& e, bool replayed, Time now) {
  auto& stream = live_->streams.at(pub);
  core::Effects fx;
  auto verdict = stream.offer(e.seq, e.epoch, replayed, fx);
  carry_out(fx, pub);
  if (verdict != Verdict::apply) return;
  auto& last = disk.last_applied[pub];
  // A known limit (docs/guarantees.md): the events of a publisher without epochs say
  // nothing of the store that wrote them, so one from a replaced store that arrives
  // before the store's first word is applied. Excused only when this node was not told
  // of that store (a stream told of it and following it anyway is a broken rule).
  if (e.seq == last.first + 1 && e.prev != last.second && !world_.node(pub).epochs &&
      e.store != stream.incarnation()) {
    world_.note(name_ + " applies " + pub + "'s #" + std::to_string(e.seq) + " of a store it was not told of "
                "(a publisher without epochs: a known limit)");
  } else if (e.seq != last.first + 1 || e.prev != last.second) {
    world_.fail(name_ + " applied " + pub + "'s event #" + std::to_string(e.seq) + " (" + e.id + ", after " +
                (e.prev.empty() ? "nothing" : e.prev) + ") right after #" + std::to_string(last.first) + " (" +
                (last.second.empty() ? "nothing" : last.second) + "): " +
                (e.seq <= last.first ? "applied twice" : e.seq > last.first + 1 ? "out of order" : "another history"));
    return;
  }
  last = {e.seq, e.id};
  if (service) {
    if (service->reacts(e.type)) handle_shop(false, pub, e.id, e.type, e.payload, e.correlation, now);
  } else if (!command_target.empty() && e.seq % 4 == 0) {
    stage_command();
  }
}

void Node::handle_shop(bool command, const std::string& from, const std::string& id, const std::string& type,
                       const std::string& payload, const std::string& correlation, Time now) {
  Envelope env;
  env.id = id;
  env.source = from;
  env.type = type;
  env.correlationid = correlation;
  Service::Outcome out;
  try {
    out = service->apply(disk, command, env, payload);
  } catch (const std::exception& x) {
    world_.fail(name_ + "'s handler of " + type + " (" + id + ") threw: " + x.what());
    return;
  }
  if (!out.rejected.empty()) {
    ++rejected;
    if (world_.verbose()) world_.note(name_ + " refuses " + type + " " + id + ": " + out.rejected);
    if (!out.events.empty()) world_.fail(name_ + " refused " + type + " " + id + " and still emitted");
  }
  for (auto& ev : out.events) emit(now, std::move(ev.type), std::move(ev.payload), std::move(ev.correlation));
}

void Node::stage_command(std::string type, std::string payload) {
  Command c{name_, disk.commands.size() + 1, world_.next_id(name_ + "-cmd"), live_->epoch, std::move(type),
            std::move(payload)};
  disk.commands.push_back(c);
  if (live_->outbox->may_send()) send(command_target, c);
}

void Node::place_order() {
  const auto& seed = shop_seed();
  auto pick = [&](const auto& m) {
    auto it = m.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(world_.rng()() % m.size()));
    return it->first;
  };
  // Now and then a customer cancels an order placed a moment ago (its saga may be
  // anywhere by then, or over).
  const std::size_t placed = disk.commands.size();
  // And now and then one the service must refuse (into dead letters, leaving nothing).
  if (world_.chance(0.02)) {
    if (world_.rng()() % 2)
      stage_command("CancelOrder", codec::encode(shop::CancelOrder{"o-none-" + std::to_string(placed), "no such order"}));
    else
      stage_command("PlaceOrder", codec::encode(shop::PlaceOrder{"o-bad-" + std::to_string(placed), "alice", "sku-b", 0}));
    return;
  }
  if (placed > 0 && world_.chance(0.1)) {
    const auto back = 1 + world_.rng()() % std::min<std::size_t>(placed, 20);
    const auto& earlier = disk.commands[placed - back];
    if (earlier.type == "PlaceOrder") {
      auto order = codec::decode<shop::PlaceOrder>(earlier.payload);
      stage_command("CancelOrder", codec::encode(shop::CancelOrder{order->order_id, "changed my mind"}));
      return;
    }
  }
  shop::PlaceOrder o{"o-" + std::to_string(placed + 1) + "-" + std::to_string(world_.rng()() % 100000),
                     pick(seed.customers), pick(seed.skus), static_cast<std::int64_t>(1 + world_.rng()() % 5)};
  stage_command("PlaceOrder", codec::encode(o));
}

void Node::emit(Time now, std::string type, std::string payload, std::string correlation) {
  (void)now;
  Event e;
  e.type = std::move(type);
  e.payload = std::move(payload);
  e.correlation = std::move(correlation);
  e.seq = disk.outbox.size() + 1;
  e.epoch = live_->epoch;
  e.id = world_.next_id(name_ + "-ev");
  e.prev = disk.outbox.empty() ? "" : disk.outbox.back().id;
  e.store = disk.incarnation;
  if (world_.chance(world_.oversize_rate) && world_.has(kOversize)) e.bytes = 2 << 20;
  if (service) e.bytes = 200 + e.type.size() + e.payload.size();
  disk.outbox.push_back(e);
  for (const auto& s : subscribers) send(s, e);
}

void Node::handle(Packet& p, Time now) {
  if (live_->dead.count({p.from, socket_of(p.body)})) return;  // its connection is gone
  if (auto* e = std::get_if<Event>(&p.body)) {
    if (e->bytes > max_bytes_) {  // refused by the transport, which ends the connection
      live_->dead.insert({p.from, 0});
      return;
    }
    live_->streams.at(p.from).heard(now);
    on_event(p.from, *e, false, now);
  } else if (auto* hb = std::get_if<Heartbeat>(&p.body)) {
    core::Effects fx;
    if (auto it = live_->streams.find(p.from); it != live_->streams.end()) {
      it->second.heard(now);
      it->second.heartbeat(hb->word, fx);
      carry_out(fx, p.from);
    }
    if (live_->outbox && command_target == p.from) {
      auto ack = hb->acks.find(name_);
      if (world_.verbose() && !live_->outbox->may_send())
        world_.note(name_ + "'s first heartbeat from " + p.from + " acks #" +
                    (ack == hb->acks.end() ? std::string("-") : std::to_string(ack->second)) + ", our head #" +
                    std::to_string(disk.commands.size()));
      const bool checked = live_->outbox->may_send();
      auto prune = live_->outbox->heartbeat(ack == hb->acks.end() ? std::nullopt : std::optional(ack->second),
                                            hb->word.incarnation, true, disk.commands.size(), true, now, fx);
      if (fx.save_identity) disk.receiver_incarnation = live_->outbox->incarnation();
      carry_out(fx, p.from);
      if (prune) disk.acked = std::max(disk.acked, *prune);
      if (!checked && live_->outbox->may_send()) disk.held_from = 0;
    }
  } else if (auto* ask = std::get_if<ReplayAsk>(&p.body)) {
    ReplayPage page;
    page.id = ask->id;
    auto& a = page.answer;
    a.word = {disk.incarnation, live_->boot, disk.outbox.size(), true,
              epochs ? std::optional<std::uint64_t>(live_->epoch) : std::nullopt};
    a.oldest = disk.oldest;
    if (epochs)
      a.epoch_of_from = ask->from >= 2 && ask->from - 1 <= disk.outbox.size() ? disk.outbox[ask->from - 2].epoch : 0;
    for (std::uint64_t s = std::max(ask->from, disk.oldest); s <= disk.outbox.size() && page.events.size() < 64; ++s)
      page.events.push_back(disk.outbox[s - 1]);
    if (world_.verbose()) world_.note(name_ + " answers " + p.from + "'s " + ask->id);
    send(p.from, std::move(page));
  } else if (auto* page = std::get_if<ReplayPage>(&p.body)) {
    // ZMQ_MAXMSGSIZE bounds each frame: one event over it loses the whole page, and
    // the connection.
    for (const auto& e : page->events)
      if (e.bytes > max_bytes_) {
        live_->dead.insert({p.from, 2});
        return;
      }
    auto& stream = live_->streams.at(p.from);
    if (world_.verbose())
      world_.note(name_ + " gets replay page " + page->id + " (" + std::to_string(page->events.size()) + " events)" +
                  (stream.awaits(page->id) ? "" : ": not awaited"));
    if (!stream.awaits(page->id)) return;
    core::Effects fx;
    bool take = stream.answered(page->answer, fx);
    carry_out(fx, p.from);
    if (!take) return;
    for (const auto& e : page->events) {
      on_event(p.from, e, true, now);
      if (world_.failed()) return;
    }
  } else if (auto* c = std::get_if<Command>(&p.body)) {
    auto& inbox = live_->inbox;
    if (!inbox.knows(c->from)) inbox.restore(c->from, disk.positions["cmd:" + c->from], disk.sender_epochs[c->from]);
    core::Effects fx;
    auto verdict = inbox.offer(c->from, c->seq, c->epoch, fx);
    carry_out(fx, c->from);
    if (verdict != core::CommandInbox::Verdict::apply) return;
    if (disk.applied_set.count(c->id)) {
      world_.fail(name_ + " applied command " + c->id + " (#" + std::to_string(c->seq) + " of " + c->from +
                  ") twice");
      return;
    }
    if (world_.verbose()) world_.note(name_ + " applies " + c->from + "'s command #" + std::to_string(c->seq) + " " + c->id);
    disk.applied_commands.push_back(c->id);
    disk.applied_numbers.push_back(c->seq);
    disk.applied_set.insert(c->id);
    if (service)
      handle_shop(true, c->from, c->id, c->type, c->payload, c->id, now);
    else
      emit(now);  // the command's effect is an event
  }
}

void Node::heartbeat(Time now) {
  (void)now;
  const auto& committed = commits.back();
  Heartbeat hb;
  hb.word = {disk.incarnation, live_->boot, committed.outbox, true,
             epochs ? std::optional<std::uint64_t>(live_->epoch) : std::nullopt};
  for (const auto& [sender, pos] : live_->inbox.acks()) hb.acks[sender] = pos;
  for (const auto& s : subscribers) world_.send({name_, s, {}, 0, hb});
  for (const auto& s : command_senders)
    if (std::find(subscribers.begin(), subscribers.end(), s) == subscribers.end()) world_.send({name_, s, {}, 0, hb});
}

void Node::maintain(Time now) {
  for (auto& [pub, stream] : live_->streams) {
    core::Effects fx;
    auto due = stream.tick(now, fx);
    carry_out(fx, pub);
    if (due.reopen_subscription) live_->dead.erase({pub, 0});
    if (due.reopen_replay) live_->dead.erase({pub, 2});
    if (due.ask) {
      std::string id = world_.next_id(name_ + "-replay");
      stream.asked(id, *due.ask, now);
      if (world_.verbose()) world_.note(name_ + " asks " + pub + " for a replay from #" + std::to_string(*due.ask) + " (" + id + ")");
      if (!live_->dead.count({pub, 2})) world_.send({name_, pub, {}, 0, ReplayAsk{id, *due.ask}});
    }
  }
  if (live_->outbox && live_->outbox->resend_due(now)) {
    std::size_t n = 0;
    const std::uint64_t last = std::min<std::uint64_t>(disk.commands.size(), live_->outbox->resend_limit());
    for (std::uint64_t s = disk.acked + 1; s <= last && n < 512; ++s, ++n) {
      live_->outbox->sent(s);
      world_.send({name_, command_target, {}, 0, disk.commands[s - 1]});
    }
    live_->outbox->resent(now);
  }
  if (retention && disk.outbox.size() > retention) {  // pruning commits on its own
    disk.oldest = std::max(disk.oldest, disk.outbox.size() - retention + 1);
    max_oldest = std::max(max_oldest, disk.oldest);
    commit();
  }
}

void Node::commit() {
  for (const auto& m : live_->inbox.moved()) {
    disk.positions["cmd:" + m.sender] = m.position;
    if (m.epochs) disk.sender_epochs[m.sender] = *m.epochs;
  }
  for (auto& [pub, stream] : live_->streams) {
    disk.positions[pub] = stream.position();
    if (stream.identity_unsaved()) {
      disk.identities[pub] = stream.identity();
      stream.identity_saved();
    }
  }
  live_->inbox.committed();
  commits.push_back(disk.mark());
  if (commits.size() > 8) commits.erase(commits.begin());
}

void Node::turn(Time now) {
  if (!live_) return;
  if (core::suspended(live_->last_turn, now, world_.heartbeat))
    for (auto& [_, s] : live_->streams) s.resumed(now);
  live_->last_turn = now;

  // A batch: what arrived, and the publisher's reading when it is due; one unit of work.
  std::vector<Packet> batch;
  for (bool more = true; more && batch.size() < 32;) {
    more = false;
    for (auto& [_, q] : inbox_) {
      if (q.empty() || batch.size() >= 32) continue;
      batch.push_back(std::move(q.front()));
      q.pop_front();
      more = true;
    }
  }
  const bool reading = emitting && now >= live_->next_emit;
  if (!batch.empty() || reading) {
    std::vector<core::InboundStream::Mark> marks;
    for (auto& [_, s] : live_->streams) marks.push_back(s.mark());
    const auto outbox_mark = live_->outbox ? live_->outbox->mark() : core::CommandOutbox::Mark{};
    live_->pending.clear();
    if (reading) {
      if (service || command_target.empty()) emit(now);
      else place_order();
      live_->next_emit = now + std::chrono::milliseconds(5 + world_.rng()() % 40);
    }
    for (auto& p : batch) {
      handle(p, now);
      if (world_.failed()) return;
    }
    // A heartbeat may go out at any moment, even in the middle of a unit of work: what
    // it acknowledges must be committed already.
    if (world_.chance(0.2)) heartbeat(now);
    if (world_.chance(0.002) && world_.has(kCrash)) {
      crash(now, 0);
      return;
    }
    if (world_.chance(0.01) && world_.has(kStoreFailure)) {  // the commit fails: nothing happened
      disk.revert(commits.back());
      std::size_t i = 0;
      for (auto& [_, s] : live_->streams) s.rewind(marks[i++]);
      if (live_->outbox) live_->outbox->rewind(outbox_mark);
      live_->inbox.rolled_back();
      live_->pending.clear();
      world_.note(name_ + ": a commit fails; the batch is rolled back");
    } else {
      commit();
      for (auto& p : live_->pending) {
        if (auto* c = std::get_if<Command>(&p.body); c && live_->outbox) live_->outbox->sent(c->seq);
        world_.send(std::move(p));
      }
      live_->pending.clear();
    }
  }
  if (now >= live_->next_heartbeat) {
    heartbeat(now);
    live_->next_heartbeat = now + world_.heartbeat;
  }
  if (now >= live_->next_maintenance) {
    maintain(now);
    live_->next_maintenance = now + world_.heartbeat / 2;
  }
}

}  // namespace troupe::sim
