// Handlers: what a service registers — a handler per event it reacts to, command it
// accepts and query it answers, and what it seeds its state with. A Node is one
// (it checks each registration against the topology); so is anything else that drives a
// service's handlers without sockets (tests/sim runs the shop's own this way). A
// service's install function takes a Handlers&, not a Node&.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/domain/result.hpp>
#include <troupe/domain/schema.hpp>
#include <troupe/runtime/context.hpp>

namespace troupe {

// A handler for one message type, after the envelope was decoded: decodes its payload
// and runs. A returned Rejection sends the message to dead letters with that reason.
using EventHandler = std::function<Result<void>(const Envelope&, std::string_view payload, Context&)>;
using QueryHandler =
    std::function<Result<std::string>(const Envelope&, std::string_view payload, QueryContext&)>;
// Work of the service's own that is no answer to a message: a timer's tick, a reading a
// device driver hands over. It runs on the node's thread in a unit of work, like a
// handler: what it writes to state and emits commits together.
using Task = std::function<void(Context&)>;

//
// What the typed registrations name, with the schemas this build has of them, is the
// service's contract (troupe/domain/schema.hpp): a node answers it on `$schema`, and
// `troupe asyncapi` publishes a mesh's. The events a service emits are declared once
// with publishes<...>(); a node then refuses to start when they differ from the
// topology's `publishes`, and refuses an emit of an undeclared type.
class Handlers {
 public:
  // Declares the events this service emits.
  template <Message... E>
  void publishes() {
    (add_unique(contract_.publishes, contract_.add<E>().type), ...);
  }

  // Declares the commands this service sends to `target` (ctx.send): checked against
  // the topology's `sends` like publishes, and part of the contract troupe compat reads.
  template <Message... C>
  void sends(std::string_view target) {
    auto& list = contract_.sends[std::string(target)];
    (add_unique(list, contract_.add<C>().type), ...);
  }

  // Reacts to event E (its publisher is found in the topology's reacts_to).
  template <Message E, class F>
  void on(F&& handler) {
    add_unique(contract_.reads, contract_.add<E>().type);
    on_event_raw(E::kType, wrap<E>(std::forward<F>(handler)));
  }

  // Accepts command C (must be listed in the service's `accepts`).
  template <Message C, class F>
  void on_command(F&& handler) {
    add_unique(contract_.accepts, contract_.add<C>().type);
    on_command_raw(C::kType, wrap<C>(std::forward<F>(handler)));
  }

  // Answers query Q with a Q::Reply (must be listed in the service's `answers`).
  template <Query Q, class F>
  void on_query(F&& handler) {
    contract_.answers[std::string(Q::kType)] = contract_.add<typename Q::Reply>().type;
    contract_.add<Q>();
    on_query_raw(Q::kType, [h = std::forward<F>(handler)](const Envelope&, std::string_view payload,
                                                          QueryContext& ctx) -> Result<std::string> {
      auto q = codec::decode<Q>(payload);
      if (!q) return q.error();
      Result<typename Q::Reply> reply = h(*q, ctx);
      if (!reply) return reply.error();
      return codec::encode(*reply);
    });
  }

  virtual void on_event_raw(std::string_view type, EventHandler handler) = 0;
  virtual void on_command_raw(std::string_view type, EventHandler handler) = 0;
  virtual void on_query_raw(std::string_view type, QueryHandler handler) = 0;

  // Runs `f` in one unit of work before the service serves (seeding state on first
  // start, say). Throws what f throws, or StoreError; nothing is kept unless it succeeds.
  // A Node runs it at once; whatever drives handlers may keep `f` and run it again at
  // each start (the simulator does), so it should only add what is missing, and what
  // it captures by reference must outlive the Handlers.
  virtual void initialize(const std::function<void(StateView&)>& f) = 0;

  // What the registrations so far declare (the service's name and build are the
  // node's to fill in).
  const schema::Contract& contract() const { return contract_; }

 protected:
  ~Handlers() = default;

  schema::Contract contract_;

 private:
  static void add_unique(std::vector<std::string>& list, const std::string& type) {
    for (const auto& t : list)
      if (t == type) return;
    list.push_back(type);
  }

  template <Message M, class F>
  static EventHandler wrap(F&& handler) {
    return [h = std::forward<F>(handler)](const Envelope&, std::string_view payload,
                                          Context& ctx) -> Result<void> {
      auto m = codec::decode<M>(payload);
      if (!m) return m.error();
      if constexpr (std::is_void_v<std::invoke_result_t<F&, const M&, Context&>>) {
        h(*m, ctx);
        return {};
      } else {
        return h(*m, ctx);
      }
    };
  }
};

// Handlers that only record what is registered: what a service speaks, without a
// topology, a store or sockets (`orders --contract` prints it this way).
class ContractRecorder final : public Handlers {
 public:
  ContractRecorder(std::string service, std::string build) {
    contract_.service = std::move(service);
    contract_.build = std::move(build);
  }
  void on_event_raw(std::string_view, EventHandler) override {}
  void on_command_raw(std::string_view, EventHandler) override {}
  void on_query_raw(std::string_view, QueryHandler) override {}
  void initialize(const std::function<void(StateView&)>&) override {}
};

}  // namespace troupe
