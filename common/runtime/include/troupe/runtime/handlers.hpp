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

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/domain/result.hpp>
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

class Handlers {
 public:
  // Reacts to event E (its publisher is found in the topology's reacts_to).
  template <Message E, class F>
  void on(F&& handler) {
    on_event_raw(E::kType, wrap<E>(std::forward<F>(handler)));
  }

  // Accepts command C (must be listed in the service's `accepts`).
  template <Message C, class F>
  void on_command(F&& handler) {
    on_command_raw(C::kType, wrap<C>(std::forward<F>(handler)));
  }

  // Answers query Q with a Q::Reply (must be listed in the service's `answers`).
  template <Query Q, class F>
  void on_query(F&& handler) {
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

 protected:
  ~Handlers() = default;

 private:
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

}  // namespace troupe
