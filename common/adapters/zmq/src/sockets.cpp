// Sockets with the mesh's settings, CURVE options, socket monitors (sockets.hpp).
#include <troupe/adapters/zmq/sockets.hpp>

#include <atomic>
#include <cstring>

namespace troupe::transport {

zmq::socket_t make_socket(zmq::context_t& context, zmq::socket_type type, const SocketSettings& settings) {
  zmq::socket_t s(context, type);
  const auto hb = static_cast<int>(settings.heartbeat.count());
  s.set(zmq::sockopt::linger, settings.linger_ms);
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(settings.max_message_bytes));
  s.set(zmq::sockopt::heartbeat_ivl, hb);
  s.set(zmq::sockopt::heartbeat_timeout, hb * 3);
  s.set(zmq::sockopt::heartbeat_ttl, hb * 3);
  return s;
}

void secure_server(zmq::socket_t& s, const CurveKeys& keys, const std::string& zap_domain) {
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  s.set(zmq::sockopt::zap_domain, zap_domain);
}

void secure_client(zmq::socket_t& s, const CurveKeys& keys, const std::string& server_key) {
  s.set(zmq::sockopt::curve_serverkey, server_key);
  s.set(zmq::sockopt::curve_publickey, keys.public_key);
  s.set(zmq::sockopt::curve_secretkey, keys.secret_key);
}

bool Monitors::watch(zmq::context_t& context, zmq::socket_t& socket, const std::string& name) {
  static std::atomic<int> unique{0};
  const int events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_ACCEPT_FAILED;
  std::string address = "inproc://troupe-monitor-" + name + "-" + std::to_string(unique.fetch_add(1));
  if (zmq_socket_monitor(socket.handle(), address.c_str(), events) != 0) return false;
  zmq::socket_t m(context, zmq::socket_type::pair);
  m.set(zmq::sockopt::linger, 0);
  m.connect(address);
  sockets_.push_back(std::move(m));
  return true;
}

void Monitors::drain(std::size_t i, std::map<std::string, std::uint64_t>& counts) {
  auto& monitor = sockets_.at(i);
  while (true) {
    zmq::message_t event, address;
    if (!monitor.recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more() && !monitor.recv(address, zmq::recv_flags::dontwait)) return;
    if (event.size() < 6) continue;
    std::uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);
    const char* name = "other";
    switch (id) {
      case ZMQ_EVENT_ACCEPTED: name = "accepted"; break;
      case ZMQ_EVENT_ACCEPT_FAILED: name = "accept_failed"; break;
      case ZMQ_EVENT_DISCONNECTED: name = "disconnected"; break;
      case ZMQ_EVENT_CLOSED: name = "closed"; break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: name = "handshake_succeeded"; break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: name = "handshake_failed"; break;
      default: break;
    }
    ++counts[name];
  }
}

}  // namespace troupe::transport
