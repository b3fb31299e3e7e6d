// The ZeroMQ side of a node, apart from the rules: sockets made with the mesh's
// settings, CURVE on a server or client socket, and socket monitors counted by event.
// The runtime's reactor owns the sockets; what is done to them lives here, with the ZAP
// authority (zap.hpp), the ipc guard (ipc_guard.hpp) and the key files (keys.hpp).
#pragma once

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace troupe::transport {

struct SocketSettings {
  std::chrono::milliseconds heartbeat{1000};  // ZMTP heartbeats: a dead peer is noticed in 3
  std::size_t max_message_bytes = 1u << 20;   // ZMQ_MAXMSGSIZE: a frame over it ends the connection
  int linger_ms = 500;
};

// A socket of `type` with the settings applied.
zmq::socket_t make_socket(zmq::context_t& context, zmq::socket_type type, const SocketSettings& settings);

// A key pair, Z85.
struct CurveKeys {
  std::string secret_key, public_key;
};

// A CURVE server whose handshakes the ZAP authority judges under `zap_domain`.
void secure_server(zmq::socket_t& socket, const CurveKeys& keys, const std::string& zap_domain);
// A CURVE client of the server whose public key (Z85) is `server_key`.
void secure_client(zmq::socket_t& socket, const CurveKeys& keys, const std::string& server_key);

// zmq_socket_monitor of some sockets, each event counted under a name ("accepted",
// "disconnected", "closed", "handshake_succeeded", "handshake_failed",
// "accept_failed", "other").
class Monitors {
 public:
  // Starts monitoring `socket` (named in the monitor's inproc address); false if libzmq refused.
  bool watch(zmq::context_t& context, zmq::socket_t& socket, const std::string& name);
  // The monitor sockets, to poll for ZMQ_POLLIN.
  std::vector<zmq::socket_t>& sockets() { return sockets_; }
  // Reads what monitor `i` has and adds it to `counts`.
  void drain(std::size_t i, std::map<std::string, std::uint64_t>& counts);
  void close() { sockets_.clear(); }

 private:
  std::vector<zmq::socket_t> sockets_;
};

}  // namespace troupe::transport
