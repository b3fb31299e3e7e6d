// ZapAuthority: the ZAP handler (ZeroMQ RFC 27) of one ZeroMQ context. Every CURVE
// server socket of a node names a ZAP domain, "<service>/<endpoint>" (events, commands,
// queries); the authority admits a handshake when the client's public key is on that
// domain's allow-list and refuses it otherwise, counting and remembering the refusal
// so the node can log it once, report it in $metrics and show it to taps.
//
// One per context, because libzmq asks the handler bound at inproc://zeromq.zap.01 of
// the socket's context: the edge binary runs five nodes in one context and they share
// it. It answers on its own thread, so a node busy with a batch never stalls
// handshakes; the last node to let go stops it.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace troupe::transport {

class ZapAuthority {
 public:
  struct Refusal {
    std::string domain;   // "orders/commands"
    std::string address;  // the peer's address as libzmq gives it
    std::string key;      // the refused public key, Z85
  };

  // The authority of `context`, started on first use.
  static std::shared_ptr<ZapAuthority> of(zmq::context_t& context);

  ~ZapAuthority();
  ZapAuthority(const ZapAuthority&) = delete;
  ZapAuthority& operator=(const ZapAuthority&) = delete;

  // Admits `keys` (raw 32-byte public keys → identity names) on `domain`.
  void allow(const std::string& domain, std::map<std::string, std::string> keys);
  void forget(const std::string& domain);

  // Refusals on domains starting with `prefix` ("orders/") since the last call.
  std::vector<Refusal> take_refusals(const std::string& prefix);
  bool has_refusals() const { return pending_.load(std::memory_order_relaxed); }

  explicit ZapAuthority(zmq::context_t& context);

 private:
  static constexpr std::size_t kMaxPending = 10000;  // refusals not yet taken by a node
  void serve();
  void answer(std::vector<zmq::message_t>& request);

  zmq::context_t& context_;
  zmq::socket_t socket_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> pending_{false};
  mutable std::mutex mutex_;
  std::map<std::string, std::map<std::string, std::string>> allowed_;  // domain → key → name
  std::vector<Refusal> refusals_;
};

}  // namespace troupe::transport
