// What one admitted but hostile peer, or one valid but huge message, can do to a node:
// real sockets, real SQLite files. Each case failed before the node held the line.
#include "../support/node_checks.hpp"
#include "../support/test_mesh.hpp"

#include <troupe/runtime/builtin.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/adapters/zmq/keys.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <atomic>
#include <fstream>

using namespace testmesh;
using troupe::Client;
using troupe::Node;
using troupe::NodeOptions;

namespace {

NodeOptions on(zmq::context_t& ctx) {
  NodeOptions o;
  o.context = &ctx;
  return o;
}

// pub + sub1 over ipc with handlers of the test's own: pub's Emit makes one Ping whose
// note is `count` bytes long (so a test can ask for a huge event) and whose correlation
// id is the Emit's note (as the shop's is an order id a client chose), sub1 refuses
// Pings while `refuse` is set; sub1's Emit is sent on to pub, its note as the command's
// correlation id.
struct Pair {
  TempDir dir;
  zmq::context_t ctx;
  troupe::Topology topo;
  std::unique_ptr<Node> pub, sub;
  std::unique_ptr<Running> run_pub, run_sub;
  std::unique_ptr<Client> client;
  std::atomic<bool> refuse{false};

  explicit Pair(const std::string& extra_mesh = "")
      : topo(topology("ipc", dir.str(), 1, "durable", extra_mesh)) {
    pub = std::make_unique<Node>(topo, "pub", on(ctx));
    pub->on_command<Emit>([](const Emit& e, troupe::Context& ctx) {
      ctx.emit(Ping{e.count, std::string(static_cast<std::size_t>(e.count), 'x')}, e.note);
    });
    pub->on_query<GetApplied>([](const GetApplied&, const troupe::QueryContext&) { return Applied{}; });
    sub = std::make_unique<Node>(topo, "sub1", on(ctx));
    sub->on<Ping>([this](const Ping&, troupe::Context& ctx) -> troupe::Result<void> {
      if (refuse.load()) return troupe::reject(troupe::Rejection::Code::refused, "Ping", "not today");
      auto a = ctx.state().load<Applied>("sub", "applied").value_or(Applied{});
      ++a.count;
      ctx.state().save("sub", "applied", a);
      return {};
    });
    sub->on_query<GetApplied>([](const GetApplied&, const troupe::QueryContext& ctx) {
      return ctx.state().load<Applied>("sub", "applied").value_or(Applied{});
    });
    sub->on_command<Emit>([](const Emit& e, troupe::Context& ctx) { ctx.send("pub", Emit{e.count, ""}, e.note); });
    client = std::make_unique<Client>(topo, "test", &ctx);
    run_pub = std::make_unique<Running>(*pub);
    run_sub = std::make_unique<Running>(*sub);
  }
  ~Pair() {
    client.reset();
    run_sub.reset();
    run_pub.reset();
  }
  nlohmann::json letters(const std::string& service) {
    return json_query(*client, service, "$deadletters", troupe::codec::encode(troupe::builtin::DeadLettersRequest{}));
  }
  nlohmann::json retry(const std::string& service, std::int64_t id) {
    troupe::builtin::DeadLettersRequest req;
    req.op = "retry";
    req.id = id;
    auto r = client->query_raw(service, "$deadletters", troupe::codec::encode(req));
    if (!r) return {{"error", r.error().message()}};  // the node answered $error
    return nlohmann::json::from_msgpack(r->payload);
  }
};

}  // namespace

TEST_CASE("a dead letter retried while its handler still refuses stays one letter, and applies once",
          "[hardening][deadletters]") {
  Pair p;
  p.refuse = true;
  REQUIRE(p.client->send("pub", Emit{3, ""}));
  REQUIRE(eventually([&] { return p.letters("sub1")["count"] == 1; }));
  auto id = p.letters("sub1")["letters"][0]["id"].get<std::int64_t>();
  for (int round = 0; round < 3; ++round) {
    auto r = p.retry("sub1", id);
    CHECK(r["ok"] == false);
    CHECK(r["attempts"] == round + 2);
    CHECK(p.letters("sub1")["count"] == 1);  // updated, never doubled
  }
  auto kept = p.letters("sub1")["letters"][0];
  CHECK(kept["id"] == id);
  CHECK(kept["attempts"] == 4);
  CHECK(kept["reason"] == "Ping: not today");
  p.refuse = false;
  CHECK(p.retry("sub1", id)["ok"] == true);
  CHECK(p.letters("sub1")["count"] == 0);
  CHECK(p.retry("sub1", id).contains("error"));  // gone: a second retry applies nothing
  CHECK(applied(*p.client, "sub1") == 1);
}

TEST_CASE("an event too large for the mesh is never committed; its cause is refused and the stream goes on",
          "[hardening][poison]") {
  Pair p;
  // Emit{2'000'000} would make a 2 MB Ping, over max_message_bytes (1 MiB): no peer could take it.
  REQUIRE(p.client->send("pub", Emit{2'000'000, ""}));
  REQUIRE(eventually([&] { return p.letters("pub")["count"] == 1; }));
  auto letter = p.letters("pub")["letters"][0];
  CHECK(letter["type"] == "Emit");
  CHECK_THAT(letter["reason"].get<std::string>(),
             Catch::Contains("pub emits Ping of 2000") && Catch::Contains("over max_message_bytes (1048576)"));
  CHECK(json_query(*p.client, "pub", "$health")["head"] == 0);  // nothing committed
  CHECK(json_query(*p.client, "pub", "$metrics")["oversized_refused"] == 1);
  REQUIRE(p.client->send("pub", Emit{100, ""}));
  REQUIRE(eventually([&] { return applied(*p.client, "sub1") == 1; }));
  auto health = json_query(*p.client, "sub1", "$health");
  CHECK(health["state"] == "ready");
  CHECK(health["upstreams"][0]["lag"] == 0);
}

TEST_CASE("an event whose correlation id is over the envelope's limit is never committed, and the stream goes on",
          "[hardening][poison]") {
  Pair p;
  // 2,000 bytes pass the door (a payload string may hold 64 KiB) but not an envelope's
  // 1,024 per string: committed, sub1 would refuse it at every replay and stall.
  REQUIRE(p.client->send("pub", Emit{1, std::string(2000, 'k')}));
  REQUIRE(eventually([&] { return p.letters("pub")["count"] == 1; }));
  auto letter = p.letters("pub")["letters"][0];
  CHECK(letter["type"] == "Emit");
  CHECK_THAT(letter["reason"].get<std::string>(),
             Catch::Contains("pub emits Ping whose envelope every peer would refuse") &&
                 Catch::Contains("its correlationid of 2000 bytes is over the limit of 1024 bytes per string"));
  CHECK(json_query(*p.client, "pub", "$health")["head"] == 0);  // nothing committed
  CHECK(json_query(*p.client, "pub", "$metrics")["oversized_refused"] == 1);
  // A sequenced command of sub1's with that correlation is refused the same way.
  REQUIRE(p.client->send("sub1", Emit{1, std::string(2000, 'k')}));
  REQUIRE(eventually([&] { return p.letters("sub1")["count"] == 1; }));
  CHECK_THAT(p.letters("sub1")["letters"][0]["reason"].get<std::string>(),
             Catch::Contains("sub1 emits Emit whose envelope every peer would refuse"));
  // The client refuses to send such a command itself, naming the limit.
  auto refused = p.client->send("pub", Emit{1, ""}, std::string(1500, 'k'));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == troupe::Rejection::Code::too_large);
  CHECK_THAT(refused.error().message(), Catch::Contains("correlationid of 1500 bytes"));
  REQUIRE(p.client->send("pub", Emit{10, "fine"}));
  REQUIRE(eventually([&] { return applied(*p.client, "sub1") == 1; }));
  auto health = json_query(*p.client, "sub1", "$health");
  CHECK(health["state"] == "ready");
  CHECK(health["upstreams"][0]["lag"] == 0);
}

TEST_CASE("a payload field over max_field_bytes is refused at the door, naming the limit",
          "[hardening][poison]") {
  Pair p("max_field_bytes = 1000\n[limits.Ping]\nmax_field_bytes = 100000\n");
  troupe::Envelope env = troupe::make_envelope("test", "Emit", troupe::Kind::command);
  zmq::socket_t push(p.ctx, zmq::socket_type::push);
  push.connect(p.pub->bound().commands);
  send_frames(push, {troupe::codec::encode_envelope(env), troupe::codec::encode(Emit{1, std::string(5000, 'n')})});
  REQUIRE(eventually([&] { return p.letters("pub")["count"] == 1; }));
  CHECK_THAT(p.letters("pub")["letters"][0]["reason"].get<std::string>(),
             Catch::Contains("a string is longer than 1000 bytes"));
  // A type with a limit of its own: a Ping of 5,000 bytes passes sub1's door.
  REQUIRE(p.client->send("pub", Emit{5000, ""}));
  REQUIRE(eventually([&] { return applied(*p.client, "sub1") == 1; }));
  CHECK(p.letters("sub1")["count"] == 0);
}

TEST_CASE("a stream stuck on an event its sockets refuse is reported stalled and degraded",
          "[hardening][poison]") {
  TempDir dir;
  zmq::context_t ctx;
  // The publisher allows 4 MiB messages, the subscriber only 64 KiB: every delivery of
  // the big event fails on the subscriber's side, live and through replay.
  auto big = topology("ipc", dir.str(), 1, "durable", "max_message_bytes = 4194304\nmax_field_bytes = 4194304\n");
  auto small = topology("ipc", dir.str(), 1, "durable", "max_message_bytes = 65536\n");
  Node pub(big, "pub", on(ctx));
  pub.on_command<Emit>([](const Emit& e, troupe::Context& c) { c.emit(Ping{e.count, std::string(e.count, 'x')}); });
  Node sub(small, "sub1", on(ctx));
  std::atomic<int> pings{0};
  sub.on<Ping>([&](const Ping&, troupe::Context&) { ++pings; });
  Running rp(pub), rs(sub);
  Client c(big, "test", &ctx);
  REQUIRE(c.send("pub", Emit{10, ""}));
  REQUIRE(eventually([&] { return pings == 1; }));
  REQUIRE(c.send("pub", Emit{200'000, ""}));
  REQUIRE(c.send("pub", Emit{10, ""}));
  bool stalled = eventually([&] { return json_query(c, "sub1", "$health")["upstreams"][0]["stalled"] == true; },
                            std::chrono::seconds(30));
  INFO(json_query(c, "sub1", "$health").dump() << json_query(c, "sub1", "$metrics").dump());
  REQUIRE(stalled);
  auto health = json_query(c, "sub1", "$health");
  CHECK(health["state"] == "degraded");
  CHECK(health["upstreams"][0]["position"] == 1);
  CHECK(health["upstreams"][0]["lag"] == 2);
  CHECK(pings == 1);
}

TEST_CASE("a second Node of one service in the same process is told so", "[hardening]") {
  TempDir dir;
  zmq::context_t ctx;
  auto topo = topology("ipc", dir.str(), 1);
  Node first(topo, "pub", on(ctx));
  try {
    Node second(topo, "pub", on(ctx));
    FAIL("a second Node of pub was made");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("already has a Node in this process"));
  }
}

TEST_CASE("a peer cannot make a node hold subscriptions, frames or dead letters beyond its limits",
          "[hardening][resources]") {
  Pair p("max_dead_letters = 5\n");
  // Subscriptions that can match nothing pub sends are not kept (XPUB keeps a trie node
  // per byte of each one for as long as the peer stays).
  zmq::socket_t sub(p.ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::subscribe, std::string(40, 'z'));  // longer ones end the connection (maxmsgsize)
  sub.set(zmq::sockopt::subscribe, "Pin");  // a prefix of "Ping ": kept
  sub.connect(p.pub->bound().events);
  REQUIRE(eventually([&] { return json_query(*p.client, "pub", "$metrics")["subscriptions_ignored"] == 1; }));

  // One command of 100 frames of 64 KiB: kept as one letter of at most the limits.
  zmq::socket_t push(p.ctx, zmq::socket_type::push);
  push.connect(p.pub->bound().commands);
  std::vector<std::string> frames(100, std::string(65536, 'f'));
  send_frames(push, frames);
  REQUIRE(eventually([&] { return p.letters("pub")["count"] == 1; }));
  auto letter = p.letters("pub")["letters"][0];
  CHECK(letter["frames"].get<int>() <= 16);
  CHECK_THAT(letter["reason"].get<std::string>(), Catch::Contains("a message of 100 frames and 6553600 bytes"));

  // Dead letters past max_dead_letters: the oldest go, counted.
  for (int i = 0; i < 20; ++i) send_frames(push, {"junk " + std::to_string(i)});
  REQUIRE(eventually([&] { return json_query(*p.client, "pub", "$metrics")["dead_letters_evicted"] == 16; }));
  auto kept = p.letters("pub");
  CHECK(kept["count"] == 5);
  CHECK(kept["letters"][4]["reason"] == "expected 2 frames (envelope, payload), got 1");
}

TEST_CASE("under CURVE a forged command stream is refused and the real stream goes on",
          "[hardening][curve]") {
  TempDir dir;
  std::string keys = dir.str() + "/keys";
  for (const char* who : {"pub", "sub1", "cli", "mallory", "tap"}) {
    auto pair = troupe::keys::generate();
    REQUIRE(pair);
    REQUIRE(troupe::keys::write(keys, who, *pair));
  }
  auto text = topology_text("ipc", dir.str(), 1, "durable", "security = \"curve\"\nkeys_dir = \"" + keys + "\"\n") +
              "[clients.cli]\ncommands = [\"*\"]\nqueries = [\"*\"]\nevents = [\"*\"]\n\n"
              "[clients.mallory]\ncommands = [\"pub\"]\nqueries = [\"pub\"]\nevents = [\"pub\"]\n"
              "queries_per_second = 2\n\n[taps.tap]\n";
  auto topo = troupe::toml::parse_topology(text, "test.toml");
  REQUIRE(topo);
  zmq::context_t ctx;
  Node pub(*topo, "pub", on(ctx));
  Node sub(*topo, "sub1", on(ctx));
  install(pub);
  install(sub);
  Running rp(pub), rs(sub);
  Client c(*topo, "test", &ctx);

  // mallory numbers commands as if they came from sub1's outbox, and names cli too.
  zmq::socket_t push(ctx, zmq::socket_type::push);
  troupe::curve_client(push, *topo, "pub", "mallory");
  push.connect(pub.bound().commands);
  for (std::uint64_t i = 1; i <= 50; ++i) {
    auto env = troupe::make_envelope(i % 2 ? "sub1" : "cli", "Emit", troupe::Kind::command);
    if (i % 2) env.sequence = (i + 1) / 2;
    send_frames(push, {troupe::codec::encode_envelope(env), troupe::codec::encode(Emit{1, "forged"})});
  }
  REQUIRE(eventually([&] { return json_query(c, "pub", "$metrics")["auth_refused"]["source"] == 50; }));
  CHECK(applied(c, "pub") == 0);  // no forged Emit was applied
  auto letters = json_query(c, "pub", "$deadletters", troupe::codec::encode(troupe::builtin::DeadLettersRequest{}));
  CHECK_THAT(letters["letters"][0]["reason"].get<std::string>(),
             Catch::Contains("is not the sender's identity 'mallory'"));
  // sub1's real commands (1, 2, ...) are not taken for duplicates of the forged ones,
  // and its first command is no reason for a LOSS (the acks of a receiver that had not
  // seen it yet start at 0).
  REQUIRE(c.send("sub1", Emit{3, ""}));
  REQUIRE(eventually([&] { return applied(c, "sub1") == 3; }));
  CHECK(json_query(c, "sub1", "$health")["state"] == "ready");
  // A letter refused at the door is not applied by a retry either.
  troupe::builtin::DeadLettersRequest retry;
  retry.op = "retry";
  retry.id = letters["letters"][0]["id"].get<std::int64_t>();
  auto r = c.query_raw("pub", "$deadletters", troupe::codec::encode(retry));
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message(), Catch::Contains("was refused before any handler"));
  CHECK(applied(c, "pub") == 3);

  // mallory may read pub's events: "" gets it events, never mirrors.
  zmq::socket_t watch(ctx, zmq::socket_type::sub);
  troupe::curve_client(watch, *topo, "pub", "mallory");
  watch.set(zmq::sockopt::subscribe, "");
  watch.connect(pub.bound().events);
  REQUIRE(eventually([&] { return json_query(c, "pub", "$metrics")["auth_refused"]["tap"] == 1; }));
  REQUIRE(c.send("pub", Emit{1, ""}));
  std::vector<std::string> topics;
  REQUIRE(eventually([&] {
    std::vector<zmq::message_t> frames;
    while (zmq::recv_multipart(watch, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      topics.push_back(frames[0].to_string());
      frames.clear();
    }
    return std::find(topics.begin(), topics.end(), "Ping ") != topics.end();
  }));
  for (const auto& t : topics) CHECK(t.rfind("$tap", 0) != 0);

  // A refused "$tap " going away (libzmq's unsubscribe carries no User-Id) leaves the
  // real tap's count alone: the tap still gets mirrors.
  auto metrics = [&] { return json_query(c, "pub", "$metrics"); };
  zmq::socket_t tap(ctx, zmq::socket_type::sub);
  troupe::curve_client(tap, *topo, "pub", "tap");
  tap.set(zmq::sockopt::subscribe, "$tap ");
  tap.connect(pub.bound().events);
  REQUIRE(eventually([&] { return metrics()["taps"] == 1; }));
  auto gone_before = metrics()["socket_events"].value("disconnected", 0);
  {
    zmq::socket_t fake(ctx, zmq::socket_type::sub);
    fake.set(zmq::sockopt::linger, 0);
    troupe::curve_client(fake, *topo, "pub", "mallory");
    fake.set(zmq::sockopt::subscribe, "$tap ");
    fake.connect(pub.bound().events);
    REQUIRE(eventually([&] { return metrics()["auth_refused"]["tap"] == 2; }));
  }
  REQUIRE(eventually([&] { return metrics()["socket_events"].value("disconnected", 0) > gone_before; }));
  REQUIRE(eventually([&] { return metrics()["taps"] == 1; }));
  REQUIRE(c.send("pub", Emit{1, "mirrored"}));
  REQUIRE(eventually([&] {
    std::vector<zmq::message_t> frames;
    while (zmq::recv_multipart(tap, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      if (frames.size() == 4 && frames[3].to_string().find("mirrored") != std::string::npos) return true;
      frames.clear();
    }
    return false;
  }));

  // mallory may ask 2 queries a second: the third at once is refused, and the client
  // gets that answer (not a timeout).
  Client m(*topo, "mallory", &ctx);
  m.set_identity("mallory");
  int limited = 0;
  for (int i = 0; i < 6; ++i) {
    auto q = m.query("pub", GetApplied{}, std::chrono::milliseconds(2000));
    if (!q && q.error().message().find("rate limit: identity 'mallory' may ask 2 queries per second") != std::string::npos)
      ++limited;
  }
  CHECK(limited >= 3);
  CHECK(json_query(c, "pub", "$metrics")["rate_limited"]["queries"] == limited);
}

TEST_CASE("a service that reacts to a type it has no handler for fails at start, naming the topology line",
          "[hardening][contract]") {
  TempDir dir;
  zmq::context_t ctx;
  auto topo = topology("ipc", dir.str(), 1);
  Node sub(topo, "sub1", on(ctx));
  try {
    sub.run();
    FAIL("sub1 ran without a handler for Ping");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Catch::Matches("test\\.toml:\\d+: service 'sub1' reacts to pub/Ping but registered no "
                                        "handler for it \\(node\\.on<Ping>\\)"));
  }
}

TEST_CASE("a dead letter as large as the limit is shown cut to fit the reply, and says so", "[hardening][deadletters]") {
  TempDir dir;
  zmq::context_t ctx;
  // 200 kB messages: a reply has room for 200,000 - 65,536 bytes of frames, split evenly.
  auto topo = topology("ipc", dir.str(), 1, "durable", "max_message_bytes = 200000\nmax_field_bytes = 200000\n");
  Node pub(topo, "pub", on(ctx));
  Running rp(pub);
  Client c(topo, "test", &ctx);
  zmq::socket_t push(ctx, zmq::socket_type::push);
  push.connect(pub.bound().commands);
  auto env = troupe::make_envelope("test", "NoSuchCommand", troupe::Kind::command);
  const std::string payload = troupe::codec::encode(Emit{1, std::string(180'000, 'q')});
  send_frames(push, {troupe::codec::encode_envelope(env), payload});
  REQUIRE(eventually([&] { return pub.counters().dead_letters.load() == 1; }));
  auto list = c.query("pub", troupe::builtin::ListDeadLetters{});
  REQUIRE(list);
  REQUIRE(list->letters.size() == 1);
  CHECK(list->letters[0].frames == 2);
  auto shown = c.query("pub", troupe::builtin::ShowDeadLetter{"show", list->letters[0].id});
  REQUIRE(shown);
  REQUIRE(shown->raw);
  REQUIRE(shown->raw->size() == 2);
  CHECK(shown->truncated == std::optional<bool>(true));
  const std::size_t share = (200'000 - 65'536) / 2;
  CHECK(shown->raw->at(1).data == payload.substr(0, share));
  CHECK(troupe::codec::decode_envelope(shown->raw->at(0).data)->type == "NoSuchCommand");
}
