// The `troupe` command's subcommands; what they share with other tools is
// <troupe/tools/cli.hpp>.
#pragma once

#include <troupe/tools/cli.hpp>

namespace troupe::cli {

// Subcommands (see Runner).
Runner add_check(CLI::App& app);
Runner add_send(CLI::App& app);
Runner add_query(CLI::App& app);
Runner add_status(CLI::App& app);
Runner add_deadletters(CLI::App& app);
Runner add_tap(CLI::App& app);
Runner add_trace(CLI::App& app);
Runner add_graph(CLI::App& app);
Runner add_metrics(CLI::App& app);
Runner add_export(CLI::App& app);
Runner add_keygen(CLI::App& app);
Runner add_asyncapi(CLI::App& app);
Runner add_compat(CLI::App& app);
Runner add_settle(CLI::App& app);
Runner add_new(CLI::App& app);

}  // namespace troupe::cli
