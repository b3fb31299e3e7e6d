// Work a service does of its own accord — a timer's tick, a reading handed over by
// another thread — runs on the node's thread in a unit of work, like a handler.
#include "../support/test_mesh.hpp"

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/runtime/client.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <atomic>
#include <ctime>

using namespace testmesh;
using troupe::Client;
using troupe::Node;
using troupe::NodeOptions;

namespace {

struct Mesh {
  TempDir dir;
  zmq::context_t ctx;
  troupe::Topology topo = topology("ipc", dir.str(), 1);
  std::unique_ptr<Node> pub, sub;
  std::unique_ptr<Client> client;
  Mesh() {
    NodeOptions o;
    o.context = &ctx;
    pub = std::make_unique<Node>(topo, "pub", o);
    sub = std::make_unique<Node>(topo, "sub1", o);
    install(*pub);
    install(*sub);
    client = std::make_unique<Client>(topo, "test", &ctx);
  }
  Applied applied(const std::string& service) {
    auto r = client->query(service, GetApplied{}, std::chrono::milliseconds(1000));
    return r ? *r : Applied{-1, -1, -1};
  }
};

// The publisher's own counter, kept in its state: the Ping it emits next.
void emit_next(troupe::Context& ctx, const std::string& note = "") {
  auto next = ctx.state().load<NextPing>("pub", "next").value_or(NextPing{});
  ctx.emit(Ping{next.next++, note});
  ctx.state().save("pub", "next", next);
}

}  // namespace

TEST_CASE("a timer emits on its own, each tick committed with the state it wrote", "[tasks]") {
  Mesh m;
  m.pub->every(std::chrono::milliseconds(20), [](troupe::Context& ctx) { emit_next(ctx); });
  Running rs(*m.sub), rp(*m.pub);
  REQUIRE(eventually([&] { return m.applied("sub1").count >= 10; }));
  auto a = m.applied("sub1");
  CHECK(a.out_of_order == 0);
  CHECK(m.applied("pub").count >= a.count);  // every Ping applied was committed by pub with its counter
}

TEST_CASE("tasks posted from another thread all run in order on the node's thread", "[tasks]") {
  Mesh m;
  Running rs(*m.sub), rp(*m.pub);
  std::atomic<int> elsewhere{0};
  const auto node_thread = rp.thread.get_id();
  std::thread driver([&] {
    for (int i = 0; i < 200; ++i)
      m.pub->post([&](troupe::Context& ctx) {
        if (std::this_thread::get_id() != node_thread) ++elsewhere;
        emit_next(ctx, "reading");
      });
  });
  driver.join();
  REQUIRE(eventually([&] { return m.applied("sub1").count == 200; }));
  CHECK(m.applied("sub1").out_of_order == 0);
  CHECK(elsewhere == 0);
}

TEST_CASE("a task that throws keeps nothing, is counted, and the node goes on", "[tasks]") {
  Mesh m;
  m.pub->after(std::chrono::milliseconds(10), [](troupe::Context& ctx) {
    emit_next(ctx);
    throw std::runtime_error("sensor unplugged");
  });
  Running rs(*m.sub), rp(*m.pub);
  auto metrics = [&] {
    auto r = m.client->query_raw("pub", "$metrics", std::string(1, '\x80'));
    return r ? nlohmann::json::from_msgpack(r->payload) : nlohmann::json{};
  };
  REQUIRE(eventually([&] { return metrics()["tasks_failed"] == 1; }));
  CHECK(m.applied("pub").count == 0);  // its state change and its event went with it
  m.pub->post([](troupe::Context& ctx) { emit_next(ctx); });
  REQUIRE(eventually([&] { return m.applied("sub1").count == 1; }));
  CHECK(m.applied("pub").count == 1);
}

TEST_CASE("a client waiting for an event waits its whole timeout, not less", "[client]") {
  // Rounding the time left down to whole milliseconds once made next_event return at
  // once with less than a millisecond to go: a 1 ms wait did not wait at all, and a
  // caller waiting in a loop (troupe shop load between two orders) spun a core.
  Mesh m;
  m.client->watch({"pub"});
  auto cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = cpu_ms();
  for (int i = 0; i < 20; ++i) CHECK_FALSE(m.client->next_event(std::chrono::milliseconds(1)));
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(20));
  CHECK(cpu_ms() - cpu0 < 10);  // asleep in poll, not looking again and again
  const auto t1 = std::chrono::steady_clock::now();
  CHECK_FALSE(m.client->next_event(std::chrono::milliseconds(0)));  // 0: one look, no wait
  CHECK(std::chrono::steady_clock::now() - t1 < std::chrono::seconds(1));
}

TEST_CASE("malformed events do not hold a waiting client past its timeout", "[client]") {
  // next_event drops what it cannot decode; it once went straight back for the next
  // message without looking at the clock, so a publisher sending only garbage held the
  // caller for as long as it kept sending. Over inproc every message is in the client's
  // queue once send returns: 20,000 malformed ones, then one good Ping.
  Mesh m;
  zmq::socket_t pub(m.ctx, zmq::socket_type::xpub);
  pub.set(zmq::sockopt::sndhwm, 0);  // an inproc pipe with one side unlimited is unlimited: none dropped
  pub.bind("inproc://garbage-publisher");
  m.client->set_endpoints("pub", {"inproc://garbage-publisher", "inproc://unused-commands", "inproc://unused-queries"});
  m.client->watch({"pub"});
  zmq::message_t subscription;
  pub.set(zmq::sockopt::rcvtimeo, 5000);
  REQUIRE(pub.recv(subscription));  // the client's SUB is attached: what is sent now reaches it
  for (int i = 0; i < 20000; ++i) {
    pub.send(zmq::str_buffer("Ping "), zmq::send_flags::sndmore);
    pub.send(zmq::str_buffer("not an envelope"), zmq::send_flags::sndmore);
    pub.send(zmq::str_buffer("x"), zmq::send_flags::none);
  }
  const std::string env = troupe::codec::encode_envelope(troupe::make_envelope("pub", "Ping", troupe::Kind::event));
  const std::string payload = troupe::codec::encode(Ping{7, "after the garbage"});
  pub.send(zmq::str_buffer("Ping "), zmq::send_flags::sndmore);
  pub.send(zmq::buffer(env), zmq::send_flags::sndmore);
  pub.send(zmq::buffer(payload), zmq::send_flags::none);
  // A 0 ms wait: one look. It finds a malformed message and gives up, where it used to
  // read all 20,000 and return the Ping behind them.
  CHECK_FALSE(m.client->next_event(std::chrono::milliseconds(0)));
  // Waiting again and again, the caller still gets the good event.
  std::optional<troupe::Received> ev;
  REQUIRE(eventually([&] { return (ev = m.client->next_event(std::chrono::milliseconds(5))).has_value(); }));
  CHECK(ev->envelope.type == "Ping");
  CHECK(troupe::codec::decode<Ping>(ev->payload)->note == "after the garbage");
}

TEST_CASE("a client's traceparent travels with its command into the events it causes", "[client]") {
  Mesh m;
  Running rs(*m.sub), rp(*m.pub);
  m.client->watch({"pub"});
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  REQUIRE(m.client->send("pub", Emit{1, ""}, "", tp));
  std::optional<troupe::Received> ev;
  REQUIRE(eventually([&] { return (ev = m.client->next_event(std::chrono::milliseconds(50))).has_value(); }));
  CHECK(ev->envelope.type == "Ping");
  CHECK(ev->envelope.traceparent == tp);
  auto bad = m.client->send("pub", Emit{1, ""}, "", "00-not-a-trace");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message(), Catch::StartsWith("traceparent: expected 00-<32 hex>"));
  CHECK_FALSE(troupe::valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  CHECK_FALSE(troupe::valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
}
