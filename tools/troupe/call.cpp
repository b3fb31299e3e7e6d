// troupe send / troupe query: the asynchronous and the synchronous call, from JSON.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>

#include <algorithm>
#include <iostream>
#include <optional>

namespace troupe::cli {
namespace {

// The head of `service`'s outbox (an empty $replay answers with it), or 0.
std::uint64_t outbox_head(Client& client, const std::string& service, std::chrono::milliseconds timeout) {
  auto r = client.query_raw(service, std::string(builtin::kReplay), codec::encode(builtin::ReplayRequest{1, 0, 1}), timeout);
  if (!r) return 0;
  auto hdr = codec::decode<builtin::ReplayReply>(r->payload);
  return hdr ? hdr->head : 0;
}

// Reads `service`'s outbox from sequence `from` up to its head for the first event
// caused by command `id`, as a CloudEvent; `from` moves past what was read.
std::optional<nlohmann::json> caused_in_outbox(Client& client, const std::string& service, std::uint64_t& from,
                                               const std::string& id, std::chrono::milliseconds timeout) {
  for (;;) {
    auto r = client.query_raw(service, std::string(builtin::kReplay),
                              codec::encode(builtin::ReplayRequest{from, UINT64_MAX, 512}), timeout);
    if (!r) return std::nullopt;
    for (std::size_t i = 0; i + 1 < r->extra.size(); i += 2) {
      auto env = codec::decode_envelope(r->extra[i]);
      if (!env) continue;
      from = std::max(from, env->sequence + 1);
      if (env->causationid == id) return cloudevent(*env, r->extra[i + 1]);
    }
    auto hdr = codec::decode<builtin::ReplayReply>(r->payload);
    if (!hdr || hdr->count == 0 || from > hdr->head) return std::nullopt;
  }
}

}  // namespace

Runner add_send(CLI::App& app) {
  auto* cmd = app.add_subcommand("send", "send a command (JSON payload); --wait prints the first event it caused");
  struct Opts : Common {
    std::string service, type, payload = "{}", correlation;
    bool wait = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("SERVICE", o->service, "the service that accepts the command")->required();
  cmd->add_option("TYPE", o->type, "the command type, e.g. PlaceOrder")->required();
  cmd->add_option("JSON", o->payload, "the payload as a JSON object")->capture_default_str();
  cmd->add_option("--correlation", o->correlation, "correlation id (default: the command's id)");
  cmd->add_flag("--wait", o->wait, "wait for the first event caused by the command and print it");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    auto payload = parse_json(o->payload, "the payload");
    if (!payload) return kUsage;
    Client client(*t, "cli");
    client.set_identity(identity(*o));
    std::uint64_t from = 1;  // where in the service's outbox the caused event can be
    if (o->wait) {
      client.watch({o->service});  // a command's events come from its service
      from = outbox_head(client, o->service, std::chrono::milliseconds(o->timeout_ms)) + 1;
    }
    // Resent until the service confirms it applied the command (its id makes that safe).
    auto sent = client.send_confirmed(o->service, o->type, to_msgpack(*payload), o->correlation,
                                      std::chrono::milliseconds(o->timeout_ms));
    if (!sent) {
      std::cerr << "troupe: " << sent.error().message() << '\n';
      return sent.error().code == Rejection::Code::invalid && sent.error().what.rfind("command ", 0) == 0 ? kUnreachable : kUsage;
    }
    if (!o->wait) {
      std::cout << sent->id << '\n';
      return kOk;
    }
    // The live subscription may attach after the event went out (a slow joiner), and
    // an identity may be allowed to send and ask but not to watch: so the service's
    // outbox past its head before the send is read too. A confirmed command's events
    // were committed with it.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o->timeout_ms);
    auto next_check = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      auto ev = client.next_event(std::min(left, std::chrono::milliseconds(100)));
      if (ev && ev->envelope.causationid == sent->id) {
        std::cout << dump(cloudevent(ev->envelope, ev->payload)) << '\n';
        return kOk;
      }
      if (std::chrono::steady_clock::now() < next_check) continue;
      if (auto found = caused_in_outbox(client, o->service, from, sent->id, left)) {
        std::cout << dump(*found) << '\n';
        return kOk;
      }
      next_check = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
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
    Client client(*t, "cli");
    client.set_identity(identity(*o));
    auto r = client.query_raw(o->service, o->type, to_msgpack(*payload), std::chrono::milliseconds(o->timeout_ms));
    if (!r) {
      std::cerr << "troupe: " << r.error().message() << '\n';
      return r.error().code == Rejection::Code::refused ? kFailed : kUnreachable;
    }
    std::cout << dump(to_json(r->payload), o->pretty ? 2 : -1) << '\n';
    return kOk;
  };
}

}  // namespace troupe::cli
