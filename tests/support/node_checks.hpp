// What the node tests ask of a running test mesh and send to it by hand, shared by
// node_test.cpp and hardening_test.cpp (Catch2 assertions inside).
#pragma once

#include "test_mesh.hpp"

#include <troupe/runtime/client.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace testmesh {

// How many Pings `service` applied (its GetApplied), or -1 if it did not answer.
inline std::int64_t applied(troupe::Client& c, const std::string& service) {
  auto r = c.query(service, GetApplied{}, std::chrono::milliseconds(1000));
  return r ? r->count : -1;
}

// A query answered with a msgpack map ($health, $metrics, ...), as JSON.
inline nlohmann::json json_query(troupe::Client& c, const std::string& service, std::string_view type,
                                 const std::string& payload = std::string(1, '\x80')) {
  auto r = c.query_raw(service, std::string(type), payload);
  REQUIRE(r);
  return nlohmann::json::from_msgpack(r->payload);
}

// Sends raw frames, as a peer written by hand (or by an attacker) would.
inline void send_frames(zmq::socket_t& s, const std::vector<std::string>& frames) {
  std::vector<zmq::const_buffer> b;
  for (const auto& f : frames) b.push_back(zmq::buffer(f));
  REQUIRE(zmq::send_multipart(s, b));
}

}  // namespace testmesh
