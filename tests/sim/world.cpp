#include "world.hpp"

#include <algorithm>
#include <sstream>

namespace troupe::sim {

using namespace std::chrono_literals;
using Verdict = core::InboundStream::Verdict;

std::string fault_names(unsigned faults) {
  static const std::pair<unsigned, const char*> names[] = {
      {kDrop, "drop"}, {kDuplicate, "duplicate"}, {kDelay, "delay"}, {kPartition, "partition"},
      {kCrash, "crash"}, {kLostTail, "lost-tail"}, {kReplacedStore, "replaced-store"}, {kSuspend, "suspend"},
      {kClockJump, "clock-jump"}, {kOversize, "oversize"}, {kStoreFailure, "store-failure"}};
  std::string out;
  for (auto [bit, name] : names)
    if (faults & bit) out += (out.empty() ? "" : ",") + std::string(name);
  return out.empty() ? "none" : out;
}

int socket_of(const Body& body) {
  if (std::holds_alternative<Command>(body)) return 1;
  if (std::holds_alternative<ReplayAsk>(body) || std::holds_alternative<ReplayPage>(body)) return 2;
  return 0;
}

// --- the disk

Disk::Mark Disk::mark() const {
  return {outbox.size(), commands.size(), applied_commands.size(), oldest, acked, positions, identities,
          sender_epochs, last_applied, incarnation, receiver_incarnation, held_from};
}

void Disk::revert(const Mark& m) {
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
    disk = Disk{};
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
  (void)now;
  if (!command_target.empty() && e.seq % 4 == 0) stage_command();
}

void Node::stage_command() {
  Command c{name_, disk.commands.size() + 1, world_.next_id(name_ + "-cmd"), live_->epoch};
  disk.commands.push_back(c);
  if (live_->outbox->may_send()) send(command_target, c);
}

void Node::emit(Time now) {
  (void)now;
  Event e;
  e.seq = disk.outbox.size() + 1;
  e.epoch = live_->epoch;
  e.id = world_.next_id(name_ + "-ev");
  e.prev = disk.outbox.empty() ? "" : disk.outbox.back().id;
  e.store = disk.incarnation;
  if (world_.chance(world_.oversize_rate) && world_.has(kOversize)) e.bytes = 2 << 20;
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
      emit(now);
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

// --- the world

World::World(Options options) : options_(options), rng_(options.seed) {
  // The network and the publisher's settings of this seed.
  static const double drops[] = {0, 0.01, 0.05, 0.2};
  static const double dups[] = {0, 0.01, 0.05};
  static const int delays_ms[] = {1, 5, 30, 200};
  // Every value is drawn whatever the faults, so a run with fewer kinds of fault (a
  // shrink) is the same run without them.
  drop_ = drops[rng_() % 4];
  duplicate_ = dups[rng_() % 3];
  max_delay_ = std::chrono::milliseconds(delays_ms[rng_() % 4]);
  if (!has(kDrop)) drop_ = 0;
  if (!has(kDuplicate)) duplicate_ = 0;
  if (!has(kDelay)) max_delay_ = std::chrono::milliseconds(1);
  oversize_rate = rng_() % 4 == 0 ? 0.002 : 0;
  const bool epochs = rng_() % 4 != 0;  // one seed in four: a publisher from before epochs
  const std::uint64_t retention = rng_() % 3 == 0 ? 200 + rng_() % 800 : 0;

  auto add = [&](const std::string& name, std::size_t max_bytes) -> Node& {
    return *nodes_.emplace(name, std::make_unique<Node>(*this, name, max_bytes)).first->second;
  };
  Node& pub = add("pub", 4 << 20);
  Node& sub1 = add("sub1", 4 << 20);
  Node& sub2 = add("sub2", 1 << 20);  // refuses the publisher's rare oversized events
  pub.emitting = true;
  pub.epochs = epochs;
  pub.retention = retention;
  pub.subscribers = {"sub1", "sub2"};
  pub.command_senders = {"sub1"};
  sub1.publishers = {"pub"};
  sub1.command_target = "pub";
  sub2.publishers = {"pub"};
  note("seed " + std::to_string(options.seed) + ": drop " + std::to_string(drop_) + ", duplicate " +
       std::to_string(duplicate_) + ", delay up to " +
       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(max_delay_).count()) + " ms, epochs " +
       (epochs ? "on" : "off") + ", retention " + (retention ? std::to_string(retention) : "all") + ", oversize " +
       std::to_string(oversize_rate) + ", faults " + fault_names(options.faults));
}

Node& World::node(const std::string& name) { return *nodes_.at(name); }

void World::send(Packet p) {
  if (quiet_ ? false : chance(drop_)) return;
  if (cut_.count({p.from, p.to})) return;
  const int socket = socket_of(p.body);
  auto max_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(quiet_ ? 1ms : max_delay_).count();
  Time& last = fifo_[{p.from, p.to, socket}];
  p.at = std::max(last, now_ + std::chrono::nanoseconds(rng_() % static_cast<std::uint64_t>(max_ns + 1)));
  last = p.at;
  p.generation = node(p.from).generation;
  // A duplicate follows its original on the same connection.
  const int copies = !quiet_ && chance(duplicate_) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    Packet q = p;
    q.order = ++order_;
    in_flight_.push_back(std::move(q));
  }
}

void World::fail(std::string what) {
  if (failure_) return;
  failure_ = Failure{std::move(what), step, {trace_.begin(), trace_.end()}};
}

void World::note(std::string line) {
  std::string at = "[step " + std::to_string(step) + " t=" +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now_.time_since_epoch()).count()) +
                   "ms] ";
  trace_.push_back(at + line);
  if (trace_.size() > 60) trace_.pop_front();
  if (options_.verbose) std::fprintf(stderr, "%s%s\n", at.c_str(), line.c_str());
}

bool World::excused(const Node& by, core::Loss loss, const std::string& about) {
  const Node& other = node(about);
  switch (loss) {
    case core::Loss::none: return true;
    case core::Loss::behind_retention: {
      // The publisher no longer kept the event after the subscriber's position when it
      // answered (a lost WAL tail may have brought pruned events back since).
      auto it = by.disk.last_applied.find(about);
      const std::uint64_t position = it == by.disk.last_applied.end() ? 0 : it->second.first;
      return other.max_oldest > position + 1;
    }
    case core::Loss::history_lost: {
      // The publisher's store no longer has the event the subscriber applied last (a lost
      // tail or a replaced store wrote others under that number, or none).
      auto it = by.disk.last_applied.find(about);
      if (it != by.disk.last_applied.end() && it->second.first > 0) {
        const auto& [seq, id] = it->second;
        if (seq > other.disk.outbox.size() || other.disk.outbox[seq - 1].id != id) return true;
      } else if (other.disk_faults > 0) {
        return true;  // nothing applied yet, and the store it first met is gone
      }
      // A publisher without epochs can be taken for one that lost history when a
      // heartbeat of a short-lived start is read after the next start's replay answer
      // (a false LOSS:, loud; docs/guarantees.md, limits).
      return !other.epochs && other.generation > 1;
    }
    case core::Loss::commands_lost_here: return by.disk_faults > 0;
    case core::Loss::commands_lost_there: return other.disk_faults > 0;
    case core::Loss::commands_rewritten: return other.disk_faults > 0;
  }
  return false;
}

void World::network(Time now) {
  // Deliver what is due, in order of arrival (ties by send order): reordering comes
  // from the random delays.
  std::sort(in_flight_.begin(), in_flight_.end(),
            [](const Packet& a, const Packet& b) { return a.at != b.at ? a.at < b.at : a.order < b.order; });
  std::size_t i = 0;
  for (; i < in_flight_.size() && in_flight_[i].at <= now; ++i) {
    Packet& p = in_flight_[i];
    Node& to = node(p.to);
    // Lost with the connection: a receiver or sender that is down, or restarted since.
    if (!to.alive() || node(p.from).generation != p.generation || cut_.count({p.from, p.to})) continue;
    ++delivered;
    to.deliver(std::move(p));
  }
  in_flight_.erase(in_flight_.begin(), in_flight_.begin() + static_cast<std::ptrdiff_t>(i));
}

void World::faults(Time now) {
  if (quiet_) return;
  if (!cut_.empty() && now >= heal_at_) {
    cut_.clear();
    note("the partition heals");
  }
  if (chance(0.0005) && has(kPartition) && cut_.empty()) {
    std::vector<std::string> names;
    for (auto& [n, _] : nodes_) names.push_back(n);
    std::string a = names[rng_() % names.size()], b = names[rng_() % names.size()];
    if (a != b) {
      cut_ = {{a, b}, {b, a}};
      heal_at_ = now + std::chrono::milliseconds(500 + rng_() % 15000);
      note("partition between " + a + " and " + b);
    }
  }
  // An operator looks at a stopped stream after a few seconds and resets it.
  for (auto& [name, n] : nodes_) {
    if (!n->alive() || n->publishers.empty()) continue;
    bool stopped = false;
    for (auto& [_, st] : n->live()->streams) stopped = stopped || st.stopped();
    if (!stopped) {
      n->stopped_since = Time{};
    } else if (n->stopped_since == Time{}) {
      n->stopped_since = now;
    } else if (now - n->stopped_since > std::chrono::seconds(5)) {
      n->operator_reset(now, n->publishers.front());
    }
  }
  for (auto& [name, n] : nodes_) {
    if (!n->alive()) continue;
    const bool crash = chance(0.0003), lost_tail = chance(0.3), replaced = chance(0.15), suspend = chance(0.0003);
    if (crash && has(kCrash)) {
      unsigned how = 0;
      if (lost_tail && has(kLostTail)) how = kLostTail;
      else if (replaced && has(kReplacedStore)) how = kReplacedStore;
      n->crash(now, how);
    } else if (suspend && has(kSuspend) && now >= n->suspended_until) {
      n->suspended_until = now + std::chrono::milliseconds(500 + rng_() % 8000);
      note(name + " is suspended (SIGSTOP)");
    }
  }
}

// Whether an event this subscriber's transport refuses lies within a replay page of its
// position: then it cannot move, and must say so (stalled).
bool World::blocked(Node& n, std::uint64_t position) {
  Node& pub = node("pub");
  const std::uint64_t head = pub.disk.outbox.size();
  // A page starts at the oldest event retained, when that is past the position.
  const std::uint64_t first = std::max<std::uint64_t>(position + 1, pub.disk.oldest);
  for (std::uint64_t q = first; q <= std::min<std::uint64_t>(head, first + 63); ++q)
    if (pub.disk.outbox[q - 1].bytes > n.max_bytes_) return true;
  return false;
}

bool World::settled() {
  Node& pub = node("pub");
  if (!pub.alive()) return false;
  const std::uint64_t head = pub.disk.outbox.size();
  for (const char* s : {"sub1", "sub2"}) {
    Node& n = node(s);
    if (!n.alive()) return false;
    auto& st = n.live()->streams.at("pub");
    if (!st.stopped() && st.position() != head && !(st.stalled() && blocked(n, st.position()))) return false;
  }
  Node& sub1 = node("sub1");
  if (!sub1.losses.empty() || !pub.losses.empty()) return true;
  return sub1.disk.acked >= sub1.disk.commands.size();
}

// A known limit (docs/guarantees.md): a sender that lost commits writes a command again
// under a number whose older command the receiver applied; if the new one is lost in
// flight and the sender restarts before resending it, the acks of later numbers cover
// it, and nothing can tell. Only that shape is excused.
bool World::rewritten(const Command& c) {
  Node& sub1 = node("sub1");
  Node& pub = node("pub");
  if (sub1.disk_faults == 0) return false;
  for (std::size_t i = 0; i < pub.disk.applied_numbers.size(); ++i)
    if (pub.disk.applied_numbers[i] == c.seq && pub.disk.applied_commands[i] != c.id) return true;
  return false;
}

void World::check_quiescent() {
  Node& pub = node("pub");
  const std::uint64_t head = pub.disk.outbox.size();
  for (auto& [name, n] : nodes_)
    if (!n->alive()) return fail(name + " is not running at quiescence");
  for (const char* s : {"sub1", "sub2"}) {
    Node& n = node(s);
    auto& st = n.live()->streams.at("pub");
    if (st.stopped()) {
      if (n.losses.empty()) fail(std::string(s) + "'s stream of pub stopped without a LOSS:");
      continue;
    }
    if (st.position() == head) continue;
    if (!blocked(n, st.position()))
      fail(std::string(s) + " stopped at pub's #" + std::to_string(st.position()) + " of " + std::to_string(head) +
           " at quiescence, with nothing in the way (phase " + std::to_string(static_cast<int>(st.phase())) +
           ", known head " + std::to_string(st.known_head()) + ", replay in flight " +
           std::to_string(st.replay_in_flight()) + ")");
    else if (!st.stalled())
      fail(std::string(s) + " is stuck at pub's #" + std::to_string(st.position()) +
           " behind an event it refuses, and does not say so (not stalled)");
  }
  Node& sub1 = node("sub1");
  bool commands_lost = false;
  for (const Node* n : {&sub1, &pub})
    for (auto& [loss, about] : n->losses)
      commands_lost |= loss == core::Loss::commands_lost_here || loss == core::Loss::commands_lost_there ||
                       loss == core::Loss::commands_rewritten;
  if (!commands_lost && !failed()) {
    for (const auto& c : sub1.disk.commands)
      if (!pub.disk.applied_set.count(c.id) && !rewritten(c)) {
        fail("sub1's command " + c.id + " (#" + std::to_string(c.seq) + ") was never applied by pub, and no LOSS: said so");
        break;
      }
  }
}

std::optional<Failure> World::run() {
  const Duration dt = 5ms;
  for (auto& [_, n] : nodes_) n->start(now_);
  auto one_step = [&] {
    ++step;
    now_ += dt;
    if (chance(0.0002) && has(kClockJump)) {
      auto jump = std::chrono::milliseconds(1000 + rng_() % 20000);
      now_ += jump;
      note("the clock jumps " + std::to_string(jump.count()) + " ms");
    }
    faults(now_);
    for (auto& [_, n] : nodes_)
      if (!n->alive() && now_ >= n->restart_at) n->start(now_);
    network(now_);
    std::vector<Node*> order;
    for (auto& [_, n] : nodes_) order.push_back(n.get());
    std::shuffle(order.begin(), order.end(), rng_);
    for (Node* n : order) {
      if (now_ < n->suspended_until) continue;
      n->turn(now_);
      if (failed()) return;
    }
  };
  for (std::uint64_t i = 0; i < options_.steps && !failed(); ++i) one_step();
  if (failed()) return failure_;
  // The quiescent end: faults stop, everyone runs, the network is perfect; the
  // publisher stops emitting. Everything must settle within a simulated minute.
  quiet_ = true;
  cut_.clear();
  note("quiescence: faults stop");
  for (auto& [_, n] : nodes_) {
    n->suspended_until = now_;
    n->emitting = false;
  }
  const std::uint64_t end = step + 12000;
  while (step < end && !failed()) {
    one_step();
    if (step % 200 == 0 && settled()) break;
  }
  if (!failed()) {
    for (int i = 0; i < 200 && !failed(); ++i) one_step();  // a little longer: nothing more may happen
    check_quiescent();
  }
  return failure_;
}

}  // namespace troupe::sim
