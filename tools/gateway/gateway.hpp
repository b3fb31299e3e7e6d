// troupe-gateway: the mesh's HTTP edge (docs/operations.md "The HTTP gateway").
// Commands and queries from HTTP, the live tap as Server-Sent Events, sagas, the
// Prometheus scrape endpoint, health, the OpenAPI description, and the dashboard.
// A client of the mesh like any other: it presents its own CURVE identity, so the
// topology's allow-lists decide what it may do.
#pragma once

#include <troupe/domain/topology.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace troupe::gateway {

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0: any free port (printed)
  std::string token;                  // Bearer token; required to bind beyond loopback
  std::string identity = "gateway";   // [clients.*]: commands and queries
  std::string tap_identity = "dashboard";  // [taps.*]: the live tap
  std::chrono::milliseconds timeout{5000};       // a command taken, a query answered
  std::chrono::milliseconds max_wait{30000};     // the longest ?wait= honoured
  std::chrono::milliseconds stuck_after{3000};   // a saga waiting longer is stuck
  std::size_t max_body = 1u << 20;    // request bodies (and at most max_message_bytes)
  std::size_t sse_clients = 8;        // concurrent /v1/events streams
  std::size_t sse_queue = 1000;       // records queued per stream before dropping
  std::size_t sse_queue_bytes = 4u << 20;  // ... or bytes of them
  std::size_t threads = 32;           // HTTP worker threads (each stream holds one)
};

// True for an address only this host can reach (numeric 127.0.0.0/8, ::1, localhost).
bool loopback(const std::string& host);

// Commands that may wait (?wait) at once: a quarter of the workers.
std::size_t max_waits(const Options& options);

// Runs until SIGTERM or SIGINT; the exit code (0, or 1 when it cannot listen).
int serve(const Topology& topology, const Options& options);

}  // namespace troupe::gateway
