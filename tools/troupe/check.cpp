// troupe check: validates a topology and reports every finding with file:line.
#include "cli.hpp"

#include <iostream>

namespace troupe::cli {

Runner add_check(CLI::App& app) {
  auto* cmd = app.add_subcommand("check", "validate a topology file (errors exit 1, warnings do not)");
  struct Opts : Common {
    bool list = false, print_state_dir = false, print_host = false, print_security = false;
  };
  auto c = std::make_shared<Opts>();
  add_common(*cmd, *c);
  cmd->add_flag("--list", c->list, "print only the service names, one a line (for scripts)");
  cmd->add_flag("--print-state-dir", c->print_state_dir, "print only the state directory (for scripts)");
  cmd->add_flag("--print-host", c->print_host, "print only [mesh] host, the one-process executable, if any");
  cmd->add_flag("--print-security", c->print_security, "print only [mesh] security: none or curve");
  return [c, cmd]() -> int {
    if (!*cmd) return -1;
    bool scripted = c->list || c->print_state_dir || c->print_host || c->print_security;
    auto t = load(*c, /*check=*/scripted);
    if (!t) return kFailed;
    if (scripted) {
      if (c->print_state_dir) std::cout << t->defaults.state_dir << '\n';
      if (c->print_host) std::cout << t->defaults.host << '\n';
      if (c->print_security) std::cout << t->defaults.security << '\n';
      if (c->list)
        for (const auto& s : t->services) std::cout << s.name << '\n';
      return kOk;
    }
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
