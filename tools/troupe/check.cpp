// troupe check: validates a topology and reports every finding with file:line.
#include "cli.hpp"

#include <iostream>

namespace troupe::cli {

Runner add_check(CLI::App& app) {
  auto* cmd = app.add_subcommand("check", "validate a topology file (errors exit 1, warnings do not)");
  auto c = std::make_shared<Common>();
  add_common(*cmd, *c);
  return [c, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*c, /*check=*/false);
    if (!t) return kFailed;
    int errors = 0, warnings = 0;
    for (const auto& issue : check_topology(*t)) {
      bool error = issue.severity == TopologyIssue::Severity::error;
      (error ? errors : warnings)++;
      std::cout << issue.message.substr(0, issue.message.find(": ") + 2)
                << (error ? "error: " : "warning: ") << issue.message.substr(issue.message.find(": ") + 2)
                << '\n';
    }
    std::cout << t->file << ": " << (errors ? "INVALID" : "OK") << " (" << t->services.size()
              << " services, " << errors << " error(s), " << warnings << " warning(s))\n";
    return errors ? kFailed : kOk;
  };
}

}  // namespace troupe::cli
