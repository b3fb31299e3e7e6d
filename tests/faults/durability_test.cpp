// No event lost: real processes killed with SIGKILL, real SQLite files, real sockets.
// The subscriber's check (count, order) lives in its own state and commits with its
// position, so "applied exactly once, in order" is what the assertions read back.
#include "../support/process.hpp"
#include "../support/test_mesh.hpp"

#include <troupe/runtime/client.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>

using namespace testmesh;
using testproc::Process;

namespace {

struct ProcessMesh {
  TempDir dir;
  std::string topo_file = dir.str() + "/test.toml";
  troupe::Topology topo;
  std::unique_ptr<troupe::Client> client;
  std::map<std::string, std::unique_ptr<Process>> procs;
  std::string binary = testproc::env_or("TROUPE_TEST_SERVICE", "build/tests/test_service");

  explicit ProcessMesh(int subscribers, const std::string& extra_mesh = "") {
    std::ofstream(topo_file) << topology_text("ipc", dir.str(), subscribers, "durable", extra_mesh);
    auto t = troupe::toml::load_topology(topo_file);
    REQUIRE(t);
    topo = *t;
    client = std::make_unique<troupe::Client>(topo, "test");
  }
  void start(const std::string& service, const std::string& hwm = "") {
    std::vector<std::string> argv{binary, topo_file, service};
    if (!hwm.empty()) argv.push_back(hwm);
    procs[service] = std::make_unique<Process>(argv, dir.str() + "/" + service + ".log");
    REQUIRE(eventually([&] { return client->query_raw(service, "$health", "\x80", std::chrono::milliseconds(200)).ok(); }));
  }
  // A clean stop (SIGTERM: the WAL is written into the database file) and a start.
  void restart(const std::string& service) {
    procs[service]->signal(SIGTERM);
    REQUIRE(procs[service]->wait_for(5000) == 0);
    start(service);
  }
  void kill9(const std::string& service) {
    procs[service]->signal(SIGKILL);
    procs[service]->wait();
    procs.erase(service);
  }
  Applied applied(const std::string& service) {
    auto r = client->query(service, GetApplied{}, std::chrono::milliseconds(500));
    return r ? *r : Applied{-1, -1, -1};
  }
  nlohmann::json json(const std::string& service, const std::string& type) {
    auto r = client->query_raw(service, type, "\x80");
    REQUIRE(r);
    return nlohmann::json::from_msgpack(r->payload);
  }
};

// Starts pub and `subscribers`, SIGKILLs pub while it handles 2,000 Pings' worth of Emit
// and starts it again: what it committed survived, the sequence goes on, and every
// subscriber applies it all, in order.
void publisher_killed_mid_stream(ProcessMesh& m, const std::vector<std::string>& subscribers) {
  m.start("pub");
  for (const auto& s : subscribers) m.start(s);
  for (int i = 0; i < 40; ++i) REQUIRE(m.client->send("pub", Emit{50, ""}));
  REQUIRE(eventually([&] { return m.applied("pub").count >= 500; }));
  m.kill9("pub");
  m.start("pub");
  auto committed = m.applied("pub").count;  // what survived the crash, all of it durable
  REQUIRE(committed >= 500);
  for (int i = 0; i < 10; ++i) REQUIRE(m.client->send("pub", Emit{50, ""}));
  REQUIRE(eventually([&] { return m.applied("pub").count == committed + 500; }));
  for (const auto& s : subscribers) {
    REQUIRE(eventually([&] { return m.applied(s).count == committed + 500; }, std::chrono::seconds(60)));
    CHECK(m.applied(s).out_of_order == 0);
  }
}

}  // namespace

TEST_CASE("a subscriber SIGKILLed mid-stream and restarted applies all 10,000 events once, in order",
          "[durability][faults][process]") {
  ProcessMesh m(1);
  m.start("pub");
  m.start("sub1");
  for (int i = 0; i < 100; ++i) REQUIRE(m.client->send("pub", Emit{100, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count >= 2000; }));
  m.kill9("sub1");
  auto mid = m.applied("pub").count;
  m.start("sub1");
  REQUIRE(eventually([&] { return m.applied("sub1").count == 10000; }, std::chrono::seconds(60)));
  auto a = m.applied("sub1");
  CHECK(a.out_of_order == 0);
  CHECK(a.last == 10000);
  INFO("publisher had committed " << mid << " when the subscriber was killed");
  // Nothing more arrives later: no duplicate was waiting.
  REQUIRE(m.client->send("pub", Emit{1, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 10001; }));
  CHECK(m.applied("sub1").out_of_order == 0);
}

TEST_CASE("a publisher SIGKILLed and restarted mid-stream loses nothing and continues its sequence",
          "[durability][faults][process]") {
  ProcessMesh m(2);
  publisher_killed_mid_stream(m, {"sub1", "sub2"});
}

TEST_CASE("a subscriber whose ZeroMQ queue overflows still applies every event, through replay",
          "[durability][faults][process]") {
  ProcessMesh m(1);
  m.start("pub", "10");   // high-water marks of 10 on both sides: ZeroMQ will drop
  m.start("sub1", "10");
  // First one event through, so sub1 follows the live stream (a subscriber still verifying
  // its publisher at start would take the whole burst by replay and see no gap).
  REQUIRE(m.client->send("pub", Emit{1, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 1; }, std::chrono::seconds(30)));
  for (int i = 0; i < 20; ++i) REQUIRE(m.client->send("pub", Emit{500, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 10001; }, std::chrono::seconds(60)));
  CHECK(m.applied("sub1").out_of_order == 0);
  auto metrics = m.json("sub1", "$metrics");
  CHECK(metrics["gaps_seen"].get<int>() > 0);
  CHECK(metrics["replays_requested"].get<int>() > 0);
  CHECK(metrics["gaps_repaired"].get<int>() > 0);
}

TEST_CASE("a command sent while its receiver is down takes effect exactly once after it starts",
          "[durability][faults][process]") {
  ProcessMesh m(1);
  m.start("sub1");  // pub is down
  for (int i = 0; i < 5; ++i) REQUIRE(m.client->send("sub1", Emit{10, ""}));  // sub1 forwards to pub
  REQUIRE(eventually([&] { return m.json("sub1", "$metrics")["types"]["Emit"]["handled"] == 5; }));
  m.start("pub");
  REQUIRE(eventually([&] { return m.applied("sub1").count == 50; }, std::chrono::seconds(30)));
  // Resends keep coming until pub's heartbeat acknowledges; none may double an effect.
  REQUIRE(eventually([&] {
    auto h = m.json("pub", "$metrics");
    return m.applied("pub").count == 50 && h["types"]["Emit"]["handled"] == 5;
  }));
  // Kill pub with the acks in flight, restart: resends are deduplicated by sequence.
  m.kill9("pub");
  m.start("pub");
  REQUIRE(m.client->send("sub1", Emit{1, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 51; }, std::chrono::seconds(30)));
  CHECK(m.applied("pub").count == 51);
  CHECK(m.applied("sub1").out_of_order == 0);
}

TEST_CASE("under a pipelined commit, SIGKILLs of a publisher and of a receiver with its acks in flight lose "
          "nothing and double nothing",
          "[durability][faults][process]") {
  ProcessMesh m(1, "synchronous = \"full\"\ncommit = \"pipelined\"");
  publisher_killed_mid_stream(m, {"sub1"});
  // Commands sub1 -> pub: pub killed with its acks (in its heartbeats) in flight.
  const auto before = m.applied("pub").count;
  for (int i = 0; i < 5; ++i) REQUIRE(m.client->send("sub1", Emit{10, ""}));
  REQUIRE(eventually([&] { return m.applied("pub").count == before + 50; }, std::chrono::seconds(30)));
  m.kill9("pub");
  m.start("pub");
  REQUIRE(m.client->send("sub1", Emit{1, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == before + 51; }, std::chrono::seconds(30)));
  CHECK(m.applied("pub").count == before + 51);
  CHECK(m.applied("sub1").out_of_order == 0);
  auto metrics = m.json("pub", "$metrics");
  CHECK(metrics["store_sync_us"]["count"].get<int>() > 0);  // it did pipeline
}

TEST_CASE("a subscriber that falls behind the publisher's retention gets a loud, specific error",
          "[durability][faults][process]") {
  ProcessMesh m(1, "retention_events = 100");
  m.start("pub");
  for (int i = 0; i < 10; ++i) REQUIRE(m.client->send("pub", Emit{50, ""}));
  REQUIRE(eventually([&] { return m.json("pub", "$health")["oldest"].get<int>() > 1; }));
  m.start("sub1");
  REQUIRE(eventually([&] { return m.json("sub1", "$health")["upstreams"][0]["behind_retention"] == true; }));
  auto health = m.json("sub1", "$health");
  CHECK(health["state"] == "degraded");
  CHECK(m.applied("sub1").count == 0);  // nothing applied out of order, nothing skipped silently
  CHECK_THAT(m.procs["sub1"]->output(), Catch::Contains("LOSS: pub no longer retains events 1.."));
}

TEST_CASE("a subscriber behind the retention of a restarted publisher is told it is behind retention",
          "[durability][faults][process]") {
  ProcessMesh m(1, "retention_events = 100");
  m.start("pub");
  m.start("sub1");
  REQUIRE(m.client->send("pub", Emit{10, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 10; }));
  m.kill9("sub1");
  for (int i = 0; i < 10; ++i) REQUIRE(m.client->send("pub", Emit{50, ""}));
  REQUIRE(eventually([&] { return m.json("pub", "$health")["oldest"].get<int>() > 12; }));
  m.restart("pub");  // a new epoch; the epochs of what it pruned are gone with the events
  m.start("sub1");
  REQUIRE(eventually([&] { return m.json("sub1", "$health")["upstreams"][0]["behind_retention"] == true; }));
  CHECK(m.json("sub1", "$health")["upstreams"][0]["head_regressed"] == false);
  CHECK_THAT(m.procs["sub1"]->output(), Catch::Contains("LOSS: pub no longer retains events 11.."));
}

TEST_CASE("a publisher whose store was replaced is reported loudly, not applied from scratch",
          "[durability][faults][process]") {
  ProcessMesh m(1);
  m.start("pub");
  m.start("sub1");
  REQUIRE(m.client->send("pub", Emit{50, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 50; }));
  m.kill9("sub1");  // the subscriber restarts too: what it knows of pub must be on disk
  m.kill9("pub");
  for (const char* f : {"pub.db", "pub.db-wal", "pub.db-shm"}) std::filesystem::remove(m.dir.path / f);
  m.start("pub");
  m.start("sub1");
  REQUIRE(m.client->send("pub", Emit{60, ""}));  // new sequence numbers 1..60 over old ones
  REQUIRE(eventually([&] { return m.json("sub1", "$health")["upstreams"][0]["head_regressed"] == true; }));
  CHECK(m.json("sub1", "$health")["state"] == "degraded");
  CHECK(m.applied("sub1").count == 50);  // nothing of the new stream applied as if it were the old one
  CHECK_THAT(m.procs["sub1"]->output(), Catch::Contains("LOSS: pub's store was replaced"));
}

TEST_CASE("a publisher that lost its last commits (a lost WAL tail) is reported, never followed",
          "[durability][faults][process]") {
  ProcessMesh m(1);
  m.start("pub");
  m.start("sub1");
  REQUIRE(m.client->send("pub", Emit{50, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 50; }));
  m.restart("pub");  // events 1..50 are in the database file for good
  REQUIRE(m.client->send("pub", Emit{50, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 100; }));
  m.kill9("sub1");
  m.kill9("pub");
  // 51..100 (applied by sub1) were only in the WAL.
  for (const char* f : {"pub.db-wal", "pub.db-shm"}) std::filesystem::remove(m.dir.path / f);
  m.start("pub");
  REQUIRE(m.json("pub", "$health")["head"] == 50);
  REQUIRE(m.client->send("pub", Emit{60, ""}));  // 51..110 again, other events under the same numbers
  REQUIRE(eventually([&] { return m.json("pub", "$health")["head"] == 110; }));
  m.start("sub1");
  REQUIRE(eventually([&] { return m.json("sub1", "$health")["upstreams"][0]["head_regressed"] == true; }));
  CHECK(m.json("sub1", "$health")["state"] == "degraded");
  CHECK(m.applied("sub1").count == 100);  // 101..110 of the new history are not taken for the old ones
  CHECK_THAT(m.procs["sub1"]->output(), Catch::Contains("LOSS: pub lost committed events"));
}

TEST_CASE("a sender that lost commands it had sent says so when the receiver's acks run ahead of it",
          "[durability][faults][process]") {
  ProcessMesh m(1);
  m.start("pub");
  m.start("sub1");
  REQUIRE(m.client->send("sub1", Emit{5, ""}));  // sub1 sends pub its command #1
  REQUIRE(eventually([&] { return m.applied("sub1").count == 5; }));
  CHECK(m.json("sub1", "$health")["state"] == "ready");  // a first ack is no loss
  m.restart("sub1");
  REQUIRE(m.client->send("sub1", Emit{5, ""}));  // #2 and #3, only in sub1's WAL
  REQUIRE(m.client->send("sub1", Emit{5, ""}));
  REQUIRE(eventually([&] { return m.applied("sub1").count == 15; }));
  m.kill9("sub1");
  for (const char* f : {"sub1.db-wal", "sub1.db-shm"}) std::filesystem::remove(m.dir.path / f);
  m.start("sub1");
  REQUIRE(eventually([&] { return m.json("sub1", "$health")["state"] == "degraded"; }));
  CHECK_THAT(m.procs["sub1"]->output(), Catch::Contains("LOSS: pub applied our commands up to #3"));
}

TEST_CASE("SIGTERM stops a service cleanly with exit 0", "[node][process]") {
  ProcessMesh m(1);
  m.start("pub");
  m.procs["pub"]->signal(SIGTERM);
  CHECK(m.procs["pub"]->wait_for(5000) == 0);
  CHECK_THAT(m.procs["pub"]->output(), Catch::Contains("pub stopping"));
}

TEST_CASE("a second instance of a service, or an address in use, is one clear line and exit 1",
          "[node][process]") {
  ProcessMesh m(1);
  m.start("pub");
  Process second({m.binary, m.topo_file, "pub"}, m.dir.str() + "/second.log");
  CHECK(second.wait_for(5000) == 1);
  CHECK_THAT(second.output(), Catch::Contains("service 'pub' is already running"));

  // Same tcp port, different state directories: the bind fails.
  TempDir other;
  std::string port_topo = other.str() + "/tcp.toml";
  std::string text = "[mesh]\nname = \"t\"\nstate_dir = \"" + other.str() + "/a\"\n"
                     "[services.pub]\nevents = \"tcp://127.0.0.1:47311\"\ncommands = \"tcp://127.0.0.1:47312\"\n"
                     "queries = \"tcp://127.0.0.1:47313\"\npublishes = [\"Ping\"]\naccepts = [\"Emit\"]\n"
                     "answers = [\"GetApplied\"]\n";
  std::ofstream(port_topo) << text;
  std::string port_topo_b = other.str() + "/tcp-b.toml";
  std::ofstream(port_topo_b) << std::string(text).replace(text.find("/a\""), 3, "/b\"");
  Process a({m.binary, port_topo, "pub"}, other.str() + "/a.log");
  troupe::Client c(*troupe::toml::load_topology(port_topo));
  REQUIRE(eventually([&] { return c.query_raw("pub", "$health", "\x80", std::chrono::milliseconds(200)).ok(); }));
  Process b({m.binary, port_topo_b, "pub"}, other.str() + "/b.log");
  CHECK(b.wait_for(5000) == 1);
  CHECK_THAT(b.output(), Catch::Contains("cannot bind events endpoint tcp://127.0.0.1:47311: Address already in use"));
  a.signal(SIGTERM);
  CHECK(a.wait_for(5000) == 0);
}
