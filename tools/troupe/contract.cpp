// troupe asyncapi: the mesh's AsyncAPI 3.0 document, from the topology and the services'
// contracts. troupe compat: the breaking changes between two such documents.
#include "cli.hpp"
#include "contract_doc.hpp"

#include <troupe/runtime/builtin.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

namespace troupe::cli {
namespace {


// Every service's contract as the running mesh answers $schema; prints what failed.
std::optional<std::map<std::string, schema::Contract>> mesh_contracts(const Topology& t, const Common& o, int& code) {
  Client client(t, "asyncapi");
  client.set_identity(identity(o));
  std::map<std::string, schema::Contract> out;
  for (const auto& s : t.services) {
    auto r = client.query(s.name, builtin::SchemaQuery{}, std::chrono::milliseconds(o.timeout_ms));
    if (!r) {
      std::cerr << "troupe: " << s.name << ": $schema: " << r.error().message() << '\n';
      code = r.error().code == Rejection::Code::timeout ? kUnreachable : kFailed;
      return std::nullopt;
    }
    try {
      out[s.name] = json::parse_contract(r->contract);
    } catch (const json::ContractError& e) {
      std::cerr << "troupe: " << s.name << ": its $schema answer: " << e.what() << '\n';
      code = kFailed;
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace

// A mesh with partitioned services has no AsyncAPI document yet (each instance would be
// a channel of its own, and a contract names its service): said, not written wrong.
bool refuse_partitioned(const Topology& t, const char* what) {
  for (const auto& s : t.services)
    if (s.partition == 0 && s.partitioned()) {
      std::cerr << "troupe " << what << ": " << t.file << ": " << s.group << " is partitioned (×" << s.partitions
                << "): contracts of partitioned meshes are not written or compared yet (docs/operations.md, "
                   "Partitions)\n";
      return true;
    }
  return false;
}

Runner add_asyncapi(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "asyncapi", "the mesh's AsyncAPI 3.0 document (YAML; --json) from the topology and the services' contracts");
  struct Opts : Common {
    bool mesh = false, json = false;
    std::vector<std::string> contracts, headers;
    std::string output;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_flag("--mesh", o->mesh, "ask every running service for its contract ($schema)");
  cmd->add_option("--contracts", o->contracts,
                  "contract files, one per service (what `SERVICE --contract` prints); with --mesh, these replace "
                  "what those services answer (the mesh as it would be with a new build)");
  cmd->add_option("--messages", o->headers, "messages.hpp files whose comments describe the messages");
  cmd->add_flag("--json", o->json, "write JSON instead of YAML (what troupe compat reads)");
  cmd->add_option("--output,-o", o->output, "write to this file instead of stdout");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    if (!o->mesh && o->contracts.empty()) {
      std::cerr << "troupe asyncapi: give --mesh, --contracts FILE..., or both\n";
      return kUsage;
    }
    auto t = load(*o);
    if (!t) return kUsage;
    if (refuse_partitioned(*t, "asyncapi")) return kUsage;
    std::map<std::string, schema::Contract> contracts;
    if (o->mesh) {
      int code = kFailed;
      auto got = mesh_contracts(*t, *o, code);
      if (!got) return code;
      contracts = std::move(*got);
    }
    for (const auto& path : o->contracts) {
      auto text = read_file(path);
      if (!text) {
        std::cerr << "troupe asyncapi: " << path << ": cannot read\n";
        return kUsage;
      }
      try {
        auto c = json::parse_contract(*text);
        std::string name = c.service;
        contracts[name] = std::move(c);
      } catch (const std::exception& e) {
        std::cerr << "troupe asyncapi: " << path << ": " << e.what() << '\n';
        return kUsage;
      }
    }
    contract::Descriptions descriptions;
    for (const auto& path : o->headers) {
      auto text = read_file(path);
      if (!text) {
        std::cerr << "troupe asyncapi: " << path << ": cannot read\n";
        return kUsage;
      }
      for (auto& [type, d] : contract::descriptions_from_header(*text)) descriptions[type] = std::move(d);
    }
    std::string out;
    try {
      auto doc = contract::asyncapi(*t, contracts, descriptions);
      out = o->json ? doc.dump(2) + "\n" : "# Written by `troupe asyncapi`; do not edit.\n" + contract::to_yaml(doc);
    } catch (const std::exception& e) {
      std::cerr << "troupe asyncapi: " << e.what() << '\n';
      return kFailed;
    }
    if (o->output.empty()) {
      std::cout << out;
    } else {
      std::ofstream f(o->output, std::ios::binary);
      if (!(f << out)) {
        std::cerr << "troupe asyncapi: " << o->output << ": cannot write\n";
        return kFailed;
      }
    }
    return kOk;
  };
}

Runner add_compat(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compat", "breaking changes from one contract to another (AsyncAPI JSON from troupe asyncapi --json); "
                "exit 1 when there is one");
  struct Opts : Common {
    std::string old_file, new_file, mode = "full";
    bool mesh = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("OLD", o->old_file, "the contract deployed now")->required();
  cmd->add_option("NEW", o->new_file, "the contract to deploy (or --mesh)");
  cmd->add_flag("--mesh", o->mesh, "compare with what the running mesh speaks ($schema) instead of NEW");
  cmd->add_option("--mode", o->mode,
                  "backward: new readers read old writers; forward: old readers read new writers; full: both "
                  "(one service at a time needs full)")
      ->check(CLI::IsMember({"backward", "forward", "full"}))
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "print the findings as JSON");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    if (o->mesh == !o->new_file.empty()) {
      std::cerr << "troupe compat: give NEW or --mesh\n";
      return kUsage;
    }
    auto read_doc = [](const std::string& path) -> std::optional<compat::Mesh> {
      auto text = read_file(path);
      if (!text) {
        std::cerr << "troupe compat: " << path << ": cannot read\n";
        return std::nullopt;
      }
      auto j = contract::Json::parse(*text, nullptr, false);
      if (j.is_discarded()) {
        std::cerr << "troupe compat: " << path << ": not JSON (write it with troupe asyncapi --json)\n";
        return std::nullopt;
      }
      try {
        return contract::mesh_from_asyncapi(j);
      } catch (const std::exception& e) {
        std::cerr << "troupe compat: " << path << ": " << e.what() << '\n';
        return std::nullopt;
      }
    };
    auto old_mesh = read_doc(o->old_file);
    if (!old_mesh) return kUsage;
    std::optional<compat::Mesh> new_mesh;
    if (o->mesh) {
      auto t = load(*o);
      if (!t) return kUsage;
      if (refuse_partitioned(*t, "compat")) return kUsage;
      int code = kFailed;
      auto contracts = mesh_contracts(*t, *o, code);
      if (!contracts) return code;
      try {
        new_mesh = contract::mesh_from_asyncapi(contract::asyncapi(*t, *contracts, {}));
      } catch (const std::exception& e) {
        std::cerr << "troupe compat: the running mesh: " << e.what() << '\n';
        return kFailed;
      }
    } else {
      new_mesh = read_doc(o->new_file);
      if (!new_mesh) return kUsage;
    }
    auto mode = o->mode == "backward" ? compat::Mode::backward
                : o->mode == "forward" ? compat::Mode::forward
                                       : compat::Mode::full;
    auto report = compat::compare(*old_mesh, *new_mesh, mode);
    if (o->json) {
      auto list = [](const std::vector<compat::Finding>& v) {
        nlohmann::json a = nlohmann::json::array();
        for (const auto& f : v) a.push_back({{"where", f.where}, {"what", f.what}, {"whom", f.whom}});
        return a;
      };
      std::cout << nlohmann::json{{"mode", o->mode},
                                  {"compatible", report.breaking.empty()},
                                  {"breaking", list(report.breaking)},
                                  {"notes", list(report.notes)}}
                       .dump(2)
                << '\n';
    } else {
      for (const auto& f : report.breaking)
        std::cout << "BREAKING " << f.where << ": " << f.what << "\n         breaks " << f.whom << '\n';
      for (const auto& f : report.notes) std::cout << "note     " << f.where << ": " << f.what << " (" << f.whom << ")\n";
      std::cout << (report.breaking.empty() ? "compatible" : std::to_string(report.breaking.size()) + " breaking change(s)")
                << " (" << o->mode << ")\n";
    }
    return report.breaking.empty() ? kOk : kFailed;
  };
}

}  // namespace troupe::cli
