// The node over real ZeroMQ sockets on every transport: fan-out, commands, queries,
// late joiners, garbage on every endpoint.
#include "../support/failing_store.hpp"
#include "../support/node_checks.hpp"
#include "../support/test_mesh.hpp"

#include <troupe/adapters/sqlite/sqlite_store.hpp>

#include <troupe/adapters/json/contract.hpp>
#include <troupe/runtime/builtin.hpp>
#include <troupe/runtime/client.hpp>

#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

using namespace testmesh;
using troupe::Client;
using troupe::Node;
using troupe::NodeOptions;

namespace {

// Builds pub + n subscribers on `transport`, sharing one context (inproc needs it).
struct Mesh {
  TempDir dir;
  zmq::context_t ctx;
  troupe::Topology topo;
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<std::unique_ptr<Running>> running;
  std::unique_ptr<Client> client;

  Mesh(const std::string& transport, int subscribers, const std::string& durability = "durable")
      : topo(topology(transport, dir.str(), subscribers, durability)) {
    for (const auto& s : topo.services) nodes.push_back(make(s.name));
    // tcp://127.0.0.1:* — tell everyone the ports that were really bound.
    for (auto& n : nodes)
      for (auto& m : nodes) n->set_peer_endpoints(m->name(), m->bound());
    client = std::make_unique<Client>(topo, "test", &ctx);
    for (auto& m : nodes) client->set_endpoints(m->name(), m->bound());
  }
  std::unique_ptr<Node> make(const std::string& name, NodeOptions o = {}) {
    o.context = &ctx;
    auto n = std::make_unique<Node>(topo, name, o);
    install(*n);
    return n;
  }
  void start() {
    for (auto& n : nodes) running.push_back(std::make_unique<Running>(*n));
  }
  ~Mesh() {
    client.reset();
    running.clear();
    nodes.clear();
  }
};

}  // namespace

TEST_CASE("events fan out to two subscribers, commands and queries work, on every transport",
          "[node][integration]") {
  for (std::string transport : {"tcp", "ipc", "inproc"}) {
    DYNAMIC_SECTION("over " << transport) {
      Mesh m(transport, 2);
      m.start();
      // The publisher knows when its subscribers are attached: no sleep needed.
      REQUIRE(eventually([&] { return m.nodes[0]->counters().subscriptions.load() >= 2; }));
      for (int i = 0; i < 50; ++i) REQUIRE(m.client->send("pub", Emit{4, ""}));
      REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 200 && applied(*m.client, "sub2") == 200; }));
      auto a = m.client->query("sub1", GetApplied{});
      REQUIRE(a);
      CHECK(a->out_of_order == 0);
      CHECK(a->last == 200);
      // Each command reached the one PULL of pub exactly once: 50 commands, 200 events.
      CHECK(m.nodes[0]->counters().commands_applied.load() == 50);
      CHECK(applied(*m.client, "pub") == 200);
    }
  }
}

TEST_CASE("a subscriber that starts after its publisher receives every event without sleeping",
          "[node][integration][replay]") {
  Mesh m("ipc", 1);
  Running pub(*m.nodes[0]);
  REQUIRE(m.client->send("pub", Emit{25, ""}));
  REQUIRE(eventually([&] { return applied(*m.client, "pub") == 25; }));
  {
    Running sub(*m.nodes[1]);  // joins late: catches up from the publisher's outbox
    REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 25; }));
    REQUIRE(eventually([&] { return m.nodes[0]->counters().subscriptions.load() >= 1; }));
    REQUIRE(m.client->send("pub", Emit{25, ""}));
    REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 50; }));
    auto a = m.client->query("sub1", GetApplied{});
    REQUIRE(a);
    CHECK(a->out_of_order == 0);
  }
}

TEST_CASE("a query to a service that is not running times out with a clear error",
          "[node][integration]") {
  TempDir dir;
  auto topo = topology("ipc", dir.str(), 1);
  Client c(topo);
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.query("sub1", GetApplied{}, std::chrono::milliseconds(300));
  REQUIRE_FALSE(r);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
  CHECK_THAT(r.error().message(), Catch::StartsWith("sub1: no reply to GetApplied within 300 ms"));
  CHECK_THAT(r.error().message(), Catch::Contains("sub1.queries"));
}

TEST_CASE("garbage on every endpoint is rejected, kept, and the node keeps serving",
          "[node][integration][hostile]") {
  Mesh m("ipc", 1);
  m.start();
  auto& pub = *m.nodes[0];
  zmq::socket_t push(m.ctx, zmq::socket_type::push);
  push.connect(pub.bound().commands);
  zmq::socket_t dealer(m.ctx, zmq::socket_type::dealer);
  dealer.connect(pub.bound().queries);

  // Commands: one frame; garbage envelope; valid envelope with a wrong payload; unknown type.
  send_frames(push, {"just one frame"});
  send_frames(push, {"\xc1\xc1", "x"});
  auto env = troupe::make_envelope("mallory", "Emit", troupe::Kind::command);
  send_frames(push, {troupe::codec::encode_envelope(env), "\x81\xa5" "count\xa3two"});
  auto unknown = troupe::make_envelope("mallory", "DropTables", troupe::Kind::command);
  send_frames(push, {troupe::codec::encode_envelope(unknown), "\x80"});
  // Queries: garbage envelope (the node answers $error), and an unknown query.
  send_frames(dealer, {"garbage", "more garbage"});

  REQUIRE(eventually([&] { return pub.counters().dead_letters.load() >= 5; }));
  // Still serving: a valid command goes through and the subscriber sees its events.
  REQUIRE(m.client->send("pub", Emit{3, ""}));
  REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 3; }));

  // The garbage query got an error reply naming the problem.
  zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
  REQUIRE(eventually([&] { zmq::poll(&item, 1, std::chrono::milliseconds(10)); return (item.revents & ZMQ_POLLIN) != 0; }));
  std::vector<zmq::message_t> reply;
  REQUIRE(zmq::recv_multipart(dealer, std::back_inserter(reply)));
  REQUIRE(reply.size() == 2);
  auto renv = troupe::codec::decode_envelope(reply[0].to_string_view());
  REQUIRE(renv);
  CHECK(renv->type == "$error");

  auto health = json_query(*m.client, "pub", "$health");
  CHECK(health["dead_letters"].get<int>() == 5);
  CHECK(health["state"] == "ready");
  auto letters = m.client->query_raw("pub", "$deadletters",
                                     troupe::codec::encode(troupe::builtin::DeadLettersRequest{}));
  REQUIRE(letters);
  auto list = nlohmann::json::from_msgpack(letters->payload);
  REQUIRE(list["letters"].size() == 5);
  std::set<std::string> reasons;  // commands and queries interleave: compare as a set
  for (const auto& l : list["letters"]) reasons.insert(l["reason"].get<std::string>());
  CHECK(reasons == std::set<std::string>{
                       "expected 2 frames (envelope, payload), got 1",
                       "envelope (2 bytes): not msgpack (parse error at byte 0)",
                       "Emit (11 bytes): field 'count': expected integer, got string "
                       "(sent as schemaversion 1 by mallory; pub 0.1.0 reads schemaversion 1)",
                       "service 'pub' does not accept command 'DropTables'",
                       "envelope (7 bytes): 6 trailing bytes after the value",
                   });
  // The same, typed: list, show (with the frames as they came), retry.
  auto typed = m.client->query("pub", troupe::builtin::ListDeadLetters{});
  REQUIRE(typed);
  CHECK(typed->count == 5);
  REQUIRE(typed->letters.size() == 5);
  CHECK_FALSE(typed->letters[0].raw);
  auto drop = std::find_if(typed->letters.begin(), typed->letters.end(),
                           [](const auto& l) { return l.type == "DropTables"; });
  REQUIRE(drop != typed->letters.end());
  auto shown = m.client->query("pub", troupe::builtin::ShowDeadLetter{"show", drop->id});
  REQUIRE(shown);
  REQUIRE(shown->raw);
  CHECK(shown->raw->size() == shown->frames);
  CHECK(troupe::codec::decode_envelope(shown->raw->at(0).data)->type == "DropTables");
  CHECK_FALSE(shown->truncated);
  // Refused at the door: not retried, and the typed query says why.
  auto refused = m.client->query("pub", troupe::builtin::RetryDeadLetter{"retry", drop->id});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message().find("refused before any handler") != std::string::npos);
  // Accepted, then refused by the codec: retried, refused again, the same letter counts twice.
  auto emit = std::find_if(typed->letters.begin(), typed->letters.end(), [](const auto& l) { return l.type == "Emit"; });
  REQUIRE(emit != typed->letters.end());
  auto retried = m.client->query("pub", troupe::builtin::RetryDeadLetter{"retry", emit->id});
  REQUIRE(retried);
  CHECK(retried->id == emit->id);
  CHECK(retried->retried);
  CHECK_FALSE(retried->ok);
  CHECK(retried->attempts == 2);
}

TEST_CASE("a peer cannot grow a node's metrics or acknowledgements, nor detach its taps",
          "[node][integration][hostile]") {
  Mesh m("ipc", 1);
  m.start();
  auto& pub = *m.nodes[0];
  zmq::socket_t push(m.ctx, zmq::socket_type::push);
  push.connect(pub.bound().commands);
  // Twenty commands of types no service declares, and twenty numbered like a service's
  // outbox by senders the topology does not route to pub (the first in order, too).
  for (int i = 0; i < 20; ++i) {
    auto junk = troupe::make_envelope("mallory", "Junk" + std::to_string(i), troupe::Kind::command);
    send_frames(push, {troupe::codec::encode_envelope(junk), "\x80"});
    auto forged = troupe::make_envelope("forged-" + std::to_string(i), "Emit", troupe::Kind::command);
    forged.sequence = 1 + static_cast<std::uint64_t>(i);
    send_frames(push, {troupe::codec::encode_envelope(forged), troupe::codec::encode(Emit{1, ""})});
  }
  REQUIRE(eventually([&] { return pub.counters().dead_letters.load() == 40; }));
  CHECK(pub.counters().commands_applied.load() == 0);
  // sub1 is routed to pub: its numbered commands are applied and acknowledged.
  REQUIRE(m.client->send("sub1", Emit{2, ""}));
  REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 2; }));

  auto metrics = json_query(*m.client, "pub", "$metrics");
  for (const auto& [type, _] : metrics["types"].items()) CHECK(type.rfind("Junk", 0) != 0);
  CHECK(metrics["types"]["$unknown"]["rejected"] == 20);
  CHECK(metrics["types"]["Emit"]["rejected"] == 20);
  auto letters = m.client->query_raw("pub", "$deadletters",
                                     troupe::codec::encode(troupe::builtin::DeadLettersRequest{}));
  REQUIRE(letters);
  auto list = nlohmann::json::from_msgpack(letters->payload);
  CHECK(list["letters"][1]["reason"] ==
        "a sequenced command from 'forged-0', which the topology does not list as sending to 'pub'");

  zmq::socket_t beats(m.ctx, zmq::socket_type::sub);
  beats.set(zmq::sockopt::subscribe, "$heartbeat ");
  beats.connect(pub.bound().events);
  std::map<std::string, std::uint64_t> acks;
  REQUIRE(eventually([&] {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(beats, std::back_inserter(frames), zmq::recv_flags::dontwait)) return false;
    auto hb = troupe::codec::decode<troupe::builtin::Heartbeat>(frames.at(2).to_string_view());
    REQUIRE(hb);
    acks = hb->acks;
    return acks.count("sub1") == 1;
  }));
  CHECK(acks.size() == 1);

  // A real tap, then frames on the XPUB that are neither a subscription (1) nor an
  // unsubscription (0): the tap stays counted, and mirrors keep flowing to it.
  zmq::socket_t tap(m.ctx, zmq::socket_type::sub);
  tap.set(zmq::sockopt::subscribe, "$tap ");
  tap.connect(pub.bound().events);
  REQUIRE(eventually([&] { return pub.counters().taps.load() == 1; }));
  zmq::socket_t xsub(m.ctx, zmq::socket_type::xsub);
  xsub.connect(pub.bound().events);
  for (std::string frame : {std::string("\x02$tap "), std::string("\x7f$tap "), std::string("\x02$heartbeat "),
                            std::string("\x01$tap ")})
    REQUIRE(xsub.send(zmq::buffer(frame)));
  CHECK(eventually([&] { return pub.counters().taps.load() == 2; }, std::chrono::seconds(5)));
  CHECK(pub.counters().subscriptions.load() >= 1);
}

TEST_CASE("a forged publisher's garbage on a subscription is rejected and kept",
          "[node][integration][hostile]") {
  TempDir dir;
  zmq::context_t ctx;
  auto topo = topology("inproc", dir.str(), 1);
  // Stand in for pub with a raw XPUB that sends garbage, then a valid stream.
  zmq::socket_t fake(ctx, zmq::socket_type::xpub);
  fake.bind(topo.find("pub")->endpoints.events);
  zmq::socket_t fake_q(ctx, zmq::socket_type::router);
  fake_q.bind(topo.find("pub")->endpoints.queries);
  NodeOptions o;
  o.context = &ctx;
  Node sub(topo, "sub1", o);
  install(sub);
  Running r(sub);
  zmq::message_t subscription;
  REQUIRE(fake.recv(subscription));  // the node subscribed: it is attached
  auto send = [&](std::vector<std::string> frames) {
    std::vector<zmq::const_buffer> b;
    for (auto& f : frames) b.push_back(zmq::buffer(f));
    REQUIRE(zmq::send_multipart(fake, b));
  };
  send({"Ping ", "\xc1"});                        // two frames
  send({"Ping ", "not msgpack", "\x80"});         // garbage envelope
  auto wrong_source = troupe::make_envelope("mallory", "Ping", troupe::Kind::event);
  wrong_source.sequence = 1;
  send({"Ping ", troupe::codec::encode_envelope(wrong_source), troupe::codec::encode(Ping{1, ""})});
  REQUIRE(eventually([&] { return sub.counters().dead_letters.load() == 3; }));
  // A publisher says who it is before anything of it is applied.
  troupe::builtin::Heartbeat hb{"pub", "0193c8f2-0000-7000-8000-000000000001", "boot-1", 1, 1, true, {}, {}};
  send({"$heartbeat ", troupe::codec::encode_envelope(troupe::make_envelope("pub", "$heartbeat", troupe::Kind::event)),
        troupe::codec::encode(hb)});
  auto good = troupe::make_envelope("pub", "Ping", troupe::Kind::event);
  good.sequence = 1;
  send({"Ping ", troupe::codec::encode_envelope(good), troupe::codec::encode(Ping{1, ""})});
  REQUIRE(eventually([&] { return sub.counters().events_applied.load() == 1; }));
}

TEST_CASE("several nodes share one process and one context over inproc, each on its thread",
          "[node][integration]") {
  Mesh m("inproc", 3);
  m.start();
  REQUIRE(m.client->send("pub", Emit{100, ""}));
  REQUIRE(eventually([&] {
    return applied(*m.client, "sub1") == 100 && applied(*m.client, "sub2") == 100 &&
           applied(*m.client, "sub3") == 100;
  }));
}

TEST_CASE("$health, $metrics and $topology describe the node", "[node][integration]") {
  Mesh m("ipc", 1);
  m.start();
  REQUIRE(m.client->send("pub", Emit{10, ""}));
  REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 10; }));
  auto health = json_query(*m.client, "sub1", "$health");
  CHECK(health["service"] == "sub1");
  CHECK(health["version"] == std::string(troupe::kVersion));
  CHECK(health["incarnation"].get<std::string>().size() == 36);
  CHECK(health["state"] == "ready");
  CHECK(health["upstreams"][0]["publisher"] == "pub");
  CHECK(health["upstreams"][0]["position"] == 10);
  CHECK_FALSE(health.contains("store_error"));  // an optional field without a value is left out
  // The same, typed.
  auto typed = m.client->query("sub1", troupe::builtin::HealthQuery{});
  REQUIRE(typed);
  CHECK(typed->service == "sub1");
  CHECK(typed->state == "ready");
  CHECK_FALSE(typed->store_error);
  REQUIRE(typed->upstreams.size() == 1);
  CHECK(typed->upstreams[0].publisher == "pub");
  CHECK(typed->upstreams[0].position == 10);
  CHECK(typed->upstreams[0].lag == 0);
  CHECK_FALSE(typed->upstreams[0].stalled);
  auto metrics = json_query(*m.client, "sub1", "$metrics");
  CHECK(metrics["types"]["Ping"]["handled"] == 10);
  CHECK(metrics["types"]["Ping"]["latency_us"]["count"] == 10);
  CHECK(metrics["socket_events"]["accepted"].get<int>() >= 1);  // the test client, at least
  // The same, typed: the reply is made from the one Metrics struct the node counts in.
  auto typed_metrics = m.client->query("sub1", troupe::builtin::MetricsQuery{});
  REQUIRE(typed_metrics);
  CHECK(typed_metrics->service == "sub1");
  CHECK(typed_metrics->types.at("Ping").handled == 10);
  CHECK(typed_metrics->types.at("Ping").latency_us.count == 10);
  REQUIRE(typed_metrics->batch_size.buckets.size() == troupe::Histogram::kBounds.size());
  CHECK(std::get<std::string>(typed_metrics->batch_size.buckets.back().first) == "+Inf");
  CHECK(std::get<std::uint64_t>(typed_metrics->batch_size.buckets.front().first) == 10);
  CHECK(metrics["batch_size"]["buckets"].back()[0] == "+Inf");  // as the protocol always said
  // Where the time goes: every message received is queued, every batch commits and relays.
  CHECK(typed_metrics->queue_us.count >= 10);
  CHECK(typed_metrics->store_commit_us.count == typed_metrics->batch_size.count);
  CHECK(typed_metrics->relay_us.count == typed_metrics->batch_size.count);
  auto pub_metrics = json_query(*m.client, "pub", "$metrics");
  CHECK(pub_metrics["types"]["Ping"]["published"] == 10);
  CHECK(pub_metrics["types"]["Emit"]["handled"] == 1);
  auto topo = json_query(*m.client, "sub1", "$topology");
  CHECK(topo["reacts_to"]["pub"][0] == "Ping");
  CHECK(topo["mesh"] == "test");
  auto typed_topo = m.client->query("sub1", troupe::builtin::TopologyQuery{});
  REQUIRE(typed_topo);
  CHECK(typed_topo->reacts_to.at("pub") == std::vector<std::string>{"Ping"});
  CHECK(typed_topo->endpoints.at("events") == topo["endpoints"]["events"].get<std::string>());
  CHECK(typed_topo->heartbeat_ms == topo["heartbeat_ms"].get<std::uint64_t>());
}

namespace {
// Ping as a newer build of pub writes it: one more optional field, schema version 3.
struct PingV3 {
  std::int64_t n = 0;
  std::string note;
  std::optional<std::string> origin;
  static constexpr std::uint32_t kSchemaVersion = 3;
  static constexpr std::string_view kType = "Ping";
  static constexpr auto fields() {
    using Self = PingV3;
    return std::tuple{TROUPE_DETAIL_FIELD(n), TROUPE_DETAIL_FIELD(note), TROUPE_DETAIL_FIELD(origin)};
  }
};
}  // namespace

TEST_CASE("$schema answers what the node's build speaks; events carry their type's schemaversion",
          "[node][integration]") {
  Mesh m("inproc", 1);
  m.nodes[0].reset();  // pub, replaced by its newer build
  m.nodes[0] = std::make_unique<Node>(m.topo, "pub", [&] {
    NodeOptions o;
    o.context = &m.ctx;
    return o;
  }());
  Node& pub = *m.nodes[0];
  pub.publishes<PingV3>();
  pub.on_command<Emit>([](const Emit& e, troupe::Context& ctx) {
    for (std::int64_t i = 1; i <= e.count; ++i) ctx.emit(PingV3{i, e.note, "v3"});
  });
  m.start();
  REQUIRE(m.client->send("pub", Emit{3, ""}));
  REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 3; }));  // v1 reads v3

  auto replay = m.client->query_raw("pub", "$replay", troupe::codec::encode(troupe::builtin::ReplayRequest{1, 3, 10}));
  REQUIRE(replay);
  REQUIRE(replay->extra.size() == 6);
  auto env = troupe::codec::decode_envelope(replay->extra[0]);
  REQUIRE(env);
  CHECK(env->schemaversion == 3);

  auto answer = m.client->query("pub", troupe::builtin::SchemaQuery{});
  REQUIRE(answer);
  CHECK(answer->service == "pub");
  CHECK(answer->build == std::string(troupe::kVersion));
  auto pub_contract = troupe::json::parse_contract(answer->contract);
  CHECK(pub_contract.publishes == std::vector<std::string>{"Ping"});
  CHECK(pub_contract.accepts == std::vector<std::string>{"Emit"});
  CHECK(pub_contract.messages.at("Ping").version == 3);
  CHECK(pub_contract.messages.at("Ping").shape.properties.size() == 3);
  auto sub = m.client->query("sub1", troupe::builtin::SchemaQuery{});
  REQUIRE(sub);
  auto sub_contract = troupe::json::parse_contract(sub->contract);
  CHECK(sub_contract.reads == std::vector<std::string>{"Ping"});
  CHECK(sub_contract.messages.at("Ping").version == 1);
  CHECK(sub_contract.answers.at("GetApplied") == "Applied");
  CHECK(sub_contract.sends.at("pub") == std::vector<std::string>{"Emit"});
}

TEST_CASE("$seen says whether a one-shot command was applied or refused, and why", "[node][integration]") {
  Mesh m("inproc", 1);
  m.start();
  auto good = m.client->send_raw("pub", "Emit", troupe::codec::encode(Emit{1, ""}));
  auto bad = m.client->send_raw("pub", "Emit", troupe::codec::encode(Ping{1, "no count"}));
  REQUIRE(good);
  REQUIRE(bad);
  std::vector<troupe::builtin::SeenOutcome> out;
  REQUIRE(eventually([&] {
    auto o = m.client->outcomes("pub", {good->id, bad->id, "never-sent"});
    if (o) out = *o;
    return o && (*o)[0].state != "unseen" && (*o)[1].state != "unseen";
  }));
  CHECK(out[0].state == "applied");
  CHECK_FALSE(out[0].reason);
  CHECK(out[1].state == "refused");
  REQUIRE(out[1].reason);
  CHECK_THAT(*out[1].reason, Catch::Contains("missing field 'count'"));
  CHECK(out[2].state == "unseen");
  // send_confirmed reports the refusal as one, with the service's reason
  auto refused = m.client->send_confirmed("pub", "Emit", troupe::codec::encode(Ping{2, "again"}));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == troupe::Rejection::Code::refused);
  CHECK_THAT(refused.error().message(), Catch::Contains("refused: Emit") && Catch::Contains("missing field 'count'"));
  // A peer cannot make the node build a big answer: at most kMaxSeenIds ids a query.
  auto many = m.client->query("pub", troupe::builtin::SeenQuery{std::vector<std::string>(1001, bad->id)});
  REQUIRE_FALSE(many);
  CHECK_THAT(many.error().message(), Catch::Contains("1001 ids asked, at most 1000 per query"));
  // Both refusals are dead letters (the retry path that clears a refusal is the CLI's,
  // in the rolling-upgrade test).
  auto letters = m.client->query("pub", troupe::builtin::ListDeadLetters{});
  REQUIRE(letters);
  CHECK(letters->count == 2);
}

TEST_CASE("built-in queries take their documented defaults for absent fields", "[node][integration]") {
  Mesh m("inproc", 1);
  m.start();
  REQUIRE(m.client->send("pub", Emit{3, "c-1"}));
  REQUIRE(eventually([&] { return applied(*m.client, "sub1") == 3; }));
  auto empty = std::string(1, '\x80');  // {}
  auto replay = m.client->query_raw("pub", "$replay", empty);  // from 1, to the end, 512 at most
  REQUIRE(replay);
  CHECK(replay->extra.size() == 6);
  auto letters = m.client->query_raw("pub", "$deadletters", empty);  // op list
  REQUIRE(letters);
  CHECK(troupe::codec::decode<troupe::builtin::DeadLetterList>(letters->payload));
  auto trace = m.client->query_raw("pub", "$trace", troupe::codec::encode(troupe::builtin::SeenRequest{}));
  REQUIRE_FALSE(trace);  // correlationid has no default
  CHECK_THAT(trace.error().message(), Catch::Contains("missing field 'correlationid'"));
}

TEST_CASE("a node whose declared events differ from the topology's publishes refuses to start", "[node]") {
  TempDir dir;
  auto topo = topology("inproc", dir.str(), 1);
  zmq::context_t ctx;
  NodeOptions o;
  o.context = &ctx;
  Node pub(topo, "pub", o);
  pub.publishes<Ping, Emit>();
  CHECK_THROWS_WITH(pub.run(), "service 'pub' declares that it publishes [Ping, Emit], but its topology lists [Ping]");
  Node sub(topo, "sub1", o);
  sub.sends<Emit, Ping>("pub");
  CHECK_THROWS_WITH(sub.run(), "service 'sub1' declares that it sends [Emit to pub, Ping to pub], but its topology "
                               "lists [Emit to pub]");
}

TEST_CASE("a handler for something the topology does not declare is refused at start",
          "[node]") {
  TempDir dir;
  auto topo = topology("inproc", dir.str(), 1);
  zmq::context_t ctx;
  NodeOptions o;
  o.context = &ctx;
  Node sub(topo, "sub1", o);
  CHECK_THROWS_WITH(sub.on<Emit>([](const Emit&, troupe::Context&) {}),
                    "service 'sub1' handles event 'Emit', but its topology does not react to it");
  CHECK_THROWS_WITH(Node(topo, "nobody", o), Catch::Contains("service 'nobody' is not in topology"));
}

namespace {

// A node of the test mesh on a real SQLite file behind a store whose commits can be
// made to fail; with subscribers, pub runs beside it as usual (heartbeats and all).
struct FailingNode {
  TempDir dir;
  zmq::context_t ctx;
  troupe::Topology topo;
  std::shared_ptr<FailingStore> store;
  std::unique_ptr<Node> node, pub;
  std::unique_ptr<Running> running, pub_running;
  std::unique_ptr<Client> client;

  FailingNode(const std::string& name, int subscribers, troupe::Synchronous sync = troupe::Synchronous::normal,
              const std::string& extra_mesh = "")
      : topo(topology("ipc", dir.str(), subscribers, "durable", extra_mesh)) {
    store = std::make_shared<FailingStore>(
        std::make_shared<troupe::adapters::SqliteStore>(dir.str() + "/" + name + ".db", sync));
    NodeOptions o;
    o.context = &ctx;
    o.store = store;
    node = std::make_unique<Node>(topo, name, o);
    install(*node);
    if (name != "pub") {
      NodeOptions p;
      p.context = &ctx;
      pub = std::make_unique<Node>(topo, "pub", p);
      install(*pub);
      pub_running = std::make_unique<Running>(*pub);
    }
    running = std::make_unique<Running>(*node);
    client = std::make_unique<Client>(topo, "test", &ctx);
  }
  ~FailingNode() {
    client.reset();
    running.reset();
    pub_running.reset();
  }
  std::string state() { return json_query(*client, node->name(), "$health")["state"]; }
  std::int64_t received(const std::string& type) {
    return json_query(*client, node->name(), "$metrics")["types"][type].value("received", 0);
  }
};

}  // namespace

TEST_CASE("while its store cannot commit a node answers each query once, says why, and resumes",
          "[node][integration][faults]") {
  FailingNode f("pub", 0);
  auto& client = *f.client;
  auto& pub = *f.node;
  auto& store = f.store;
  REQUIRE(client.send_confirmed("pub", "Emit", troupe::codec::encode(Emit{2, ""}), ""));

  // A tap sees each query the node handles: once, even when it is answered again.
  zmq::socket_t tap(f.ctx, zmq::socket_type::sub);
  tap.set(zmq::sockopt::subscribe, "$tap ");
  tap.connect(pub.bound().events);
  REQUIRE(eventually([&] { return pub.counters().taps.load() == 1; }));
  auto answered = pub.counters().queries_answered.load();

  store->fail_commits = true;
  // Each batch now fails and is rolled back; its queries are answered outside it.
  auto first = client.query_raw("pub", "GetApplied", troupe::codec::encode(GetApplied{}));
  REQUIRE(first);
  CHECK(troupe::codec::decode<Applied>(first->payload)->count == 2);
  CHECK(store->failed.load() >= 1);
  // A query that is refused into dead letters is answered too, and kept once.
  auto bad = client.query_raw("pub", "GetApplied", std::string("\xc1"));
  CHECK_FALSE(bad);
  auto marker = client.query_raw("pub", "GetApplied", troupe::codec::encode(GetApplied{}));
  REQUIRE(marker);
  CHECK(pub.counters().queries_answered.load() == answered + 3);
  CHECK(pub.counters().dead_letters.load() == 1);
  // Mirrors leave in order: once the last query's mirror is here, a second copy of an
  // earlier one would have come before it.
  std::map<std::string, int> mirrored;  // mirror type + query id -> mirrors seen
  REQUIRE(eventually([&] {
    std::vector<zmq::message_t> frames;
    while (zmq::recv_multipart(tap, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      auto what = troupe::codec::decode_envelope(frames.at(1).to_string_view());
      auto original = troupe::codec::decode_envelope(frames.at(2).to_string_view());
      if (what && original) ++mirrored[what->type + " " + original->id];
      frames.clear();
    }
    return mirrored.count("$query " + marker->envelope.causationid) == 1;
  }));
  CHECK(mirrored["$query " + first->envelope.causationid] == 1);
  int deadletter_mirrors = 0;
  for (const auto& [key, n] : mirrored)
    if (key.rfind("$deadletter ", 0) == 0) deadletter_mirrors += n;
  CHECK(deadletter_mirrors == 1);
  auto metrics = json_query(client, "pub", "$metrics");
  CHECK(metrics["types"]["GetApplied"]["received"] == 3);
  CHECK(metrics["types"]["GetApplied"]["handled"] == 2);
  CHECK(metrics["dead_letters"] == 1);

  // A command is not applied while commits fail, and $health says why.
  REQUIRE(client.send("pub", Emit{3, ""}));
  REQUIRE(eventually([&] { return f.received("Emit") == 2; }));
  auto health = json_query(client, "pub", "$health");
  CHECK(health["state"] == "degraded");
  CHECK_THAT(health.value("store_error", ""), Catch::Contains("disk is full"));
  auto typed = client.query("pub", troupe::builtin::HealthQuery{});
  REQUIRE(typed);
  REQUIRE(typed->store_error);
  CHECK_THAT(*typed->store_error, Catch::Contains("disk is full"));
  CHECK(troupe::codec::decode<Applied>(client.query_raw("pub", "GetApplied", troupe::codec::encode(GetApplied{}))->payload)->count == 2);

  // Writes work again: the next command commits, and the node is ready.
  store->fail_commits = false;
  REQUIRE(client.send_confirmed("pub", "Emit", troupe::codec::encode(Emit{1, ""}), ""));
  CHECK(troupe::codec::decode<Applied>(client.query_raw("pub", "GetApplied", troupe::codec::encode(GetApplied{}))->payload)->count == 3);
  CHECK(f.state() == "ready");
}

TEST_CASE("a node whose store failed while it had nothing to write says ready again by itself",
          "[node][integration][faults]") {
  // sub1 reacts to pub: pub's heartbeats keep arriving, and they are no writes.
  FailingNode f("sub1", 1);
  REQUIRE(eventually([&] { return f.pub->counters().subscriptions.load() >= 1; }));  // sub1 hears pub
  f.store->fail_commits = true;
  REQUIRE(f.client->query_raw("sub1", "GetApplied", troupe::codec::encode(GetApplied{})));  // a batch fails
  REQUIRE(f.store->failed.load() >= 1);
  CHECK(f.state() == "degraded");
  // Nothing more is sent to it to write; once writes work, its own probe finds out.
  f.store->fail_commits = false;
  CHECK(eventually([&] { return f.state() == "ready"; }, std::chrono::seconds(5)));
  CHECK(f.store->probes.load() >= 1);
}

namespace {

// Lets held syncs go however the test ends (a failed REQUIRE included), before the node
// is stopped: its last act is to wait for them.
struct ReleaseSyncs {
  FailingStore& store;
  ~ReleaseSyncs() {
    store.fail_syncs = false;
    store.hold_syncs = false;
  }
};

// pub's heartbeats, as a subscriber reads them.
struct HeartbeatReader {
  zmq::socket_t sub;
  HeartbeatReader(zmq::context_t& ctx, const std::string& events) : sub(ctx, zmq::socket_type::sub) {
    sub.set(zmq::sockopt::subscribe, std::string(troupe::builtin::kHeartbeatTopic));
    sub.connect(events);
  }
  // The next heartbeat within two seconds.
  std::optional<troupe::builtin::Heartbeat> next() {
    std::vector<zmq::message_t> frames;
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(2000)) <= 0) return std::nullopt;
    if (!zmq::recv_multipart(sub, std::back_inserter(frames)) || frames.size() != 3) return std::nullopt;
    auto hb = troupe::codec::decode<troupe::builtin::Heartbeat>(frames[2].to_string_view());
    return hb ? std::optional(*hb) : std::nullopt;
  }
};

}  // namespace

TEST_CASE("a pipelined commit sends what a batch caused only once a sync made it durable",
          "[node][integration][faults]") {
  // pub on the gated store; sub1 forwards Emit commands to it (sequenced, acknowledged in
  // pub's heartbeats) and applies its Pings.
  FailingNode f("pub", 1, troupe::Synchronous::full, "synchronous = \"full\"\ncommit = \"pipelined\"");
  auto& store = *f.store;
  auto& pub = *f.node;
  NodeOptions o;
  o.context = &f.ctx;
  Node sub1(f.topo, "sub1", o);
  install(sub1);
  Running sub1_running(sub1);
  ReleaseSyncs release{store};
  HeartbeatReader heartbeats(f.ctx, pub.bound().events);
  auto ack = [](const troupe::builtin::Heartbeat& hb) { return hb.acks.count("sub1") ? hb.acks.at("sub1") : 0; };

  REQUIRE(f.client->send_confirmed("sub1", "Emit", troupe::codec::encode(Emit{2, ""}), ""));
  REQUIRE(eventually([&] { return pub.counters().published.load() == 2; }));
  REQUIRE(store.syncs_done.load() >= 1);  // the fsync is the syncer's, not the commit's
  REQUIRE(eventually([&] {
    auto hb = heartbeats.next();
    return hb && hb->head == 2 && ack(*hb) == 1;
  }));

  store.hold_syncs = true;
  const int commits = store.commits.load(), syncs = store.syncs_started.load();
  REQUIRE(f.client->send("sub1", Emit{1, ""}));  // command 2 from sub1: one Ping
  REQUIRE(eventually([&] { return store.commits.load() > commits && store.syncs_started.load() > syncs; }));
  REQUIRE(eventually([&] { return pub.counters().commands_applied.load() == 2; }));
  // A second batch committed after the first one's relay had its turn: the event the
  // first one emitted is still held, and so are the second one's.
  const int after_first = store.commits.load();
  REQUIRE(f.client->send("pub", Emit{3, ""}));
  REQUIRE(eventually([&] { return store.commits.load() > after_first; }));
  CHECK(pub.counters().published.load() == 2);
  // Heartbeats made after those commits still say what is durable: head 2, command 1
  // acknowledged (an ack sub1 acted on could be lost with the page cache).
  for (int i = 0; i < 2; ++i) {
    auto hb = heartbeats.next();
    REQUIRE(hb);
    CHECK(hb->head == 2);
    CHECK(ack(*hb) == 1);
  }

  store.hold_syncs = false;
  REQUIRE(eventually([&] { return pub.counters().published.load() == 6; }));
  REQUIRE(eventually([&] {
    auto hb = heartbeats.next();
    return hb && hb->head == 6 && ack(*hb) == 2;
  }));
  REQUIRE(eventually([&] {
    return troupe::codec::decode<Applied>(
               f.client->query_raw("sub1", "GetApplied", troupe::codec::encode(GetApplied{}))->payload)
               ->count == 6;
  }));
  auto metrics = json_query(*f.client, "pub", "$metrics");
  CHECK(metrics["store_sync_us"]["count"].get<int>() >= 2);
}

TEST_CASE("a node whose fsync fails stops, loudly, without sending what the unsynced batches caused",
          "[node][integration][faults]") {
  TempDir dir;
  zmq::context_t ctx;
  auto topo = topology("ipc", dir.str(), 0, "durable", "synchronous = \"full\"\ncommit = \"pipelined\"");
  auto store = std::make_shared<FailingStore>(
      std::make_shared<troupe::adapters::SqliteStore>(dir.str() + "/pub.db", troupe::Synchronous::full));
  NodeOptions o;
  o.context = &ctx;
  o.store = store;
  Node pub(topo, "pub", o);
  install(pub);
  std::string error;
  std::thread running([&] {
    try {
      pub.run();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  struct Join {  // however the test ends
    Node& node;
    std::thread& thread;
    FailingStore& store;
    ~Join() {
      store.hold_syncs = false;
      node.stop();
      if (thread.joinable()) thread.join();
    }
  } join{pub, running, *store};
  Client client(topo, "test", &ctx);
  REQUIRE(client.send_confirmed("pub", "Emit", troupe::codec::encode(Emit{1, ""}), ""));
  store->hold_syncs = true;
  store->fail_syncs = true;
  const int syncs = store->syncs_started.load();
  REQUIRE(client.send("pub", Emit{2, ""}));
  REQUIRE(eventually([&] { return store->syncs_started.load() > syncs; }));
  store->hold_syncs = false;
  bool ended = eventually([&] { return !pub.counters().running.load(); }, std::chrono::seconds(10));
  if (!ended) pub.stop();
  running.join();
  CHECK(ended);
  CHECK_THAT(error, Catch::Contains("LOSS risk") && Catch::Contains("Input/output error"));
  CHECK(pub.counters().published.load() == 1);  // the two Pings of the unsynced batch never left
}

TEST_CASE("a commit is fsynced inline unless the topology asks for it pipelined", "[node][integration]") {
  FailingNode f("pub", 0, troupe::Synchronous::full);
  REQUIRE(f.client->send_confirmed("pub", "Emit", troupe::codec::encode(Emit{1, ""}), ""));
  REQUIRE(eventually([&] { return f.node->counters().published.load() == 1; }));
  CHECK(f.store->syncs_started.load() == 0);
  CHECK(json_query(*f.client, "pub", "$metrics")["store_sync_us"]["count"] == 0);
}
