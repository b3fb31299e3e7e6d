// Typed payloads: round trips and every way a hostile or mistaken peer can fail.
#include <troupe/adapters/msgpack/codec.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <optional>
#include <variant>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace {

struct OrderPlaced {
  std::string order_id;
  std::string sku;
  std::int64_t quantity = 0;
  TROUPE_MESSAGE(OrderPlaced, order_id, sku, quantity)
};

struct Line {
  std::string sku;
  std::uint32_t quantity = 0;
  double price = 0;
  TROUPE_MESSAGE(Line, sku, quantity, price)
};

struct Basket {
  std::string customer;
  std::vector<Line> lines;
  std::map<std::string, std::int64_t> credits;
  std::optional<std::string> note;
  bool express = false;
  std::uint8_t priority = 0;
  TROUPE_MESSAGE(Basket, customer, lines, credits, note, express, priority)
};

struct Frames {
  std::vector<troupe::Bytes> raw;
  std::vector<std::pair<std::variant<std::uint64_t, std::string>, std::uint64_t>> buckets;
  TROUPE_MESSAGE(Frames, raw, buckets)
};

struct GetStock {
  TROUPE_EMPTY_MESSAGE(GetStock)
};

// A msgpack map built by hand, to play a peer that gets things wrong.
std::string pack_map(std::initializer_list<std::pair<std::string, std::string>> kvs) {
  std::string out;
  out.push_back(static_cast<char>(0x80 | kvs.size()));
  for (auto& [k, v] : kvs) {
    out.push_back(static_cast<char>(0xa0 | k.size()));
    out += k;
    out += v;  // already-encoded value
  }
  return out;
}
std::string str(std::string_view s) { return std::string(1, static_cast<char>(0xa0 | s.size())) + std::string(s); }
std::string fixint(int v) { return std::string(1, static_cast<char>(v)); }

using troupe::codec::decode;
using troupe::codec::encode;
using troupe::codec::Limits;
using Code = troupe::Rejection::Code;

}  // namespace

TEST_CASE("a typed message survives a round trip", "[codec][payload]") {
  OrderPlaced m{"o-1", "SKU-7", 3};
  auto back = decode<OrderPlaced>(encode(m));
  REQUIRE(back);
  CHECK(*back == m);
}

TEST_CASE("nested messages, vectors, maps, optionals and small integers round-trip",
          "[codec][payload]") {
  Basket b{"alice", {{"A", 1, 9.5}, {"B", 40000, 0.25}}, {{"x", -5}, {"y", 7}}, "ring twice",
           true, 200};
  auto back = decode<Basket>(encode(b));
  REQUIRE(back);
  CHECK(*back == b);

  SECTION("an absent optional stays absent") {
    b.note.reset();
    auto again = decode<Basket>(encode(b));
    REQUIRE(again);
    CHECK_FALSE(again->note);
  }
  SECTION("an empty message encodes as an empty map") {
    CHECK(encode(GetStock{}) == std::string(1, '\x80'));
    CHECK(decode<GetStock>(encode(GetStock{})));
  }
}

TEST_CASE("a field of the wrong type is named with the message and its size",
          "[codec][payload]") {
  std::string bytes = pack_map({{"order_id", str("o-1")}, {"sku", str("S")}, {"quantity", str("three")}});
  auto r = decode<OrderPlaced>(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Code::wrong_type);
  CHECK(r.error().message() == "OrderPlaced (" + std::to_string(bytes.size()) +
                                   " bytes): field 'quantity': expected integer, got string");
}

TEST_CASE("a missing field is rejected by name, an unknown one is ignored", "[codec][payload]") {
  auto missing = decode<OrderPlaced>(pack_map({{"order_id", str("o-1")}, {"quantity", fixint(2)}}));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Code::missing);
  CHECK(missing.error().what == "missing field 'sku'");

  auto extra = decode<OrderPlaced>(pack_map(
      {{"order_id", str("o-1")}, {"sku", str("S")}, {"quantity", fixint(2)}, {"colour", str("red")}}));
  REQUIRE(extra);
  CHECK(extra->quantity == 2);
}

TEST_CASE("errors inside nested values give the path to the field", "[codec][payload]") {
  Basket b{"alice", {{"A", 1, 1.0}, {"B", 2, 2.0}}, {}, std::nullopt, false, 0};
  std::string bytes = encode(b);
  // Replace the second line's quantity (fixint 2) by a string: find "quantity" then 0x02.
  auto pos = bytes.rfind("quantity");
  REQUIRE(pos != std::string::npos);
  bytes.replace(pos + 8, 1, str("x"));
  auto r = decode<Basket>(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().what == "field 'lines[1].quantity': expected integer, got string");
}

TEST_CASE("integers that do not fit the field are rejected", "[codec][payload]") {
  Basket b{"a", {}, {}, std::nullopt, false, 0};
  std::string bytes = encode(b);
  auto pos = bytes.rfind("priority");
  bytes.replace(pos + 8, 1, "\xcd\x01\x2c");  // uint16 300 into a uint8
  auto r = decode<Basket>(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().what == "field 'priority': expected integer that fits 8 bits, got integer");

  std::string neg = pack_map({{"sku", str("A")}, {"quantity", fixint(-1 & 0xff)}, {"price", fixint(1)}});
  auto r2 = decode<Line>(neg);
  REQUIRE_FALSE(r2);
  CHECK(r2.error().what == "field 'quantity': expected non-negative integer, got integer");
}

TEST_CASE("input that is not a well-formed value is rejected, never a crash",
          "[codec][payload][hostile]") {
  std::string good = encode(OrderPlaced{"o-1", "SKU", 1});

  SECTION("truncated") {
    auto r = decode<OrderPlaced>(good.substr(0, good.size() - 3));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::malformed);
    CHECK(r.error().message() == "OrderPlaced (" + std::to_string(good.size() - 3) +
                                     " bytes): truncated: the value ends early");
  }
  SECTION("garbage") {
    auto r = decode<OrderPlaced>(std::string("\xc1\xc1\xc1", 3));  // 0xc1 is never used
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::malformed);
    CHECK_THAT(r.error().what, Catch::StartsWith("not msgpack"));
  }
  SECTION("trailing bytes") {
    auto r = decode<OrderPlaced>(good + "\x01");
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "1 trailing bytes after the value");
  }
  SECTION("empty") {
    auto r = decode<OrderPlaced>("");
    REQUIRE_FALSE(r);
    CHECK(r.error().message() == "OrderPlaced (0 bytes): empty");
  }
  SECTION("not a map") {
    auto r = decode<OrderPlaced>(std::string("\x93\x01\x02\x03"));
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "expected a map, got array");
  }
}

TEST_CASE("limits bound what a decoder will allocate", "[codec][payload][hostile]") {
  SECTION("too large in total") {
    Limits small;
    small.max_bytes = 16;
    auto r = decode<OrderPlaced>(encode(OrderPlaced{"o-1", std::string(40, 'x'), 1}), small);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::too_large);
    CHECK(r.error().what == "larger than the limit of 16 bytes");
  }
  SECTION("too deep") {
    std::string deep(100, '\x91');  // 100 nested one-element arrays
    deep += '\x01';
    auto r = decode<OrderPlaced>(deep);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::too_large);
    CHECK(r.error().what == "nested deeper than 32 levels");
  }
  SECTION("deep but within the limit: every level opens and closes in its turn") {
    // 30 nested two-element arrays [inner, 7]: past the 16 levels the walk keeps in
    // place, so its counts move between the two stores both ways.
    std::string deep = "\x01";
    for (int i = 0; i < 30; ++i) deep = "\x92" + deep + "\x07";
    CHECK(troupe::codec::validate(deep, "deep"));
    auto trailing = troupe::codec::validate(deep + "\x01", "deep");
    REQUIRE_FALSE(trailing);
    CHECK(trailing.error().what == "1 trailing bytes after the value");
    auto cut = troupe::codec::validate(deep.substr(0, 40), "deep");  // 21 levels still open
    REQUIRE_FALSE(cut);
    CHECK(cut.error().what == "truncated: the value ends early");
  }
  SECTION("a string longer than allowed") {
    Limits l;
    l.max_string = 8;
    auto r = decode<OrderPlaced>(encode(OrderPlaced{"o-1", "a-very-long-sku", 1}), l);
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "a string is longer than 8 bytes");
  }
  SECTION("a huge declared array length with no data behind it") {
    std::string lie("\xdd\x7f\xff\xff\xff", 5);  // array32 claiming 2^31-1 elements
    auto r = decode<OrderPlaced>(lie);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::too_large);
    CHECK(r.error().what == "an array has more than 65536 elements");
  }
  SECTION("a huge declared string length with no data behind it") {
    // msgpack-c waits for the whole string before copying it: nothing is allocated.
    std::string lie("\xdb\x7f\xff\xff\xff", 5);
    auto r = decode<OrderPlaced>(lie);
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "truncated: the value ends early");
  }
  SECTION("a string over the limit that is really there") {
    Limits l;
    l.max_string = 1000;
    std::string big = "\xda\x07\xd0" + std::string(2000, 'x');  // str16 of 2000 bytes
    auto r = decode<OrderPlaced>(big, l);
    REQUIRE_FALSE(r);
    CHECK(r.error().what == "a string is longer than 1000 bytes");
  }
}

// msgpack-c allocates an array's or a map's elements when it reads the header; the
// codec walks the value first, so declared elements that never arrive cost nothing
// (before, these 155 and 217 bytes made it allocate 65 and 130 MB; found by fuzz/).
// The address space is capped 32 MB above what the process uses while they decode.
TEST_CASE("huge declared arrays and maps with nothing behind them allocate nothing",
          "[codec][payload][hostile]") {
#if defined(__SANITIZE_ADDRESS__)
  WARN("not checked: the sanitizer's shadow memory does not fit under an address-space cap");
#else
  std::string arrays, maps;
  for (int i = 0; i < 31; ++i) {
    arrays += std::string("\xdd\x00\x00\xff\xff", 5);      // array32 of 65,535, nested
    maps += std::string("\xdf\x00\x00\xff\xff\xa1k", 7);   // map32 of 65,535, key "k", nested
  }
  rlimit before{};
  REQUIRE(getrlimit(RLIMIT_AS, &before) == 0);
  long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  REQUIRE(pages > 0);
  rlimit capped = before;
  capped.rlim_cur = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (32u << 20);
  REQUIRE(setrlimit(RLIMIT_AS, &capped) == 0);
  auto a = decode<OrderPlaced>(arrays);
  auto m = decode<OrderPlaced>(maps);
  setrlimit(RLIMIT_AS, &before);
  REQUIRE_FALSE(a);
  CHECK(a.error().message() == "OrderPlaced (155 bytes): truncated: the value ends early");
  REQUIRE_FALSE(m);
  CHECK(m.error().message() == "OrderPlaced (217 bytes): truncated: the value ends early");
#endif
}

TEST_CASE("a declared length is judged against the limit only once its bytes are there",
          "[codec][payload][hostile]") {
  Limits l;
  l.max_binary = 4;
  CHECK(decode<OrderPlaced>(std::string("\xc4\x08\x01", 3), l).error().what == "truncated: the value ends early");
  CHECK(decode<OrderPlaced>(std::string("\xc4\x08") + std::string(8, 'b'), l).error().what ==
        "a binary is longer than 4 bytes");
  CHECK(decode<OrderPlaced>(std::string("\xd4\x01\x02", 3)).error().what == "extension types are not accepted");
  CHECK(decode<OrderPlaced>(std::string("\x81\xa1k\xc1", 4)).error().what == "not msgpack (parse error at byte 3)");
}

TEST_CASE("an optional field without a value is left out of the map, and reads back as absent", "[codec][payload]") {
  Basket without{"a", {}, {}, std::nullopt, false, 0};
  Basket with{"a", {}, {}, std::string("ring twice"), false, 0};
  auto bytes = encode(without);
  CHECK(bytes.find("note") == std::string::npos);
  CHECK(static_cast<unsigned char>(bytes[0]) == 0x85);  // a map of the five other fields
  auto back = decode<Basket>(bytes);
  REQUIRE(back);
  CHECK_FALSE(back->note);
  auto full = decode<Basket>(encode(with));
  REQUIRE(full);
  CHECK(full->note == "ring twice");
}

TEST_CASE("bytes are msgpack bin, pairs two-element arrays, variants whichever fits",
          "[codec][payload]") {
  Frames f{{{std::string("\x00\xff\x80", 3)}, {""}}, {{10u, 3u}, {std::string("+Inf"), 1u}}};
  auto bytes = troupe::codec::encode(f);
  auto j = nlohmann::json::from_msgpack(bytes);
  CHECK(j["raw"][0].is_binary());
  CHECK(j["buckets"][0] == nlohmann::json::array({10, 3}));
  CHECK(j["buckets"][1] == nlohmann::json::array({"+Inf", 1}));
  auto back = troupe::codec::decode<Frames>(bytes);
  REQUIRE(back);
  CHECK(back->raw[0].data == std::string("\x00\xff\x80", 3));
  CHECK(back->raw[1].data.empty());
  CHECK(std::get<std::uint64_t>(back->buckets[0].first) == 10);
  CHECK(std::get<std::string>(back->buckets[1].first) == "+Inf");

  // A string where bytes are due, a pair of three, a bound that is neither alternative.
  auto as_json = [](const nlohmann::json& j) {
    auto v = nlohmann::json::to_msgpack(j);
    return std::string(v.begin(), v.end());
  };
  auto str = troupe::codec::decode<Frames>(as_json({{"raw", {"text"}}, {"buckets", nlohmann::json::array()}}));
  REQUIRE_FALSE(str);
  CHECK(str.error().message().find("field 'raw[0]': expected binary, got string") != std::string::npos);
  auto three = troupe::codec::decode<Frames>(as_json({{"raw", nlohmann::json::array()}, {"buckets", {{1, 2, 3}}}}));
  REQUIRE_FALSE(three);
  CHECK(three.error().message().find("field 'buckets[0]': expected array of 2") != std::string::npos);
  auto neither = troupe::codec::decode<Frames>(as_json({{"raw", nlohmann::json::array()}, {"buckets", {{true, 2}}}}));
  REQUIRE_FALSE(neither);
  CHECK(neither.error().message().find("field 'buckets[0][0]': expected one of the variant's alternatives, got boolean") !=
        std::string::npos);
}
