// Client: how tools and tests talk to a mesh from outside — queries (synchronous call
// with a timeout), commands (one-shot, deduplicated by id at the receiver), and
// watching events. Used by the `troupe` CLI, the load driver and integration tests.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/domain/envelope.hpp>
#include <troupe/domain/result.hpp>
#include <troupe/domain/schema.hpp>
#include <troupe/domain/topology.hpp>
#include <troupe/runtime/builtin.hpp>

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace troupe {

struct Received {
  Envelope envelope;
  std::string payload;
  std::vector<std::string> extra;  // frames after the payload ($replay)
};

// Makes `socket` a CURVE client of `service` presenting `identity`'s key pair from the
// topology's keys directory; does nothing when the topology's security is "none".
// Throws std::runtime_error naming the missing or bad key file.
void curve_client(zmq::socket_t& socket, const Topology& topology, const std::string& service,
                  const std::string& identity);

class Client {
 public:
  // `name` is the source written in envelopes ("cli", "load").
  explicit Client(Topology topology, std::string name = "cli", zmq::context_t* context = nullptr);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Where a message of `type` to `service` goes: `service` itself, unless it names a
  // partitioned service, then the instance that owns the payload's key (orders.2;
  // docs/protocol.md §7.10). Refused for a partitioned service when the payload has no
  // key to route by (a list query: ask every instance, as `troupe query` does).
  Result<std::string> route(const std::string& service, const std::string& type, std::string_view payload) const;

  // Asks `service` a query; a rejection when the service does not answer within
  // `timeout` or answers with an error.
  Result<Received> query_raw(const std::string& service, const std::string& type, std::string payload,
                             std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

  template <Query Q>
  Result<typename Q::Reply> query(const std::string& service, const Q& q,
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) {
    auto r = query_raw(service, std::string(Q::kType), codec::encode(q), timeout);
    if (!r) return r.error();
    return codec::decode<typename Q::Reply>(r->payload);
  }

  // Sends a command; returns its envelope (its id is what caused events will name).
  // `traceparent`: a W3C Trace Context header ("00-<32 hex>-<16 hex>-<2 hex>") that the
  // command and everything it causes carry; anything else is refused.
  // `id`: the command's id, for a client that names its commands itself (the HTTP
  // gateway's Idempotency-Key); a new UUIDv7 when empty.
  Result<Envelope> send_raw(const std::string& service, const std::string& type, std::string payload,
                            std::string correlation = {}, std::string traceparent = {},
                            std::uint32_t schemaversion = 1, std::string id = {});

  // Sends a command again with its original envelope (same id): the receiver applies
  // it at most once, so a client that is unsure whether it arrived can simply resend.
  Result<void> resend(const std::string& service, const Envelope& envelope, const std::string& payload);

  // Sends a command and makes sure it was taken: asks the service ($seen) and resends
  // the same command until it says so, or `timeout` passes (Code::timeout then). Safe,
  // because the receiver handles a command id once. A command the service refused is
  // Code::refused, with the reason it gave.
  Result<Envelope> send_confirmed(const std::string& service, const std::string& type, std::string payload,
                                  std::string correlation = {},
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                                  std::string traceparent = {}, std::string id = {});

  // Which of these command ids `service` has handled (applied or refused); nullopt if it
  // did not answer.
  std::optional<std::vector<bool>> seen(const std::string& service, const std::vector<std::string>& ids,
                                        std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));
  // The same, said in full: applied, refused (with the reason) or unseen, per id.
  std::optional<std::vector<builtin::SeenOutcome>> outcomes(
      const std::string& service, const std::vector<std::string>& ids,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

  template <Message C>
  Result<Envelope> send(const std::string& service, const C& c, std::string correlation = {},
                        std::string traceparent = {}) {
    return send_raw(service, std::string(C::kType), codec::encode(c), std::move(correlation), std::move(traceparent),
                    schema::schema_version<C>());
  }

  // Subscribes to every event of every service (or of `services`); call before the
  // commands whose effects you want to see.
  // With `heartbeats`, the services' heartbeats are seen too (type "$heartbeat"): the
  // first one proves the subscription is live.
  void watch(const std::vector<std::string>& services = {}, bool heartbeats = false);
  // The next event seen, or nullopt after `timeout`.
  std::optional<Received> next_event(std::chrono::milliseconds timeout);

  // Under security = "curve", the identity whose key pair this client presents (a
  // [clients.NAME] or [taps.NAME] of the topology); "cli" unless set. Takes effect for
  // sockets opened after the call.
  void set_identity(std::string identity) { identity_ = std::move(identity); }
  const std::string& identity() const { return identity_; }

  const Topology& topology() const { return topology_; }
  // Overrides where a service is (tests with resolved tcp ports).
  void set_endpoints(const std::string& service, const Endpoints& endpoints);

 private:
  zmq::socket_t& dealer(const std::string& service);
  zmq::socket_t& push(const std::string& service);

  Topology topology_;
  std::string name_;
  std::string identity_ = "cli";
  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_;
  std::map<std::string, std::unique_ptr<zmq::socket_t>> dealers_, pushes_;
  std::unique_ptr<zmq::socket_t> watcher_;
};

}  // namespace troupe
