// Envelopes on the wire: round trips, forward compatibility, rejections by name,
// and the worked example of docs/protocol.md checked byte for byte.
#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/domain/id.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "protocol_example.hpp"

using namespace troupe;
using codec::decode_envelope;
using codec::encode_envelope;
using Code = Rejection::Code;

namespace {

std::string hex(std::string_view bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

// A msgpack map from already-encoded key/value pairs.
std::string map_of(std::initializer_list<std::pair<std::string_view, std::string>> kvs) {
  std::string out(1, static_cast<char>(0x80 | kvs.size()));
  for (auto& [k, v] : kvs) {
    out.push_back(static_cast<char>(0xa0 | k.size()));
    out += k;
    out += v;
  }
  return out;
}
std::string s(std::string_view v) { return std::string(1, static_cast<char>(0xa0 | v.size())) + std::string(v); }

}  // namespace

TEST_CASE("an envelope survives a round trip with every attribute set", "[codec][envelope]") {
  Envelope e = make_envelope("orders", "OrderPlaced", Kind::event);
  e.sequence = 1ull << 40;
  e.correlationid = "order-1";
  e.causationid = new_id();
  e.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  e.schemaversion = 3;
  auto back = decode_envelope(encode_envelope(e));
  REQUIRE(back);
  CHECK(*back == e);
}

TEST_CASE("each kind survives a round trip, with optional keys left out", "[codec][envelope]") {
  for (Kind k : {Kind::event, Kind::command, Kind::query, Kind::reply}) {
    Envelope e = make_envelope("cli", "Anything", k);
    std::string bytes = encode_envelope(e);
    CHECK(bytes.find("sequence") == std::string::npos);
    CHECK(bytes.find("correlationid") == std::string::npos);
    auto back = decode_envelope(bytes);
    REQUIRE(back);
    CHECK(*back == e);
  }
}

TEST_CASE("the worked example of docs/protocol.md is what the codec writes", "[codec][protocol]") {
  const char* path = std::getenv("TROUPE_PROTOCOL_MD");
  REQUIRE(path != nullptr);
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc = ss.str();

  auto block = [&](std::string_view marker) {
    auto at = doc.find(marker);
    REQUIRE(at != std::string::npos);
    auto open = doc.find("```", at);
    auto body = doc.find('\n', open) + 1;
    auto close = doc.find("```", body);
    std::string digits;
    for (char c : doc.substr(body, close - body))
      if (std::isxdigit(static_cast<unsigned char>(c))) digits.push_back(c);
    return digits;
  };
  CHECK(block("<!-- example:envelope -->") == hex(encode_envelope(example::envelope())));
  CHECK(block("<!-- example:payload -->") == hex(codec::encode(example::payload())));
}

TEST_CASE("unknown envelope keys are ignored", "[codec][envelope]") {
  auto r = decode_envelope(map_of({{"specversion", s("1.0")},
                                   {"id", s("x")},
                                   {"source", s("py")},
                                   {"type", s("Ping")},
                                   {"kind", s("query")},
                                   {"partition", s("eu-1")}}));
  REQUIRE(r);
  CHECK(r->kind == Kind::query);
  CHECK(r->datacontenttype == "application/msgpack");
}

TEST_CASE("a missing required key is rejected by name", "[codec][envelope]") {
  auto r = decode_envelope(map_of({{"specversion", s("1.0")}, {"id", s("x")}, {"source", s("py")},
                                   {"kind", s("event")}}));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Code::missing);
  CHECK(r.error().message() == "envelope (43 bytes): missing required key 'type'");
}

TEST_CASE("bad envelope values are rejected with the key and what was expected",
          "[codec][envelope]") {
  SECTION("wrong type") {
    auto r = decode_envelope(map_of({{"specversion", s("1.0")}, {"id", s("x")}, {"source", s("a")},
                                     {"type", "\x07"}, {"kind", s("event")}}));
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "key 'type': expected string, got integer");
  }
  SECTION("unknown kind") {
    auto r = decode_envelope(map_of({{"specversion", s("1.0")}, {"id", s("x")}, {"source", s("a")},
                                     {"type", s("T")}, {"kind", s("gossip")}}));
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "key 'kind': expected event, command, query or reply, got 'gossip'");
  }
  SECTION("a future major spec version") {
    auto r = decode_envelope(map_of({{"specversion", s("2.0")}, {"id", s("x")}, {"source", s("a")},
                                     {"type", s("T")}, {"kind", s("event")}}));
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "key 'specversion': expected 1.x, got '2.0'");
  }
  SECTION("a negative sequence") {
    auto r = decode_envelope(map_of({{"specversion", s("1.0")}, {"id", s("x")}, {"source", s("a")},
                                     {"type", s("T")}, {"kind", s("event")}, {"sequence", "\xff"}}));
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "key 'sequence': expected unsigned integer, got integer");
  }
}

TEST_CASE("hostile envelopes are bounded", "[codec][envelope][hostile]") {
  SECTION("an envelope larger than 4 KiB") {
    auto r = decode_envelope(std::string(5000, '\xc0'));
    REQUIRE_FALSE(r);
    CHECK(r.error().message() == "envelope (5000 bytes): larger than the limit of 4096 bytes");
  }
  SECTION("an envelope nested like a payload") {
    auto r = decode_envelope(std::string("\x81\xa1x\x91\x91\x91\x01", 8));
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "nested deeper than 2 levels");
  }
  SECTION("not a map") {
    auto r = decode_envelope(std::string("\xa3\x61\x62\x63"));
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "expected a map, got string");
  }
  SECTION("truncated") {
    std::string bytes = encode_envelope(make_envelope("a", "T", Kind::event));
    auto r = decode_envelope(bytes.substr(0, bytes.size() / 2));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::malformed);
  }
}

TEST_CASE("the direct envelope reader and the general decoder agree on every input",
          "[codec][envelope][differential]") {
  // Valid envelopes as troupe writes them, then each prefix and each single-byte change
  // of them: both decoders must accept the same, read the same, refuse the same.
  auto agree = [](const std::string& bytes) {
    auto fast = decode_envelope(bytes);
    auto tree = codec::detail::decode_envelope_tree(bytes);
    REQUIRE(bool(fast) == bool(tree));
    if (fast) {
      CHECK(*fast == *tree);
    } else {
      CHECK(fast.error().message() == tree.error().message());
    }
  };
  Envelope full = make_envelope("orders", "OrderPlaced", Kind::event);
  full.sequence = 4'000'000'000ULL;
  full.correlationid = "order-1";
  full.causationid = new_id();
  full.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  Envelope bare = make_envelope("cli", "PlaceOrder", Kind::command);
  std::vector<std::string> inputs{encode_envelope(full), encode_envelope(bare),
                                  map_of({{"specversion", s("1.0")}, {"id", s("x")}, {"source", s("a")},
                                          {"type", s("T")}, {"kind", s("query")}, {"extra", "\xc3"}})};
  std::size_t checked = 0;
  for (const auto& valid : inputs) {
    agree(valid);
    for (std::size_t n = 0; n < valid.size(); ++n) agree(valid.substr(0, n));
    for (std::size_t i = 0; i < valid.size(); ++i)
      for (unsigned char flip : {0x01, 0x10, 0x80, 0xff}) {
        std::string mutated = valid;
        mutated[i] = static_cast<char>(static_cast<unsigned char>(mutated[i]) ^ flip);
        agree(mutated);
        ++checked;
      }
  }
  CHECK(checked > 1000);
}
