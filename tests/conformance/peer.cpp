// conformance_peer: the service `peer` of the conformance suite's topology
// (tests/conformance/conformance.py writes it and drives this process from outside).
//   reacts to: source/Ping   emits:   Pong (same n and text, caused by the Ping)
//   accepts:   Note          answers: GetState (the pings and notes, in the order applied)
// A Note whose text is "refuse" is refused (a dead letter): its change is rolled back.
//   conformance_peer --topology FILE --state-dir DIR
#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/node.hpp>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

namespace conformance {

struct Ping {
  std::uint64_t n = 0;
  std::string text;
  TROUPE_MESSAGE(Ping, n, text)
};

struct Pong {
  std::uint64_t n = 0;
  std::string text;
  TROUPE_MESSAGE(Pong, n, text)
};

struct Note {
  std::string text;
  TROUPE_MESSAGE(Note, text)
};

struct State {
  std::vector<std::uint64_t> pings;
  std::vector<std::string> notes;
  TROUPE_MESSAGE(State, pings, notes)
};

struct GetState {
  using Reply = State;
  TROUPE_EMPTY_MESSAGE(GetState)
};

constexpr std::string_view kTable = "conformance", kKey = "state";

void install(troupe::Handlers& node) {
  node.publishes<Pong>();
  node.on<Ping>([](const Ping& p, troupe::Context& ctx) {
    auto s = ctx.state().load<State>(kTable, kKey).value_or(State{});
    s.pings.push_back(p.n);
    ctx.state().save(kTable, kKey, s);
    ctx.emit(Pong{p.n, p.text});
  });
  node.on_command<Note>([](const Note& n, troupe::Context& ctx) -> troupe::Result<void> {
    auto s = ctx.state().load<State>(kTable, kKey).value_or(State{});
    s.notes.push_back(n.text);
    ctx.state().save(kTable, kKey, s);  // written first: a refusal must roll it back
    if (n.text == "refuse")
      return troupe::reject(troupe::Rejection::Code::refused, "Note", "refused: the peer refuses a Note 'refuse'");
    return {};
  });
  node.on_query<GetState>([](const GetState&, const troupe::QueryContext& ctx) {
    return ctx.state().load<State>(kTable, kKey).value_or(State{});
  });
}

}  // namespace conformance

int main(int argc, char** argv) {
  CLI::App app{"conformance_peer: the service 'peer' of the conformance suite"};
  std::string topology_file, state_dir;
  app.add_option("--topology", topology_file, "topology file")->required();
  app.add_option("--state-dir", state_dir, "override the topology's state directory");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 64;
  }
  troupe::toml::LoadOptions options;
  if (!state_dir.empty()) options.state_dir = state_dir;
  auto topology = troupe::toml::load_topology(topology_file, options);
  if (!topology) {
    std::cerr << "conformance_peer: " << topology.error().message() << '\n';
    return 2;
  }
  try {
    troupe::Node node(std::move(*topology), "peer");
    conformance::install(node);
    return troupe::run_until_signal(node);
  } catch (const std::exception& e) {
    std::cerr << "conformance_peer: " << e.what() << '\n';
    return 1;
  }
}
