// troupe check: validates a topology and reports every finding with file:line.
#include "cli.hpp"

#include <troupe/adapters/json/contract.hpp>
#include <troupe/adapters/sqlite/sqlite_store.hpp>
#include <troupe/domain/schema.hpp>

#include <filesystem>
#include <iostream>

namespace troupe::cli {

Runner add_check(CLI::App& app) {
  auto* cmd = app.add_subcommand("check", "validate a topology file (errors exit 1, warnings do not)");
  struct Opts : Common {
    bool list = false, print_state_dir = false, print_host = false, print_security = false, json = false;
    std::vector<std::string> contracts;
  };
  auto c = std::make_shared<Opts>();
  add_common(*cmd, *c);
  cmd->add_flag("--list", c->list,
                "print only the service names, one a line (for scripts; given with --print-* flags, each "
                "prints one line, in the order state dir, host, security, then the services)");
  cmd->add_flag("--print-state-dir", c->print_state_dir, "print only the state directory (for scripts)");
  cmd->add_flag("--print-host", c->print_host, "print only [mesh] host, the one-process executable, if any");
  cmd->add_flag("--print-security", c->print_security, "print only [mesh] security: none or curve");
  cmd->add_flag("--json", c->json,
                "print {\"file\", \"valid\", \"services\", \"errors\", \"warnings\"} (each finding {\"where\", "
                "\"message\"}) instead of lines");
  cmd->add_option("--contracts", c->contracts,
                  "contracts written by SERVICE --contract: a partitioned service's types must carry its key field")
      ->check(CLI::ExistingFile);
  return [c, cmd]() -> int {
    if (!*cmd) return -1;
    bool scripted = c->list || c->print_state_dir || c->print_host || c->print_security;
    if (c->json && scripted) {
      std::cerr << "troupe: check --json reports findings; --list and --print-* print one value each\n";
      return kUsage;
    }
    // --json: {"file", "valid", "services", "errors", "warnings"}, a finding's text
    // "WHERE: WHAT" (file:line, or a path) kept as {"where", "message"}.
    auto print_json = [](const std::string& file, std::size_t services, const std::vector<TopologyIssue>& issues) {
      nlohmann::json out{{"file", file}, {"services", services}, {"errors", nlohmann::json::array()},
                         {"warnings", nlohmann::json::array()}};
      for (const auto& issue : issues) {
        const auto at = issue.message.find(": ");
        out[issue.severity == TopologyIssue::Severity::error ? "errors" : "warnings"].push_back(
            at == std::string::npos
                ? nlohmann::json{{"where", ""}, {"message", issue.message}}
                : nlohmann::json{{"where", issue.message.substr(0, at)}, {"message", issue.message.substr(at + 2)}});
      }
      out["valid"] = out["errors"].empty();
      std::cout << dump(out, 2) << '\n';
      return out["errors"].empty() ? kOk : kFailed;
    };
    auto t = load_result(*c, /*check=*/scripted);
    if (!t) {
      if (!c->json) {
        std::cerr << "troupe: " << t.error().message() << '\n';
        return kFailed;
      }
      // A topology that does not even load is a finding too, not a line on stderr.
      print_json(c->topology, 0, {{TopologyIssue::Severity::error, t.error().message()}});
      return kFailed;
    }
    if (scripted) {
      if (c->print_state_dir) std::cout << t->defaults.state_dir << '\n';
      if (c->print_host) std::cout << t->defaults.host << '\n';
      if (c->print_security) std::cout << t->defaults.security << '\n';
      if (c->list)
        for (const auto& s : t->services) std::cout << s.name << '\n';
      return kOk;
    }
    int errors = 0, warnings = 0;
    std::vector<TopologyIssue> issues = check_topology(*t);
    for (const auto& path : c->contracts) {
      auto text = read_file(path);
      try {
        if (!text) throw std::runtime_error("cannot read");
        auto contract = json::parse_contract(*text);
        auto instances = t->instances(contract.service);
        if (instances.empty())
          issues.push_back({TopologyIssue::Severity::warning,
                            path + ": the contract of '" + contract.service + "', which is no service of the mesh"});
        else
          for (auto& i : check_partition_keys(*t, *instances.front(), contract)) issues.push_back(std::move(i));
      } catch (const std::exception& e) {
        issues.push_back({TopologyIssue::Severity::error, path + ": " + e.what()});
      }
    }
    // The stores in the state directory: a count other than the topology's would re-hash
    // every key (docs/operations.md, "Changing the partition count").
    if (t->defaults.durability == Durability::durable)
      for (const auto& s : t->services) {
        if (s.partition > 0) continue;
        const std::string group(s.service());
        std::error_code ec;
        const std::string other = other_layout_store(t->defaults.state_dir, s);
        if (std::filesystem::exists(other, ec))
          issues.push_back({TopologyIssue::Severity::error,
                            t->file + ":" + std::to_string(s.line) + ": " + other + " is the store of " +
                                (s.partitioned() ? "an unpartitioned " : "a partitioned ") + group +
                                ", and the topology says " + std::to_string(s.partitions) +
                                " partition(s) (docs/operations.md, \"Changing the partition count\")"});
        for (const auto* i : t->instances(group)) {
          const std::string db = t->defaults.state_dir + "/" + i->name + ".db";
          auto differs = partition_record_mismatch(*i, adapters::SqliteStore::peek(db, "$node", "partitions"),
                                                   adapters::SqliteStore::peek(db, "$node", "partition key"));
          if (!differs.empty())
            issues.push_back({TopologyIssue::Severity::error, t->file + ":" + std::to_string(s.line) + ": " + db +
                                                                   " was " + differs +
                                                                   " (docs/operations.md, \"Changing the partition count\")"});
        }
      }
    if (c->json) return print_json(t->file, t->services.size(), issues);
    for (const auto& issue : issues) {
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
