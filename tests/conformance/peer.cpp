// conformance_peer: the service `peer` of the conformance suite's topology
// (tests/conformance/conformance.py writes it and drives this process from outside), on
// troupe::Node; tests/conformance/peer.py is the same peer on the Python one, with the
// same state layout (a row per ping and note, and a count per table), so bench/peer_bench.py
// compares the two doing the same work per event.
// A Note whose text is "refuse" is refused (a dead letter) after it was appended: the
// refusal must roll the append back.
//   conformance_peer --topology FILE --state-dir DIR
#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/node.hpp>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
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

// The rows of peer.py's layout: table "counts" holds how many rows a table has, and
// each row is its own key, numbered in the order appended.
struct Count {
  std::uint64_t value = 0;
  TROUPE_MESSAGE(Count, value)
};
struct PingRow {
  std::uint64_t n = 0;
  TROUPE_MESSAGE(PingRow, n)
};
struct NoteRow {
  std::string text;
  TROUPE_MESSAGE(NoteRow, text)
};

template <class Row>
void append(troupe::Context& ctx, std::string_view table, const Row& row) {
  auto count = ctx.state().load<Count>("counts", table).value_or(Count{});
  char key[24];
  std::snprintf(key, sizeof key, "%012llu", static_cast<unsigned long long>(count.value));
  ctx.state().save(table, key, row);
  ++count.value;
  ctx.state().save("counts", table, count);
}

void install(troupe::Handlers& node) {
  node.publishes<Pong>();
  node.on<Ping>([](const Ping& p, troupe::Context& ctx) {
    append(ctx, "pings", PingRow{p.n});
    ctx.emit(Pong{p.n, p.text});
  });
  node.on_command<Note>([](const Note& n, troupe::Context& ctx) -> troupe::Result<void> {
    append(ctx, "notes", NoteRow{n.text});  // first: the refusal must roll it back
    if (n.text == "refuse")
      return troupe::reject(troupe::Rejection::Code::refused, "Note", "refused: the peer refuses a Note 'refuse'");
    return {};
  });
  node.on_query<GetState>([](const GetState&, const troupe::QueryContext& ctx) {
    State s;
    ctx.state().for_each<PingRow>("pings", [&](std::string_view, const PingRow& r) { s.pings.push_back(r.n); });
    ctx.state().for_each<NoteRow>("notes", [&](std::string_view, const NoteRow& r) { s.notes.push_back(r.text); });
    return s;
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
