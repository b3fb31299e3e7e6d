// troupe send / troupe query: the asynchronous and the synchronous call, from JSON.
#include "cli.hpp"

#include <iostream>

namespace troupe::cli {

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
    if (o->wait) client.watch();
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
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o->timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      auto ev = client.next_event(left);
      if (!ev) break;
      if (ev->envelope.causationid == sent->id) {
        std::cout << dump(cloudevent(ev->envelope, ev->payload)) << '\n';
        return kOk;
      }
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
