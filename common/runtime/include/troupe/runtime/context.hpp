// Context: what a handler sees while it handles one message — the message's envelope,
// the service's state (typed), and the ways to emit events and send commands. All of
// it commits together with the message, or not at all (DESIGN.md §4).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/adapters/msgpack/codec.hpp>
#include <troupe/domain/envelope.hpp>
#include <troupe/domain/message.hpp>
#include <troupe/ports/state.hpp>

namespace troupe {

// Thrown when a handler emits or sends what the topology does not declare: a bug in
// the service (the message is then dead-lettered with this reason).
struct TopologyViolation : std::logic_error {
  using std::logic_error::logic_error;
};

// Where what a handler emits and sends goes until its unit of work commits: the node's
// reactor, or whatever drives handlers without one (the simulator, a test).
class Stager {
 public:
  virtual void stage_event(const Envelope& cause, std::string_view type, std::string payload,
                           std::string correlation) = 0;
  virtual void stage_command(const Envelope& cause, std::string_view target, std::string_view type,
                             std::string payload, std::string correlation) = 0;

 protected:
  ~Stager() = default;
};

// Typed access to the service's own tables; values are TROUPE_MESSAGE structs.
class StateView {
 public:
  explicit StateView(ports::State& state) : state_(&state) {}

  template <Message T>
  std::optional<T> load(std::string_view table, std::string_view key) const {
    auto bytes = state_->get(table, key);
    if (!bytes) return std::nullopt;
    auto value = codec::decode<T>(*bytes);
    if (!value) throw std::runtime_error("state " + std::string(table) + "/" + std::string(key) +
                                         ": " + value.error().message());
    return std::move(*value);
  }

  template <Message T>
  void save(std::string_view table, std::string_view key, const T& value) {
    state_->put(table, key, codec::encode(value));
  }

  void remove(std::string_view table, std::string_view key) { state_->erase(table, key); }

  // Calls f(key, value) for every entry of `table`, in key order; f may return false
  // to stop.
  template <Message T, class F>
  void for_each(std::string_view table, F&& f) const {
    state_->scan(table, typed<T>(table, f));
  }

  // The same for the entries whose keys sort after `after` only (a seek, not a scan
  // from the start: a late page of a listing costs what the first one does).
  template <Message T, class F>
  void for_each_after(std::string_view table, std::string_view after, F&& f) const {
    state_->scan_after(table, after, typed<T>(table, f));
  }

  ports::State& raw() { return *state_; }

 private:
  template <Message T, class F>
  static auto typed(std::string_view table, F& f) {
    return [table, &f](std::string_view key, std::string_view bytes) {
      auto value = codec::decode<T>(bytes);
      if (!value) throw std::runtime_error("state " + std::string(table) + "/" + std::string(key) +
                                           ": " + value.error().message());
      if constexpr (std::is_same_v<decltype(f(key, *value)), bool>)
        return f(key, *value);
      else {
        f(key, *value);
        return true;
      }
    };
  }

  ports::State* state_;
};

class Context {
 public:
  Context(Stager& stager, const Envelope& message, ports::State& state)
      : stager_(&stager), message_(&message), state_(state) {}

  // The message being handled.
  const Envelope& message() const { return *message_; }
  StateView& state() { return state_; }

  // Emits an event caused by the message being handled: same correlation id (unless
  // `correlation` is given), causation id = the message's id. Published after commit.
  template <Message E>
  void emit(const E& event, std::string correlation = {}) {
    emit_raw(E::kType, codec::encode(event), std::move(correlation));
  }

  // Sends a command to `service`, resent until acknowledged, applied there once.
  template <Message C>
  void send(std::string_view service, const C& command, std::string correlation = {}) {
    send_raw(service, C::kType, codec::encode(command), std::move(correlation));
  }

  void emit_raw(std::string_view type, std::string payload, std::string correlation) {
    stager_->stage_event(*message_, type, std::move(payload), std::move(correlation));
  }
  void send_raw(std::string_view service, std::string_view type, std::string payload,
                std::string correlation) {
    stager_->stage_command(*message_, service, type, std::move(payload), std::move(correlation));
  }

 private:
  Stager* stager_;
  const Envelope* message_;
  StateView state_;
};

// What a query handler sees: the query's envelope and read access to state.
class QueryContext {
 public:
  QueryContext(const Envelope& message, ports::State& state) : message_(&message), state_(state) {}
  const Envelope& message() const { return *message_; }
  const StateView& state() const { return state_; }

 private:
  const Envelope* message_;
  StateView state_;
};

}  // namespace troupe
