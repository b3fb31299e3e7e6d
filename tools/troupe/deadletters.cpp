// troupe deadletters list|show|retry SERVICE [ID|--all]: what a service refused, and why.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>

#include <algorithm>
#include <iomanip>
#include <set>
#include <iostream>

namespace troupe::cli {

Runner add_deadletters(CLI::App& app) {
  auto* cmd = app.add_subcommand("deadletters", "list, show or retry the messages a service refused");
  struct Opts : Common {
    std::string op, service;
    std::int64_t id = 0;
    bool json = false, all = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("OP", o->op, "list, show or retry")->required()->check(CLI::IsMember({"list", "show", "retry"}));
  cmd->add_option("SERVICE", o->service, "the service")->required();
  cmd->add_option("ID", o->id, "the dead letter's id (show, retry)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_flag("--all", o->all,
                "retry: every letter the service keeps, oldest first; letters that cannot be retried are counted "
                "and skipped (exit 1 when any is left)");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    if (o->op != "list" && o->id == 0 && !(o->op == "retry" && o->all)) {
      std::cerr << "troupe: deadletters " << o->op << " needs an ID" << (o->op == "retry" ? " (or --all)" : "") << "\n";
      return kUsage;
    }
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, identity(*o));  // the source it writes is who it is (checked under CURVE)
    client.set_identity(identity(*o));
    // A partitioned service's letters are kept by each instance: list and retry --all
    // go through every instance in turn; show and retry of one letter name the instance.
    auto instances = t->instances(o->service);
    if (instances.size() > 1 && !(o->op == "list" || (o->op == "retry" && o->all))) {
      std::cerr << "troupe: " << o->service << " is partitioned, and each instance numbers its own letters: name it ("
                << o->service << ".0 … " << o->service << "." << instances.size() - 1 << "), as `troupe deadletters list "
                << o->service << "` shows\n";
      return kUsage;
    }
    auto one = [&](const std::string& service) -> int {
      if (o->op == "retry" && o->all) {
        // Every kept letter, oldest first, a page at a time (a list answers at most 1000);
        // a letter that cannot be retried (refused at the door, a query) is counted and
        // skipped, not a reason to stop.
        auto timeout = std::chrono::milliseconds(o->timeout_ms);
        std::size_t ok = 0, again = 0, skipped = 0, total = 0;
        std::set<std::int64_t> done;
        nlohmann::json results = nlohmann::json::array();
        while (true) {
          auto list = client.query(service, builtin::ListDeadLetters{"list", 0, 1000}, timeout);
          if (!list) {
            std::cerr << "troupe: " << list.error().message() << '\n';
            return list.error().code == Rejection::Code::timeout ? kUnreachable : kFailed;
          }
          std::vector<std::int64_t> ids;
          for (const auto& l : list->letters)
            if (!done.count(l.id)) ids.push_back(l.id);
          if (ids.empty()) break;  // every letter listed was tried once
          std::sort(ids.begin(), ids.end());
          for (auto id : ids) {
            done.insert(id);
            ++total;
            auto r = client.query(service, builtin::RetryDeadLetter{"retry", id, 1}, timeout);
            if (!r && r.error().code == Rejection::Code::timeout) {
              std::cerr << "troupe: dead letter " << id << ": " << r.error().message() << '\n';
              return kUnreachable;
            }
            if (!r) {
              ++skipped;
              results.push_back({{"id", id}, {"ok", false}, {"skipped", r.error().message()}});
              continue;
            }
            (r->ok ? ok : again) += 1;
            results.push_back({{"id", id}, {"ok", r->ok}, {"attempts", r->attempts}});
          }
        }
        if (o->json)
          std::cout << dump({{"retried", total}, {"ok", ok}, {"refused_again", again}, {"not_retryable", skipped},
                             {"letters", results}},
                            2)
                    << '\n';
        else
          std::cout << service << ": retried " << total << " dead letter(s): " << ok << " handled, " << again
                    << " refused again, " << skipped << " not retryable\n";
        return again == 0 && skipped == 0 ? kOk : kFailed;
      }
      builtin::DeadLettersRequest req{o->op, o->id, 1000};
      auto r = client.query_raw(service, std::string(builtin::kDeadLetters), codec::encode(req),
                                std::chrono::milliseconds(o->timeout_ms));
      if (!r) {
        std::cerr << "troupe: " << r.error().message() << '\n';
        return r.error().code == Rejection::Code::refused ? kFailed : kUnreachable;
      }
      auto j = to_json(r->payload);
      if (o->json || o->op == "show") {
        std::cout << dump(j, 2) << '\n';
        return kOk;
      }
      if (o->op == "retry") {
        bool ok = j.value("ok", false);
        std::cout << "dead letter " << o->id << (ok ? ": handled, removed\n" : ": refused again, kept\n");
        return ok ? kOk : kFailed;
      }
      std::cout << service << ": " << j.value("count", 0) << " dead letter(s)\n";
      if (j.contains("letters"))
        for (const auto& l : j["letters"])
          std::cout << std::setw(6) << l.value("id", 0) << "  " << printable(l.value("time", "")) << "  "
                    << std::left << std::setw(16) << printable(l.value("endpoint", "")) << std::setw(16)
                    << printable(l.value("type", "")) << printable(l.value("reason", "")) << std::right << '\n';
      return kOk;
    };
    if (instances.size() <= 1) return one(o->service);
    int worst = kOk;
    for (const auto* i : instances)
      if (int rc = one(i->name); rc != kOk) worst = rc;
    return worst;
  };
}

}  // namespace troupe::cli
