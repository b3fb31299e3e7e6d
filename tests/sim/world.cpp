// The simulated world: the seed's network and faults, the clock, the steps, and the
// checks of the promise (docs/guarantees.md, "The simulator"). The nodes: node.cpp.
#include "world.hpp"

#include "shop.hpp"

#include <algorithm>

namespace troupe::sim {

using namespace std::chrono_literals;

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
  if (options_.scenario == "shop") {
    // The shop's services with their own handlers, and a storefront that places (and
    // now and then cancels) orders as sequenced commands. Its invariants hold only over
    // a whole history: the faults that lose committed state (a lost WAL tail, a
    // replaced store) end in a LOSS: the pair scenario checks, and are not injected here.
    options_.faults &= ~(kLostTail | kReplacedStore | kOversize);
    oversize_rate = 0;
    for (const auto& spec : shop_services()) {
      Node& n = add(spec.name, 4 << 20);
      n.service = std::make_shared<Service>(spec.name);
      n.publishers = spec.publishers;
      // Always with epochs: without them a late heartbeat of a short-lived start can make
      // a false LOSS: (a documented limit the pair scenario covers), after which no
      // invariant can hold.
      n.epochs = true;
      n.disk.keep_state = options_.state_outside_unit_of_work;
    }
    for (const auto& spec : shop_services())
      for (const auto& pub : spec.publishers) node(pub).subscribers.push_back(spec.name);
    Node& storefront = add("storefront", 4 << 20);
    storefront.emitting = true;
    storefront.command_target = "orders";
    node("orders").command_senders = {"storefront"};
  } else {
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
  }
  note("seed " + std::to_string(options.seed) + ": drop " + std::to_string(drop_) + ", duplicate " +
       std::to_string(duplicate_) + ", delay up to " +
       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(max_delay_).count()) + " ms, epochs " +
       (epochs || options_.scenario == "shop" ? "on" : "off") +
       (options_.scenario == "shop" ? std::string()
                                    : ", retention " + (retention ? std::to_string(retention) : "all") + ", oversize " +
                                          std::to_string(oversize_rate)) + ", faults " + fault_names(options_.faults) + ", " + options_.scenario);
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
    std::string stopped;
    for (auto& [pub, st] : n->live()->streams)
      if (st.stopped() && stopped.empty()) stopped = pub;
    if (stopped.empty()) {
      n->stopped_since = Time{};
    } else if (n->stopped_since == Time{}) {
      n->stopped_since = now;
    } else if (now - n->stopped_since > std::chrono::seconds(5)) {
      n->operator_reset(now, stopped);
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
bool World::blocked(Node& n, const std::string& publisher, std::uint64_t position) {
  Node& pub = node(publisher);
  const std::uint64_t head = pub.disk.outbox.size();
  // A page starts at the oldest event retained, when that is past the position.
  const std::uint64_t first = std::max<std::uint64_t>(position + 1, pub.disk.oldest);
  for (std::uint64_t q = first; q <= std::min<std::uint64_t>(head, first + 63); ++q)
    if (pub.disk.outbox[q - 1].bytes > n.max_bytes_) return true;
  return false;
}

bool World::settled() {
  for (auto& [name, n] : nodes_) {
    if (!n->alive()) return false;
    for (const auto& publisher : n->publishers) {
      Node& pub = node(publisher);
      auto& st = n->live()->streams.at(publisher);
      const std::uint64_t head = pub.disk.outbox.size();
      if (!st.stopped() && st.position() != head && !(st.stalled() && blocked(*n, publisher, st.position())))
        return false;
    }
  }
  for (auto& [name, n] : nodes_) {
    if (n->command_target.empty()) continue;
    Node& target = node(n->command_target);
    if (!n->losses.empty() || !target.losses.empty()) continue;
    if (n->disk.acked < n->disk.commands.size()) return false;
  }
  return true;
}

// A known limit (docs/guarantees.md): a sender that lost commits writes a command again
// under a number whose older command the receiver applied; if the new one is lost in
// flight and the sender restarts before resending it, the acks of later numbers cover
// it, and nothing can tell. Only that shape is excused.
bool World::rewritten(const Command& c) {
  Node& sender = node(c.from);
  Node& receiver = node(sender.command_target);
  if (sender.disk_faults == 0) return false;
  for (std::size_t i = 0; i < receiver.disk.applied_numbers.size(); ++i)
    if (receiver.disk.applied_numbers[i] == c.seq && receiver.disk.applied_commands[i] != c.id) return true;
  return false;
}

void World::check_quiescent() {
  for (auto& [name, n] : nodes_)
    if (!n->alive()) return fail(name + " is not running at quiescence");
  for (auto& [name, n] : nodes_) {
    for (const auto& publisher : n->publishers) {
      const std::uint64_t head = node(publisher).disk.outbox.size();
      auto& st = n->live()->streams.at(publisher);
      const std::string s = name, of = "'s stream of " + publisher;
      if (st.stopped()) {
        if (n->losses.empty()) fail(s + of + " stopped without a LOSS:");
        continue;
      }
      if (st.position() == head) continue;
      if (!blocked(*n, publisher, st.position()))
        fail(s + " stopped at " + publisher + "'s #" + std::to_string(st.position()) + " of " + std::to_string(head) +
             " at quiescence, with nothing in the way (phase " + std::to_string(static_cast<int>(st.phase())) +
             ", known head " + std::to_string(st.known_head()) + ", replay in flight " +
             std::to_string(st.replay_in_flight()) + ")");
      else if (!st.stalled())
        fail(s + " is stuck at " + publisher + "'s #" + std::to_string(st.position()) +
             " behind an event it refuses, and does not say so (not stalled)");
    }
  }
  for (auto& [name, n] : nodes_) {
    if (n->command_target.empty() || failed()) continue;
    Node& target = node(n->command_target);
    bool commands_lost = false;
    for (const Node* m : {n.get(), &target})
      for (auto& [loss, about] : m->losses)
        commands_lost |= loss == core::Loss::commands_lost_here || loss == core::Loss::commands_lost_there ||
                         loss == core::Loss::commands_rewritten;
    if (commands_lost) continue;
    for (const auto& c : n->disk.commands)
      if (!target.disk.applied_set.count(c.id) && !rewritten(c)) {
        fail(name + "'s command " + c.id + " (#" + std::to_string(c.seq) + ") was never applied by " +
             n->command_target + ", and no LOSS: said so");
        break;
      }
  }
  if (options_.scenario == "shop" && !failed()) {
    for (auto& [name, n] : nodes_)
      if (!n->losses.empty())
        return fail(name + " said LOSS: in a shop run, where nothing committed is lost: the invariants cannot hold");
    std::vector<std::string> violations;
    try {
      violations = shop_violations(*this);
    } catch (const std::exception& x) {
      return fail(std::string("the shop's snapshot at rest failed: ") + x.what());
    }
    if (!violations.empty())
      fail("the shop's invariants at rest are broken (" + std::to_string(violations.size()) + "): " + violations.front());
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
