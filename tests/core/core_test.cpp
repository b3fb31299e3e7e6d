// The delivery core driven directly: no sockets, no store, no clock — time is a value.
#include <troupe/core/commands.hpp>
#include <troupe/core/inbound_stream.hpp>

#include <catch2/catch.hpp>

using namespace troupe::core;
using namespace std::chrono_literals;
using Verdict = InboundStream::Verdict;

namespace {

const Time t0 = Time{} + 1000s;
const StreamSettings settings{100ms, true, 1 << 20};

PublisherWord word(std::uint64_t head, std::string boot = "b1", std::optional<std::uint64_t> epoch = std::nullopt,
                   std::string incarnation = "inc") {
  return {std::move(incarnation), std::move(boot), head, true, epoch};
}

bool has_loss(const Effects& fx) {
  for (const auto& r : fx.reports)
    if (r.level == Report::Level::error && r.text.rfind("LOSS: ", 0) == 0) return true;
  return false;
}

// A stream verified by a first heartbeat (no epochs), at position 0.
InboundStream verified_stream() {
  InboundStream s("pub", settings);
  Effects fx;
  s.heartbeat(word(0), fx);
  REQUIRE(s.verified());
  return s;
}

}  // namespace

TEST_CASE("events apply in order and once; a gap asks a replay from the position", "[core]") {
  auto s = verified_stream();
  Effects fx;
  CHECK(s.offer(1, 0, false, fx) == Verdict::apply);
  CHECK(s.offer(1, 0, false, fx) == Verdict::duplicate);
  CHECK(s.offer(3, 0, false, fx) == Verdict::gap);
  CHECK(fx.gap_opened);
  CHECK(s.phase() == InboundStream::Phase::repairing);
  CHECK(s.position() == 1);
  fx.clear();
  auto due = s.tick(t0, fx);
  REQUIRE(due.ask);
  CHECK(*due.ask == 2);
  s.asked("r1", 2, t0);
  CHECK(s.awaits("r1"));
  CHECK_FALSE(s.awaits("r0"));
  REQUIRE(s.answered({word(3), 1, std::nullopt}, fx));
  CHECK(s.offer(2, 0, true, fx) == Verdict::apply);
  CHECK(s.offer(3, 0, true, fx) == Verdict::apply);
  CHECK(fx.gap_repaired);
  CHECK(s.phase() == InboundStream::Phase::following);
}

TEST_CASE("nothing of a publisher applies until it has said who it is", "[core]") {
  InboundStream s("pub", settings, 5, {"inc", 0, false});
  Effects fx;
  CHECK(s.offer(6, 0, false, fx) == Verdict::held);
  CHECK(s.known_head() == 6);
  s.heartbeat(word(6, "b1", std::nullopt, "other"), fx);  // a replaced store
  CHECK(s.phase() == InboundStream::Phase::history_lost);
  CHECK(has_loss(fx));
  CHECK(fx.save_identity);
  CHECK(s.offer(6, 0, false, fx) == Verdict::stopped);
}

TEST_CASE("a stop for lost history outlives a restart, and is said again", "[core]") {
  InboundStream s("pub", settings, 10, {"inc", 0, false});
  Effects fx;
  s.heartbeat(word(4), fx);  // a new start with a head below our position
  REQUIRE(s.phase() == InboundStream::Phase::history_lost);
  const std::string record = s.identity();
  CHECK(record == "inc 0 lost");
  // Restarted, the publisher has since run past our position: still stopped.
  InboundStream again("pub", settings, 10, InboundStream::parse_identity(record));
  Effects fx2;
  again.recall(fx2);
  CHECK(has_loss(fx2));
  again.heartbeat(word(50, "b2"), fx2);
  CHECK(again.offer(11, 0, false, fx2) == Verdict::stopped);
}

TEST_CASE("a word from an earlier start, read after the new one's, does not wedge the stream", "[core]") {
  InboundStream s("pub", settings, 0, {});
  Effects fx;
  s.heartbeat(word(0, "b1", 7), fx);
  auto due = s.tick(t0, fx);
  s.asked("r1", *due.ask, t0);
  REQUIRE(s.answered({word(0, "b1", 7), 1, 0}, fx));
  for (std::uint64_t q = 1; q <= 20; ++q) REQUIRE(s.offer(q, 7, false, fx) == Verdict::apply);
  s.heartbeat(word(30, "b3", 9), fx);  // it restarted
  s.heartbeat(word(12, "b2", 8), fx);  // a short-lived start in between, read late
  CHECK_FALSE(s.stopped());
  CHECK_FALSE(has_loss(fx));
  // Its current start answers: the stream verifies and moves on.
  due = s.tick(t0 + 1s, fx);
  REQUIRE(due.ask);
  s.asked("r2", *due.ask, t0 + 1s);
  REQUIRE(s.answered({word(30, "b3", 9), 1, 7}, fx));
  CHECK(s.verified());
  CHECK(s.offer(21, 9, true, fx) == Verdict::apply);
}

TEST_CASE("with epochs, a low head in a late word is no loss: the epoch of the position's event decides", "[core]") {
  InboundStream s("pub", settings, 20, {"inc", 7, false});
  Effects fx;
  s.heartbeat(word(12, "b9", 9), fx);  // a word of a short-lived start, read late
  CHECK_FALSE(s.stopped());
  CHECK_FALSE(has_loss(fx));
  CHECK_FALSE(s.verified());  // its epoch is checked by a replay first
}

TEST_CASE("an unverified stream asks again when its replay went unanswered, even at its known head", "[core]") {
  InboundStream s("pub", settings, 20, {"inc", 7, false});
  Effects fx;
  s.heartbeat(word(20, "b2", 9), fx);  // a new epoch: a replay must show #20 is still its own
  auto due = s.tick(t0, fx);
  REQUIRE(due.ask);
  s.asked("r1", 21, t0);  // ... and the publisher dies before answering
  due = s.tick(t0 + 5s, fx);
  CHECK(due.reopen_replay);
  REQUIRE(due.ask);
  CHECK(*due.ask == 21);
}

TEST_CASE("a new epoch applies only once a replay showed the position's event is still its own", "[core]") {
  InboundStream s("pub", settings, 0, {});
  Effects fx;
  s.heartbeat(word(0, "b1", 7), fx);
  auto due = s.tick(t0, fx);
  REQUIRE(due.ask);
  s.asked("r1", 1, t0);
  REQUIRE(s.answered({word(0, "b1", 7), 1, 0}, fx));
  for (std::uint64_t q = 1; q <= 5; ++q) REQUIRE(s.offer(q, 7, false, fx) == Verdict::apply);
  // The publisher reopened its store (epoch 9): held until checked.
  CHECK(s.offer(6, 9, false, fx) == Verdict::held);
  due = s.tick(t0 + 1s, fx);
  REQUIRE(due.ask);
  CHECK(*due.ask == 6);
  s.asked("r2", 6, t0 + 1s);
  SECTION("it still has event #5 of epoch 7: it follows") {
    CHECK(s.answered({word(6, "b2", 9), 1, 7}, fx));
    CHECK(s.offer(6, 9, true, fx) == Verdict::apply);
  }
  SECTION("event #5 is now another one (a lost WAL tail): LOSS") {
    CHECK_FALSE(s.answered({word(6, "b2", 9), 1, 9}, fx));
    CHECK(s.phase() == InboundStream::Phase::history_lost);
    CHECK(has_loss(fx));
  }
}

TEST_CASE("a stream whose replays go unanswered while its publisher lives is stalled, then moves", "[core]") {
  auto s = verified_stream();
  Effects fx;
  s.heartbeat(word(10), fx);  // it has 10; we have none
  Time now = t0;
  int asks = 0;
  for (int i = 0; i < 400 && !s.stalled(); ++i) {
    now += 100ms;
    s.heard(now);  // its heartbeats keep arriving
    auto due = s.tick(now, fx);
    if (due.ask) {
      s.asked("r" + std::to_string(i), *due.ask, now);
      ++asks;
    }
  }
  REQUIRE(s.stalled());
  CHECK(asks == kStallReplays + 1);
  CHECK(fx.health_changed);
  fx.clear();
  s.refused(fx);  // an answer, even a refusal: the connection carries what is asked
  CHECK_FALSE(s.stalled());
}

TEST_CASE("a stream whose replays are answered but whose next event is refused on arrival is stalled, asks less "
          "and less often, then moves",
          "[core]") {
  auto s = verified_stream();
  Effects fx;
  s.heartbeat(word(10), fx);  // it has 10; we have none, and #1 is one we refuse
  Time now = t0;
  int asks = 0;
  std::string report;
  auto run = [&](Duration for_how_long) {
    const Time end = now + for_how_long;
    while (now < end) {
      now += 100ms;
      s.heard(now);
      auto due = s.tick(now, fx);
      if (due.ask) {
        s.asked("r" + std::to_string(asks), *due.ask, now);
        ++asks;
        REQUIRE(s.answered({word(10), 1, std::nullopt}, fx));  // answered at once; #1 is never offered
      }
      for (const auto& r : fx.reports)
        if (r.level == Report::Level::error) report = r.text;
      fx.reports.clear();
    }
  };
  run(60s);
  REQUIRE(s.stalled());
  CHECK_THAT(report, Catch::Contains("stream from pub stuck at #0 (its head is #10)") &&
                         Catch::Contains("replays from #1 were answered and #1 was never applied"));
  // Without the hold it would ask at every tick (600 times a minute); with it, the waits
  // double up to 8 timeouts of 1 s.
  CHECK(asks < 15);
  const int before = asks;
  run(60s);
  CHECK(asks - before <= 60 / 8 + 1);
  // #1 arrives readable at last, and all after it: applied, and the next answer finds
  // the stream moved.
  for (std::uint64_t i = 1; i <= 10; ++i) CHECK(s.offer(i, 0, true, fx) == Verdict::apply);
  run(10s);
  CHECK_FALSE(s.stalled());
}

TEST_CASE("a simulated clock jump: the silence while the node did not run is its own", "[core][clock]") {
  auto s = verified_stream();
  Effects fx;
  s.subscribed(t0);
  s.heard(t0);
  s.heartbeat(word(3), fx);
  auto due = s.tick(t0, fx);
  REQUIRE(due.ask);
  s.asked("r1", 1, t0);
  const Time later = t0 + 60s;  // SIGSTOP, a suspended machine, a debugger
  CHECK(suspended(t0, later, settings.heartbeat));
  CHECK_FALSE(suspended(t0, t0 + 50ms, settings.heartbeat));
  SECTION("noticed: nothing is reopened and the replay is given its time again") {
    s.resumed(later);
    due = s.tick(later, fx);
    CHECK_FALSE(due.reopen_subscription);
    CHECK_FALSE(due.reopen_replay);
    CHECK_FALSE(due.ask);
  }
  SECTION("not noticed: the connection would be taken for dead") {
    due = s.tick(later, fx);
    CHECK(due.reopen_subscription);
    CHECK(due.reopen_replay);
  }
}

TEST_CASE("a rolled-back unit of work rewinds the stream", "[core]") {
  auto s = verified_stream();
  Effects fx;
  REQUIRE(s.offer(1, 0, false, fx) == Verdict::apply);
  auto mark = s.mark();
  REQUIRE(s.offer(2, 0, false, fx) == Verdict::apply);
  s.rewind(mark);
  CHECK(s.position() == 1);
  CHECK(s.offer(2, 0, false, fx) == Verdict::apply);
}

TEST_CASE("commands apply in each sender's order, once; heartbeats ack what is committed", "[core][commands]") {
  CommandInbox in;
  Effects fx;
  in.restore("a", 0);
  CHECK(in.offer("a", 1, 5, fx) == CommandInbox::Verdict::apply);
  CHECK(in.offer("a", 1, 5, fx) == CommandInbox::Verdict::duplicate);
  CHECK(in.offer("a", 3, 5, fx) == CommandInbox::Verdict::out_of_order);
  CHECK(in.acks().at("a") == 0);  // not committed yet
  auto moved = in.moved();
  REQUIRE(moved.size() == 1);
  CHECK(moved[0].position == 1);
  REQUIRE(moved[0].epochs);
  CHECK(*moved[0].epochs == "1:5");
  in.committed();
  CHECK(in.acks().at("a") == 1);
  CHECK(in.offer("a", 2, 5, fx) == CommandInbox::Verdict::apply);
  in.rolled_back();
  CHECK(in.offer("a", 2, 5, fx) == CommandInbox::Verdict::apply);
  CHECK_FALSE(has_loss(fx));
}

TEST_CASE("a sender that numbers new commands as ones applied here lost them: LOSS", "[core][commands]") {
  CommandInbox in;
  Effects fx;
  in.restore("a", 4, "1:5");  // #1..#4 applied, written under epoch 5
  CHECK(in.offer("a", 3, 5, fx) == CommandInbox::Verdict::duplicate);  // a resend: fine
  CHECK_FALSE(has_loss(fx));
  CHECK(in.offer("a", 3, 8, fx) == CommandInbox::Verdict::duplicate);  // #3 again, from a new opening
  CHECK(has_loss(fx));
  CHECK(fx.loss == Loss::commands_rewritten);
}

TEST_CASE("a sender learns of commands lost on either side", "[core][commands]") {
  Effects fx;
  SECTION("the receiver applied more than our store has (a lost WAL tail here)") {
    CommandOutbox out("b", 10, 10, "inc", 100ms, t0);
    CHECK_FALSE(out.may_send());
    CHECK(out.resend_limit() == 10);  // what was numbered since waits for the check
    out.heartbeat(12, "inc", true, 10, true, t0, fx);
    CHECK(out.may_send());
    CHECK(fx.loss == Loss::commands_lost_here);
  }
  SECTION("the receiver's store was replaced: it no longer acks us at all") {
    CommandOutbox out("b", 10, 10, "inc", 100ms, t0);
    out.heartbeat(std::nullopt, "other", true, 10, true, t0, fx);
    CHECK(fx.loss == Loss::commands_lost_there);
    CHECK(fx.save_identity);
    CHECK(out.incarnation() == "other");
  }
  SECTION("acks that move prune the outbox; a resend waits for two heartbeats without progress") {
    CommandOutbox out("b", 10, 4, "inc", 100ms, t0);
    auto prune = out.heartbeat(7, "inc", true, 10, true, t0, fx);
    REQUIRE(prune);
    CHECK(*prune == 7);
    CHECK_FALSE(out.resend_due(t0 + 150ms));
    CHECK(out.resend_due(t0 + 200ms));
    CHECK_FALSE(has_loss(fx));
  }
  SECTION("after the check, an ack of a number we have not sent yet: an old command of ours reached it late") {
    CommandOutbox out("b", 10, 10, "inc", 100ms, t0);  // #11..#12 were written while held back
    out.heartbeat(10, "inc", true, 12, true, t0, fx);
    REQUIRE_FALSE(has_loss(fx));
    out.sent(13);  // a new one goes at once; #11 and #12 wait for the resend
    out.heartbeat(11, "inc", true, 13, true, t0 + 100ms, fx);
    CHECK(fx.loss == Loss::commands_lost_here);
  }
  SECTION("acks of what went out, in any order, are no loss") {
    CommandOutbox out("b", 10, 10, "inc", 100ms, t0);
    out.heartbeat(10, "inc", true, 12, true, t0, fx);
    out.sent(13);
    out.sent(11);
    out.sent(12);
    out.heartbeat(13, "inc", true, 13, true, t0 + 100ms, fx);
    CHECK_FALSE(has_loss(fx));
  }
}
