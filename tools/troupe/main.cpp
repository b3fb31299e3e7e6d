// troupe: the command-line tool for a troupe mesh — check, send, query, status,
// deadletters, tap, trace, graph, metrics, asyncapi, compat, and for the example shop verify and
// load. Every subcommand has --help; exit codes are listed in docs/operations.md.
#include "cli.hpp"

#include <troupe/runtime/node.hpp>

#include <spdlog/spdlog.h>

#include <iostream>

int main(int argc, char** argv) {
  using namespace troupe::cli;
  CLI::App app{"troupe: look into and drive a brokerless ZeroMQ service mesh"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(troupe::kVersion));
  std::vector<Runner> runners{add_check(app), add_send(app), add_query(app), add_status(app),
                              add_deadletters(app), add_verify(app), add_load(app), add_tap(app),
                              add_trace(app), add_graph(app), add_metrics(app), add_export(app),
                              add_keygen(app), add_asyncapi(app), add_compat(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }
  spdlog::set_level(spdlog::level::warn);
  try {
    for (auto& run : runners) {
      int code = run();
      if (code >= 0) return code;
    }
  } catch (const std::exception& e) {
    std::cerr << "troupe: " << e.what() << '\n';
    return kFailed;
  }
  return kUsage;
}
