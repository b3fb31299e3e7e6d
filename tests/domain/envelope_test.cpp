// Envelopes: fresh and caused envelopes carry the saga's identity forward.
#include <troupe/domain/envelope.hpp>
#include <troupe/domain/result.hpp>

#include <catch2/catch.hpp>

using namespace troupe;

TEST_CASE("a fresh envelope has an id, a time and the CloudEvents defaults", "[envelope]") {
  Envelope e = make_envelope("orders", "OrderPlaced", Kind::event);
  CHECK(e.specversion == "1.0");
  CHECK(e.datacontenttype == "application/msgpack");
  CHECK(e.id.size() == 36);
  CHECK(e.time.size() == 27);
  CHECK(e.time.back() == 'Z');
  CHECK(e.source == "orders");
  CHECK(e.kind == Kind::event);
}

TEST_CASE("a caused envelope keeps the correlation and names its cause", "[envelope]") {
  Envelope cmd = make_envelope("cli", "PlaceOrder", Kind::command);
  cmd.correlationid = "order-42";
  cmd.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  Envelope ev = make_caused_envelope(cmd, "orders", "OrderPlaced", Kind::event);
  CHECK(ev.correlationid == "order-42");
  CHECK(ev.causationid == cmd.id);
  CHECK(ev.traceparent == cmd.traceparent);
  CHECK(ev.id != cmd.id);

  SECTION("and a cause without a correlation starts one with its own id") {
    Envelope first = make_envelope("cli", "PlaceOrder", Kind::command);
    CHECK(make_caused_envelope(first, "orders", "OrderPlaced", Kind::event).correlationid ==
          first.id);
  }
}

TEST_CASE("kinds have names and only those names parse", "[envelope]") {
  for (Kind k : {Kind::event, Kind::command, Kind::query, Kind::reply})
    CHECK(kind_from_string(to_string(k)) == k);
  CHECK_FALSE(kind_from_string("Event"));
  CHECK_FALSE(kind_from_string(""));
}

TEST_CASE("a rejection reads as where: what", "[result]") {
  Result<int> r = reject(Rejection::Code::wrong_type, "OrderPlaced (35 bytes)",
                         "field 'quantity': expected integer, got string");
  REQUIRE_FALSE(r);
  CHECK(r.error().message() == "OrderPlaced (35 bytes): field 'quantity': expected integer, got string");
  Result<int> ok = 7;
  REQUIRE(ok);
  CHECK(*ok == 7);
}

TEST_CASE("text from a peer is printable: control bytes are escaped, UTF-8 is kept", "[envelope]") {
  using namespace std::string_literals;
  CHECK(troupe::printable("PlaceOrder") == "PlaceOrder");
  CHECK(troupe::printable("Bad\x1b[2JType\n2026 forged line"s) == "Bad\\x1b[2JType\\x0a2026 forged line");
  CHECK(troupe::printable("nul\0del\x7f"s) == "nul\\x00del\\x7f");
  CHECK(troupe::printable("caf\xc3\xa9 \xe2\x82\xac") == "caf\xc3\xa9 \xe2\x82\xac");  // é and €: kept
  CHECK(troupe::printable("csi\xc2\x9b" "2J") == "csi\\u009b2J");                      // U+009B: escaped
  CHECK(troupe::printable("\xc2") == "\\xc2");                                        // truncated: escaped
  CHECK(troupe::printable("a\x9b" "2Jb\xff") == "a\\x9b2Jb\\xff");                      // lone bytes: escaped
  CHECK(troupe::printable("\xe0\x80\x80") == "\\xe0\\x80\\x80");                       // overlong: escaped
  CHECK(troupe::printable("back\\x1b") == "back\\\\x1b");  // a written-out escape stays distinct
  CHECK(troupe::printable("\xf0\x9f\x8e\xad") == "\xf0\x9f\x8e\xad");                   // U+1F3AD: kept
}
