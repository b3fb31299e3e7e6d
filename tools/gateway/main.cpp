// troupe-gateway: the mesh's HTTP edge. See gateway.hpp and docs/operations.md.
#include "gateway.hpp"

#include <troupe/adapters/toml/topology_loader.hpp>

#include <CLI/CLI.hpp>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"troupe-gateway: HTTP for the mesh: commands, queries, live events (SSE), sagas, Prometheus metrics, "
               "health, and a dashboard at /"};
  troupe::gateway::Options o;
  std::string topology = "topology/shop.toml", state_dir, listen = "127.0.0.1:8080";
  int timeout_ms = 5000, stuck_ms = 3000;
  app.add_option("--topology,-t", topology, "topology file")->capture_default_str();
  app.add_option("--state-dir", state_dir, "override the topology's state directory");
  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0: any free port, printed); beyond loopback "
                                     "only with --token")
      ->capture_default_str();
  app.add_option("--token", o.token, "require Authorization: Bearer TOKEN on every route but /healthz "
                                     "(default: $TROUPE_GATEWAY_TOKEN)");
  app.add_option("--identity", o.identity, "CURVE identity for commands and queries, a [clients.NAME]")
      ->capture_default_str();
  app.add_option("--tap-identity", o.tap_identity, "CURVE identity for the live tap, a [taps.NAME]")
      ->capture_default_str();
  app.add_option("--timeout", timeout_ms, "milliseconds for a command to be taken or a query answered")
      ->capture_default_str();
  app.add_option("--stuck-after", stuck_ms, "milliseconds a saga may wait on a service before the dashboard "
                                            "calls it stuck")
      ->capture_default_str();
  app.add_option("--max-body", o.max_body, "largest request body in bytes")->capture_default_str();
  app.add_option("--sse-clients", o.sse_clients, "concurrent /v1/events streams")->capture_default_str();
  app.add_option("--threads", o.threads, "HTTP worker threads (each open stream holds one, each ?wait too; at "
                                         "most a quarter of them wait)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1024));
  app.add_option("--sse-queue", o.sse_queue, "records queued per stream before it drops (and says so)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (o.token.empty())
    if (const char* env = std::getenv("TROUPE_GATEWAY_TOKEN"); env && *env) o.token = env;
  auto colon = listen.rfind(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no port");
    o.host = listen.substr(0, colon);
    if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']') o.host = o.host.substr(1, o.host.size() - 2);
    o.port = std::stoi(listen.substr(colon + 1));
    if (o.port < 0 || o.port > 65535 || o.host.empty()) throw std::invalid_argument("range");
  } catch (const std::exception&) {
    std::cerr << "troupe-gateway: --listen must be HOST:PORT, e.g. 127.0.0.1:8080 (got '" << listen << "')\n";
    return 2;
  }
  if (!troupe::gateway::loopback(o.host) && o.token.empty()) {
    std::cerr << "troupe-gateway: refusing to listen on " << o.host
              << " without --token: anyone who reaches it could send commands (use 127.0.0.1, or give a token)\n";
    return 2;
  }
  // Streams and waits each hold a worker: some must stay for everything else.
  if (o.sse_clients + troupe::gateway::max_waits(o) + 4 > o.threads) {
    std::cerr << "troupe-gateway: --threads " << o.threads << " is too few for --sse-clients " << o.sse_clients
              << " and " << troupe::gateway::max_waits(o) << " waiting commands (a quarter of the threads) with 4 "
              << "left for other requests: give at least " << o.sse_clients + troupe::gateway::max_waits(o) + 4
              << " threads, or fewer streams\n";
    return 2;
  }
  o.timeout = std::chrono::milliseconds(timeout_ms);
  o.stuck_after = std::chrono::milliseconds(stuck_ms);
  troupe::toml::LoadOptions lo;
  if (!state_dir.empty()) lo.state_dir = state_dir;
  auto t = troupe::toml::load_topology(topology, lo);
  if (!t) {
    std::cerr << "troupe-gateway: " << t.error().message() << '\n';
    return 2;
  }
  o.max_body = std::min(o.max_body, t->defaults.max_message_bytes);
  // Under CURVE the gateway is two identities of the topology: say at once which is
  // missing, rather than serve with every request refused.
  if (t->curve()) {
    using Role = troupe::ClientSpec::Role;
    const auto* client = t->find_client(o.identity);
    const auto* tap = t->find_client(o.tap_identity);
    if (!client || client->role != Role::client) {
      std::cerr << "troupe-gateway: " << t->file << " has no [clients." << o.identity
                << "]: add one (docs/operations.md, \"The HTTP gateway\") or name another with --identity\n";
      return 2;
    }
    if (!tap || tap->role != Role::tap) {
      std::cerr << "troupe-gateway: " << t->file << " has no [taps." << o.tap_identity
                << "]: add one (docs/operations.md, \"The HTTP gateway\") or name another with --tap-identity\n";
      return 2;
    }
  }
  try {
    return troupe::gateway::serve(*t, o);
  } catch (const std::exception& e) {
    std::cerr << "troupe-gateway: " << e.what() << '\n';
    return 1;
  }
}
