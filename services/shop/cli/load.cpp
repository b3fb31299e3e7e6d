// troupe shop load: drives orders through the shop with a mix that produces every outcome
// (unknown and scarce SKUs, customers short of credit, racing cancellations), waits
// until every order is terminal, and reports throughput and end-to-end latency.
#include "../seed.hpp"
#include "shop_cli.hpp"

#include <troupe/domain/id.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <random>
#include <set>
#include <thread>
#include <unistd.h>

namespace troupe::cli {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxSeen = 64;  // --hops: events kept per order (a saga has about six)

struct Tracked {
  Clock::time_point sent;
  Clock::time_point checked;
  Envelope envelope;  // the PlaceOrder as sent, to resend with the same id
  std::string payload;
  std::optional<double> latency_ms;
  std::string outcome;  // confirmed | cancelled | "" (not yet)
  // --hops: every event of this order's saga, as this process saw it (type, when).
  std::vector<std::pair<std::string, Clock::time_point>> seen;
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

// Where the saga's time goes, hop by hop: each hop is the time from seeing one event of
// an order (or sending its PlaceOrder) to seeing the next, all on this process's one
// clock, so the hops of an order add up to its latency. A hop is the next service's
// queueing, handling, commit and relay, and the event's way to this process. The path
// (the sequence of event types seen) is the one most of the tail took: the orders at or
// above the p99 latency. Compared with the tenth of that path's orders around its median.
nlohmann::json hops(const std::map<std::string, Tracked>& tracked, double p99) {
  auto path_of = [](const Tracked& tr) {
    std::vector<std::string> path;
    for (const auto& [type, _] : tr.seen) path.push_back(type);
    return path;
  };
  std::map<std::vector<std::string>, std::size_t> tail_paths;
  std::size_t tail_total = 0;
  for (const auto& [_, tr] : tracked)
    if (tr.latency_ms && *tr.latency_ms >= p99 && !tr.seen.empty()) {
      ++tail_paths[path_of(tr)];
      ++tail_total;
    }
  if (tail_paths.empty()) return nullptr;
  const auto path = std::max_element(tail_paths.begin(), tail_paths.end(), [](const auto& a, const auto& b) {
                      return a.second < b.second;
                    })->first;
  std::vector<const Tracked*> on_path;
  for (const auto& [_, tr] : tracked)
    if (tr.latency_ms && path_of(tr) == path) on_path.push_back(&tr);
  std::sort(on_path.begin(), on_path.end(), [](auto* a, auto* b) { return *a->latency_ms < *b->latency_ms; });
  const std::size_t n = on_path.size(), mid_from = n * 45 / 100, mid_to = std::max(mid_from + 1, n * 55 / 100);
  std::vector<std::vector<double>> tail(path.size()), middle(path.size());
  std::size_t tail_orders = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const Tracked& tr = *on_path[k];
    bool is_tail = *tr.latency_ms >= p99, is_middle = k >= mid_from && k < mid_to;
    tail_orders += is_tail;
    auto from = tr.sent;
    for (std::size_t i = 0; i < path.size(); ++i) {
      double ms = std::chrono::duration<double, std::milli>(tr.seen[i].second - from).count();
      from = tr.seen[i].second;
      if (is_tail) tail[i].push_back(ms);
      if (is_middle) middle[i].push_back(ms);
    }
  }
  auto rows = nlohmann::json::array();
  for (std::size_t i = 0; i < path.size(); ++i)
    rows.push_back({{"hop", (i ? path[i - 1] : std::string("PlaceOrder sent")) + " -> " + path[i]},
                    {"median_ms", mean(middle[i])},
                    {"tail_ms", mean(tail[i])}});
  return {{"orders_on_path", n}, {"tail_orders", tail_orders}, {"tail_total", tail_total}, {"hops", rows}};
}

}  // namespace

Runner add_load(CLI::App& app) {
  auto* cmd = app.add_subcommand("load", "place N orders with mixed outcomes and report latency; exit 1 if any is stuck");
  struct Opts : Common {
    int orders = 200;
    double rate = 500;
    unsigned seed = 1;
    double cancel_ratio = 0.1;
    int cancel_delay_ms = 0;
    int wait_s = 60;
    bool quiet = false, json = false, hops = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("--orders,-n", o->orders, "how many orders")->capture_default_str()->check(CLI::Range(1, 10000000));
  cmd->add_option("--rate,-r", o->rate, "orders per second (0: as fast as possible)")->capture_default_str();
  cmd->add_option("--seed,-s", o->seed, "random seed of the mix (a run is reproducible)")->capture_default_str();
  cmd->add_option("--cancel-ratio", o->cancel_ratio, "share of orders cancelled right after placing")->capture_default_str();
  cmd->add_option("--cancel-delay", o->cancel_delay_ms,
                  "send each cancellation up to this many ms after its order (racing the saga)")
      ->capture_default_str();
  cmd->add_option("--wait", o->wait_s, "seconds to wait, after the last order is sent, for every order to end (then the rest count as stuck)")->capture_default_str();
  cmd->add_flag("--quiet,-q", o->quiet, "no progress lines");
  cmd->add_flag("--hops", o->hops,
                "also follow every service's events and report where the saga's time goes, hop by hop, for the "
                "orders at or above the p99 latency beside those around the median, on the path most of them took "
                "(JSON: \"hops\")");
  cmd->add_flag("--json", o->json,
                "print the result as one JSON object: {\"orders\", \"confirmed\", \"cancelled\", \"stuck\", \"resent\", "
                "\"elapsed_s\", \"ended_per_s\", \"sent_per_s\", \"latency_ms\": {\"p50\", \"p99\", \"max\", \"timed\"}}");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    auto seed = shop::load_seed(t->defaults.seed);
    if (!seed) {
      std::cerr << "troupe: " << seed.error().message() << '\n';
      return kUsage;
    }
    std::vector<std::string> skus, scarce, customers;
    for (const auto& [sku, s] : seed->skus) (s.stock < 1000 ? scarce : skus).push_back(sku);
    for (const auto& [c, _] : seed->customers) customers.push_back(c);
    if (skus.empty()) skus = scarce;

    Client client(*t, "load");
    client.set_identity(identity(*o));
    // With --hops, every service that publishes; else orders alone.
    std::set<std::string> followed, wanted;
    for (const auto& spec : t->services)
      if (o->hops ? !spec.publishes.empty() : spec.service() == "orders") {
        followed.insert(spec.service());
        wanted.insert(spec.name);
      }
    // Under CURVE the identity must be let in to every stream it follows: say so, rather
    // than wait for heartbeats that cannot come.
    if (t->curve())
      if (const ClientSpec* who = t->find_client(identity(*o)))
        for (const auto& svc : followed)
          if (!who->may(who->events, svc)) {
            std::cerr << "troupe: identity '" << who->name << "' may not watch " << svc << "'s events ([clients."
                      << who->name << "] events in " << t->file << ")" << (o->hops ? "; --hops follows every publishing service" : "")
                      << '\n';
            return kUsage;
          }
    client.watch({followed.begin(), followed.end()}, /*heartbeats=*/true);
    // The first heartbeat of each instance proves its subscription is live: no terminal
    // event is missed.
    std::set<std::string> live;
    const auto hb_deadline = Clock::now() + std::chrono::milliseconds(t->defaults.heartbeat.count() * 3 + 2000);
    while (live.size() < wanted.size() && Clock::now() < hb_deadline) {
      auto ev = client.next_event(std::chrono::ceil<std::chrono::milliseconds>(hb_deadline - Clock::now()));
      if (ev && wanted.count(ev->envelope.source)) live.insert(ev->envelope.source);
    }
    if (live.size() < wanted.size()) {
      std::string missing;
      for (const auto& w : wanted)
        if (!live.count(w)) missing += (missing.empty() ? "" : ", ") + w;
      std::cerr << "troupe: not publishing: " << missing << " (is the mesh up? try scripts/mesh up)\n";
      return kUnreachable;
    }

    std::mt19937_64 rng(o->seed);
    std::uniform_real_distribution<double> u(0, 1);
    std::string run = new_id().substr(9, 9);  // unique per run, short
    std::map<std::string, Tracked> tracked;
    std::size_t terminal = 0, confirmed = 0, cancelled = 0;
    auto on_event = [&](const Received& ev) {
      if (o->hops && ev.envelope.type[0] != '$') {
        auto it = tracked.find(ev.envelope.correlationid);
        // At most kMaxSeen per order: a publisher repeating an order's events cannot make
        // this process hold them without end.
        if (it != tracked.end() && it->second.outcome.empty() && it->second.seen.size() < kMaxSeen)
          it->second.seen.emplace_back(ev.envelope.type, Clock::now());
      }
      if (ev.envelope.type != "OrderConfirmed" && ev.envelope.type != "OrderCancelled") return;
      auto it = tracked.find(ev.envelope.correlationid);
      if (it == tracked.end() || !it->second.outcome.empty()) return;
      it->second.outcome = ev.envelope.type == "OrderConfirmed" ? "confirmed" : "cancelled";
      it->second.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - it->second.sent).count();
      ++terminal;
      (ev.envelope.type == "OrderConfirmed" ? confirmed : cancelled)++;
    };
    std::multimap<Clock::time_point, std::string> cancels;  // due -> order id
    auto send_due_cancels = [&] {
      while (!cancels.empty() && cancels.begin()->first <= Clock::now()) {
        auto id = cancels.begin()->second;
        cancels.erase(cancels.begin());
        (void)client.send("orders", shop::CancelOrder{id, "changed my mind"}, id);
      }
    };
    auto drain = [&](std::chrono::milliseconds wait) {
      send_due_cancels();
      if (!cancels.empty())
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(cancels.begin()->first - Clock::now()));
      if (wait.count() < 0) wait = std::chrono::milliseconds(0);
      while (auto ev = client.next_event(wait)) {
        on_event(*ev);
        wait = std::chrono::milliseconds(0);
      }
    };
    bool tty = isatty(2);
    auto progress = [&](bool force) {
      static Clock::time_point last{};
      if (o->quiet || (!force && Clock::now() - last < std::chrono::seconds(1))) return;
      last = Clock::now();
      std::cerr << (tty ? "\r" : "") << "load: " << tracked.size() << "/" << o->orders << " placed, " << terminal
                << " ended" << (tty ? "   " : "\n") << std::flush;
    };

    // An order that has not ended after a while: ask orders about it. Ended: count it.
    // Unknown to orders (the PlaceOrder was lost, e.g. orders was killed with it
    // unread): resend the same command; its id and the order id make that safe.
    // A sweep ends at the first query orders does not answer (it will not answer the
    // next one either: asking 500 orders of a dead service would take 500 s), and by
    // `until`, so --wait bounds the whole run.
    std::size_t resent = 0;
    auto check_unfinished = [&](Clock::time_point until) {
      int asked = 0;
      auto now = Clock::now();
      for (auto& [id, tr] : tracked) {
        if (!tr.outcome.empty() || now - tr.checked < std::chrono::seconds(2)) continue;
        if (asked >= 500 || Clock::now() >= until) break;
        tr.checked = now;
        ++asked;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        auto v = client.query("orders", shop::GetOrder{id}, std::clamp(left, std::chrono::milliseconds(1),
                                                                        std::chrono::milliseconds(1000)));
        if (v && (v->status == "confirmed" || v->status == "cancelled")) {
          tr.outcome = v->status;
          ++terminal;
          (v->status == "confirmed" ? confirmed : cancelled)++;
        } else if (!v && v.error().code == Rejection::Code::refused) {
          (void)client.resend("orders", tr.envelope, tr.payload);
          ++resent;
        } else if (!v) {
          break;  // no reply: orders is down or stalled; the next sweep asks again
        }
      }
    };
    auto last_sweep = Clock::now();

    auto t0 = Clock::now();
    for (int i = 0; i < o->orders; ++i) {
      if (o->rate > 0) {
        auto due = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(i / o->rate));
        // Rounded up: waits end at most a millisecond late (the schedule is kept from t0,
        // so lateness does not add up), where rounding down made the last millisecond
        // before each order a busy loop — a whole core of a two-core machine taken from
        // the services being timed.
        while (Clock::now() < due) drain(std::chrono::ceil<std::chrono::milliseconds>(due - Clock::now()));
      }
      shop::PlaceOrder p;
      p.order_id = "o" + run + "-" + std::to_string(i + 1);
      p.customer = customers[rng() % customers.size()];
      double roll = u(rng);
      p.sku = roll < 0.03 ? "SKU-404" : roll < 0.10 && !scarce.empty() ? scarce[rng() % scarce.size()] : skus[rng() % skus.size()];
      p.quantity = 1 + static_cast<std::int64_t>(rng() % 3);
      auto& tr = tracked[p.order_id];
      tr.sent = tr.checked = Clock::now();
      auto sent = client.send("orders", p, p.order_id);
      if (!sent) {
        std::cerr << "troupe: " << sent.error().message() << '\n';
        return kFailed;
      }
      tr.envelope = *sent;
      tr.payload = codec::encode(p);
      if (u(rng) < o->cancel_ratio)
        cancels.emplace(Clock::now() + std::chrono::microseconds(o->cancel_delay_ms > 0 ? rng() % (o->cancel_delay_ms * 1000) : 0),
                        p.order_id);
      send_due_cancels();
      drain(std::chrono::milliseconds(0));
      progress(false);
      if (Clock::now() - last_sweep > std::chrono::seconds(2)) {
        last_sweep = Clock::now();
        check_unfinished(last_sweep + std::chrono::seconds(2));  // sending goes on after it
      }
    }
    auto sent_done = Clock::now();
    auto deadline = sent_done + std::chrono::seconds(o->wait_s);
    // Wait for the terminal events; past a quiet spell, ask orders directly for the rest.
    auto last_check = Clock::now();
    while ((terminal < tracked.size() || !cancels.empty()) && Clock::now() < deadline) {
      drain(std::chrono::milliseconds(100));
      progress(false);
      if (terminal < tracked.size() && Clock::now() - last_check > std::chrono::seconds(2)) {
        last_check = Clock::now();
        check_unfinished(deadline);
      }
    }
    progress(true);
    if (!o->quiet && tty) std::cerr << '\n';
    double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    std::vector<double> lat;
    for (auto& [_, tr] : tracked)
      if (tr.latency_ms) lat.push_back(*tr.latency_ms);
    std::size_t stuck = tracked.size() - terminal;
    const double ended_per_s = elapsed > 0 ? static_cast<double>(terminal) / elapsed : 0;
    const double sent_per_s =
        static_cast<double>(tracked.size()) / std::max(1e-9, std::chrono::duration<double>(sent_done - t0).count());
    const auto where = o->hops ? hops(tracked, percentile(lat, 0.99)) : nlohmann::json();
    if (o->json) {
      auto out = nlohmann::json{{"orders", tracked.size()},
                                       {"confirmed", confirmed},
                                       {"cancelled", cancelled},
                                       {"stuck", stuck},
                                       {"resent", resent},
                                       {"elapsed_s", elapsed},
                                       {"ended_per_s", ended_per_s},
                                       {"sent_per_s", sent_per_s},
                                       {"latency_ms",
                                        {{"p50", percentile(lat, 0.5)},
                                         {"p99", percentile(lat, 0.99)},
                                         {"max", percentile(lat, 1.0)},
                                         {"timed", lat.size()}}}};
      if (o->hops) out["hops"] = where;
      std::cout << dump(out) << std::endl;
      return stuck ? kFailed : kOk;
    }
    std::cout << std::fixed << std::setprecision(1);
    std::cout << "load: " << tracked.size() << " orders in " << elapsed << " s (" << ended_per_s
              << " orders/s ended; sent at " << sent_per_s << "/s)\n";
    std::cout << std::setprecision(2) << "latency (PlaceOrder sent -> terminal event): p50 " << percentile(lat, 0.5)
              << " ms, p99 " << percentile(lat, 0.99) << " ms, max " << percentile(lat, 1.0) << " ms ("
              << lat.size() << " timed)\n";
    if (where.is_object()) {
      std::cout << "where the time goes: " << where["tail_orders"].get<std::size_t>() << " of the "
                << where["tail_total"].get<std::size_t>() << " orders at or above p99 took this path (of "
                << where["orders_on_path"].get<std::size_t>() << " that did), mean ms per hop:\n";
      for (const auto& h : where["hops"])
        std::cout << "  " << std::left << std::setw(44) << h["hop"].get<std::string>() << std::right << " median "
                  << std::setw(8) << h["median_ms"].get<double>() << "  tail " << std::setw(8)
                  << h["tail_ms"].get<double>() << '\n';
    }
    if (resent) std::cout << "resent " << resent << " PlaceOrder command(s) that orders had not received\n";
    std::cout << "orders: " << tracked.size() << " placed, " << confirmed << " confirmed, " << cancelled
              << " cancelled, " << stuck << " stuck" << std::endl;  // before commands still queued linger
    return stuck ? kFailed : kOk;
  };
}

}  // namespace troupe::cli
