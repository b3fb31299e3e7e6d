// Writes the generated seed corpus of the codec fuzzers from the codec itself:
// envelopes of every kind (and the worked example of docs/protocol.md) under
// DIR/envelope, one payload of each fuzzed message type under DIR/payload.
//   make_corpus fuzz/corpus
// The output is deterministic, so regenerating it changes nothing unless the codec did.
#include <troupe/adapters/msgpack/codec.hpp>

#include "fuzzed_messages.hpp"
#include "protocol_example.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

using namespace troupe;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

Envelope fixed(std::string source, std::string type, Kind kind) {
  Envelope e;
  e.id = "0193c8f2-7a4b-7c3d-9e1f-0a1b2c3d4e5f";
  e.source = std::move(source);
  e.type = std::move(type);
  e.time = "2026-11-27T18:00:00.000000Z";
  e.kind = kind;
  return e;
}

// One sample of each fuzzed message type, with every field set.
auto samples() {
  using namespace shop;
  OrderView view{"order-1", "alice", "KB-101", 2, 9800, "placed", ""};
  builtin::Heartbeat hb{"orders", "inc-1", "boot-1", 42, 1, true, {{"inventory", 7}, {"load", 3}}};
  fuzz::Everything everything{true, -8, 16, -32, 1ull << 40, 0.25, "text", -1,
                              {{"KB-101", 2}, {"MS-202", 1}}, {{"red", {"a", std::nullopt}}},
                              fuzz::Line{"CB-404", 9}, {true, false}};
  return std::tuple{
      PlaceOrder{"order-1", "alice", "KB-101", 2},
      CancelOrder{"order-1", "changed my mind"},
      OrderPlaced{"order-1", "alice", "KB-101", 2, 9800},
      OrderList{{view, view}},
      ListOrders{"order-0", 100},
      StockReport{{{"KB-101", 100, 98, 2, 0}}, {{"order-1", "KB-101", 2, "held"}}},
      GetStock{std::nullopt, 10},
      BalanceReport{{{"alice", 1000, 900, 100, 0}}, {{"order-1", "alice", 100, 0, false}}},
      ShipmentList{{{"order-1", "ship-1", "scheduled"}}},
      NotificationList{{{"order-1:confirmed", "order-1", "alice", "your order is confirmed"}}},
      hb,
      builtin::ReplayRequest{5, 10, 512},
      builtin::ReplayReply{42, 1, 2, "inc-1", "boot-1", true},
      builtin::Error{"service 'orders' does not answer query 'GetStok'"},
      builtin::DeadLettersRequest{"show", 3, 10},
      builtin::TraceRequest{"order-1", 100},
      builtin::SeenRequest{{"0193c8f2-7a4b-7c3d-9e1f-0a1b2c3d4e5f"}},
      builtin::SeenReply{{true, false}},
      everything};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus DIR\n";
    return 64;
  }
  fs::path dir = argv[1];

  write(dir / "envelope" / "worked-example", codec::encode_envelope(example::envelope()));
  for (Kind kind : {Kind::event, Kind::command, Kind::query, Kind::reply})
    write(dir / "envelope" / std::string(to_string(kind)),
          codec::encode_envelope(fixed("orders", "OrderPlaced", kind)));
  Envelope full = example::envelope();
  full.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  full.schemaversion = 3;
  full.sequence = 1ull << 40;
  write(dir / "envelope" / "every-attribute", codec::encode_envelope(full));
  write(dir / "envelope" / "heartbeat",
        codec::encode_envelope(fixed("orders", std::string(builtin::Heartbeat::kType), Kind::event)));
  write(dir / "envelope" / "replay-query",
        codec::encode_envelope(fixed("inventory", std::string(builtin::kReplay), Kind::query)));

  write(dir / "payload" / "worked-example", codec::encode(example::payload()));
  // Named "NN-Type" ($replay names a request and a reply): "03-OrderPlaced", "12-replay".
  int n = 0;
  auto name = [&](std::string_view type) {
    if (type.front() == '$') type.remove_prefix(1);
    std::string index = std::to_string(++n);
    return std::string(2 - std::min<std::size_t>(2, index.size()), '0') + index + "-" + std::string(type);
  };
  std::apply([&](const auto&... message) {
    (write(dir / "payload" / name(std::remove_cvref_t<decltype(message)>::kType), codec::encode(message)), ...);
  }, samples());
  std::cout << "make_corpus: wrote " << dir.string() << "/envelope and " << dir.string() << "/payload\n";
  return 0;
}
