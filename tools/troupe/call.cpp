// troupe send / troupe query: the asynchronous and the synchronous call, from JSON.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>
#include <troupe/tools/saga.hpp>

#include <algorithm>
#include <iostream>
#include <optional>

namespace troupe::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds until(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

}  // namespace

Runner add_send(CLI::App& app) {
  auto* cmd = app.add_subcommand("send", "send a command (JSON payload); --wait prints the first event it caused");
  struct Opts : Common {
    std::string service, type, payload = "{}", correlation, traceparent;
    bool wait = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("SERVICE", o->service, "the service that accepts the command")->required();
  cmd->add_option("TYPE", o->type, "the command type, e.g. PlaceOrder")->required();
  cmd->add_option("JSON", o->payload, "the payload as a JSON object")->capture_default_str();
  cmd->add_option("--correlation", o->correlation, "correlation id (default: the command's id)");
  cmd->add_option("--traceparent", o->traceparent,
                  "W3C trace context (00-<32 hex>-<16 hex>-<2 hex>) the command and what it causes carry");
  cmd->add_flag("--wait", o->wait, "wait for the first event caused by the command and print it");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    auto payload = parse_json(o->payload, "the payload");
    if (!payload) return kUsage;
    Client client(*t, identity(*o));  // the source it writes is who it is (checked under CURVE)
    client.set_identity(identity(*o));
    // A partitioned service: the instance that owns the command's key takes it, and its
    // outbox holds what the command causes.
    const std::string bytes = to_msgpack(*payload);
    auto routed = client.route(o->service, o->type, bytes);
    if (!routed) {
      std::cerr << "troupe: " << routed.error().message() << '\n';
      return kUsage;
    }
    const std::string service = *routed;
    // One deadline for the whole call: head, send and wait together take --timeout.
    auto deadline = Clock::now() + std::chrono::milliseconds(o->timeout_ms);
    std::uint64_t from = 1;  // where in the service's outbox the caused event can be
    if (o->wait) {
      client.watch({service});  // a command's events come from its service
      // A service that does not answer this is unlikely to take the command: the send's
      // own error says so, with most of the time left to it.
      from = tools::outbox_head(client, service, std::min(until(deadline), std::chrono::milliseconds(1000))) + 1;
    }
    // Resent until the service confirms it took the command (its id makes that safe).
    auto sent = client.send_confirmed(service, o->type, bytes, o->correlation, until(deadline),
                                      o->traceparent);
    if (!sent) {
      std::cerr << "troupe: " << sent.error().message() << '\n';
      switch (sent.error().code) {
        case Rejection::Code::timeout: return kUnreachable;
        case Rejection::Code::refused: return kFailed;  // taken, and refused: the reason is printed
        default: return kUsage;
      }
    }
    if (!o->wait) {
      std::cout << sent->id << '\n';
      return kOk;
    }
    // The live subscription may attach after the event went out (a slow joiner), so the
    // service's outbox past its head before the send is read too: a command's events
    // are committed with it.
    auto next_check = Clock::now();
    while (Clock::now() < deadline) {
      auto ev = client.next_event(std::min(until(deadline), std::chrono::milliseconds(100)));
      if (ev && ev->envelope.causationid == sent->id) {
        std::cout << dump(cloudevent(ev->envelope, ev->payload)) << '\n';
        return kOk;
      }
      if (Clock::now() < next_check) continue;
      auto found = tools::caused_in_outbox(client, service, from, sent->id, deadline);
      if (!found) {
        std::cerr << "troupe: command " << sent->id << " was taken, but its event cannot be read: "
                  << found.error().message() << '\n';
        return kFailed;
      }
      if (*found) {
        std::cout << dump(**found) << '\n';
        return kOk;
      }
      next_check = Clock::now() + std::chrono::milliseconds(100);
    }
    std::cerr << "troupe: no event caused by " << sent->id << " within " << o->timeout_ms << " ms\n";
    return kUnreachable;
  };
}

Runner add_query(CLI::App& app) {
  auto* cmd = app.add_subcommand("query", "ask a service a query (JSON payload) and print the reply as JSON");
  struct Opts : Common {
    std::string service, type, payload = "{}";
    bool pretty = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("SERVICE", o->service, "the service to ask")->required();
  cmd->add_option("TYPE", o->type, "the query type, e.g. GetOrder or $health")->required();
  cmd->add_option("JSON", o->payload, "the payload as a JSON object")->capture_default_str();
  cmd->add_flag("--pretty", o->pretty, "indent the JSON");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    auto payload = parse_json(o->payload, "the payload");
    if (!payload) return kUsage;
    Client client(*t, identity(*o));  // the source it writes is who it is (checked under CURVE)
    client.set_identity(identity(*o));
    const std::string bytes = to_msgpack(*payload);
    // A partitioned service asked something without its key (a list, a built-in):
    // every instance is asked the same, and their replies merged (arrays joined in
    // instance order; anything else as the first instance said it). A built-in asked
    // of every instance answers one object per instance, by name.
    std::vector<std::pair<std::string, nlohmann::json>> replies;
    for (const auto& service : tools::ask_of(client, o->service, o->type, bytes)) {
      auto r = client.query_raw(service, o->type, bytes, std::chrono::milliseconds(o->timeout_ms));
      if (!r) {
        std::cerr << "troupe: " << r.error().message() << '\n';
        return r.error().code == Rejection::Code::refused ? kFailed : kUnreachable;
      }
      replies.emplace_back(service, to_json(r->payload));
    }
    auto merged = tools::merge_replies(std::move(replies), o->type.rfind('$', 0) == 0);
    std::cout << dump(merged, o->pretty ? 2 : -1) << '\n';
    return kOk;
  };
}

}  // namespace troupe::cli
