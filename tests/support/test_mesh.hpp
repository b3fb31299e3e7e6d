// A tiny mesh for runtime tests: "pub" turns Emit commands into numbered Ping events;
// subscribers check every Ping arrives exactly once and in order, in their own state
// (so the check itself commits with the position: exactly-once in effect).
#pragma once

#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/node.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

namespace testmesh {

struct Ping {
  std::int64_t n = 0;
  std::string note;
  TROUPE_MESSAGE(Ping, n, note)
};

struct Emit {
  std::int64_t count = 1;
  std::string note;
  TROUPE_MESSAGE(Emit, count, note)
};

struct Applied {
  std::int64_t count = 0;
  std::int64_t last = 0;
  std::int64_t out_of_order = 0;
  TROUPE_MESSAGE(Applied, count, last, out_of_order)
};

struct GetApplied {
  using Reply = Applied;
  TROUPE_EMPTY_MESSAGE(GetApplied)
};

// Counter kept in the publisher's state: the next Ping number.
struct NextPing {
  std::int64_t next = 1;
  TROUPE_MESSAGE(NextPing, next)
};

// The topology: `transport` is "ipc", "tcp" or "inproc"; `subscribers` of them.
inline std::string topology_text(const std::string& transport, const std::string& state_dir,
                                 int subscribers = 2, const std::string& durability = "durable",
                                 const std::string& extra_mesh = "") {
  auto ep = [&](const std::string& service, const std::string& role) {
    if (transport == "tcp") return std::string("tcp://127.0.0.1:*");
    if (transport == "inproc") return "inproc://" + service + "." + role;
    return "ipc://{state_dir}/" + service + "." + role;
  };
  auto service = [&](const std::string& name) {
    return "[services." + name + "]\nevents = \"" + ep(name, "events") + "\"\ncommands = \"" +
           ep(name, "commands") + "\"\nqueries = \"" + ep(name, "queries") + "\"\n";
  };
  std::string t = "[mesh]\nname = \"test\"\nstate_dir = \"" + state_dir +
                  "\"\nheartbeat_ms = 100\ndurability = \"" + durability + "\"\n" +
                  // "normal" unless extra_mesh says otherwise (a pipelined commit needs "full")
                  (extra_mesh.find("synchronous") == std::string::npos ? "synchronous = \"normal\"\n" : "") +
                  extra_mesh + "\n\n";
  t += service("pub") + "publishes = [\"Ping\"]\naccepts = [\"Emit\"]\nanswers = [\"GetApplied\"]\n\n";
  for (int i = 1; i <= subscribers; ++i)
    t += service("sub" + std::to_string(i)) +
         "answers = [\"GetApplied\"]\naccepts = [\"Emit\"]\nreacts_to = { pub = [\"Ping\"] }\n"
         "sends = { pub = [\"Emit\"] }\n\n";
  return t;
}

inline troupe::Topology topology(const std::string& transport, const std::string& state_dir,
                                 int subscribers = 2, const std::string& durability = "durable",
                                 const std::string& extra_mesh = "") {
  auto t = troupe::toml::parse_topology(topology_text(transport, state_dir, subscribers, durability, extra_mesh),
                                        "test.toml");
  if (!t) throw std::runtime_error(t.error().message());
  return std::move(*t);
}

// Installs the handlers a service of the test mesh needs, by its role.
inline void install(troupe::Node& node) {
  if (node.name() == "pub") {
    node.on_command<Emit>([](const Emit& e, troupe::Context& ctx) {
      auto next = ctx.state().load<NextPing>("pub", "next").value_or(NextPing{});
      for (std::int64_t i = 0; i < e.count; ++i) ctx.emit(Ping{next.next++, e.note});
      ctx.state().save("pub", "next", next);
    });
    node.on_query<GetApplied>([](const GetApplied&, const troupe::QueryContext& ctx) {
      auto next = ctx.state().load<NextPing>("pub", "next").value_or(NextPing{});
      return Applied{next.next - 1, next.next - 1, 0};
    });
    return;
  }
  node.on<Ping>([](const Ping& p, troupe::Context& ctx) -> troupe::Result<void> {
    if (p.note == "poison")
      return troupe::reject(troupe::Rejection::Code::refused, "Ping", "poison pill " + std::to_string(p.n));
    auto a = ctx.state().load<Applied>("sub", "applied").value_or(Applied{});
    if (p.n != a.last + 1) ++a.out_of_order;
    a.last = p.n;
    ++a.count;
    ctx.state().save("sub", "applied", a);
    return {};
  });
  node.on_query<GetApplied>([](const GetApplied&, const troupe::QueryContext& ctx) {
    return ctx.state().load<Applied>("sub", "applied").value_or(Applied{});
  });
  // A subscriber forwards Emit to pub: a service-to-service command, resent until acked.
  node.sends<Emit>("pub");
  node.on_command<Emit>([](const Emit& e, troupe::Context& ctx) { ctx.send("pub", e); });
}

// Polls `cond` until it holds or `timeout` passes; never a fixed sleep.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

// A fresh directory under /tmp, removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "troupe-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

// A node running on its own thread; stopped and joined on destruction.
struct Running {
  troupe::Node& node;
  std::thread thread;
  explicit Running(troupe::Node& n) : node(n), thread([&n] { n.run(); }) {
    eventually([&] { return n.counters().running.load(); }, std::chrono::seconds(5));
  }
  ~Running() {
    node.stop();
    thread.join();
  }
};

}  // namespace testmesh
