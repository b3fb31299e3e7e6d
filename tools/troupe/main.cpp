// troupe: the command-line tool for any troupe mesh — check, send, query, status,
// settle, deadletters, tap, trace, graph, metrics, export, keygen, asyncapi, compat, new.
// Every subcommand has --help; exit codes are listed in docs/operations.md.
//
// `troupe NAME ARGS…` for a NAME it does not know runs the executable troupe-NAME with
// ARGS, as git does (docs/operations.md "Commands of your own"): an example's or a
// user's own commands (the shop's `troupe shop load`) live with their services, and
// this tool links nothing of them.
#include "cli.hpp"

#include <troupe/runtime/node.hpp>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>
#include <utility>
#include <unistd.h>

#ifndef TROUPE_LIBEXECDIR  // where `meson install` puts troupe-NAME: PREFIX/LIBEXECDIR/troupe
#define TROUPE_LIBEXECDIR "/usr/local/libexec/troupe"
#endif
#ifndef TROUPE_LIBEXEC_FROM_BINDIR  // the same, from the bindir: found wherever the install was moved
#define TROUPE_LIBEXEC_FROM_BINDIR "../libexec/troupe"
#endif

namespace {

namespace fs = std::filesystem;

// Where troupe-NAME is looked for, in order: beside this executable (a build
// directory), libexec/troupe relative to it (an install, also one moved or staged with
// DESTDIR), the libexec/troupe of the configured prefix, PATH.
std::vector<fs::path> command_dirs() {
  std::vector<fs::path> dirs;
  std::error_code ec;
  if (auto self = fs::read_symlink("/proc/self/exe", ec); !ec) {
    dirs.push_back(self.parent_path());
    if (fs::path rel(TROUPE_LIBEXEC_FROM_BINDIR); rel.is_relative()) dirs.push_back((self.parent_path() / rel).lexically_normal());
  }
  dirs.emplace_back(TROUPE_LIBEXECDIR);
  if (const char* path = std::getenv("PATH"))
    for (std::string_view rest = path; !rest.empty();) {
      auto colon = rest.find(':');
      auto dir = rest.substr(0, colon);
      if (!dir.empty()) dirs.emplace_back(std::string(dir));
      rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    }
  return dirs;
}

// A command name is a word: troupe-NAME must name a file in those directories, never
// a path elsewhere ("../../bin/sh").
bool is_command_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '-') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  return true;
}

std::optional<fs::path> find_command(const std::string& name) {
  for (const auto& dir : command_dirs()) {
    auto candidate = dir / ("troupe-" + name);
    if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate)) return candidate;
  }
  return std::nullopt;
}

// The commands found as troupe-NAME, for --help: "  shop    (/path/troupe-shop)".
std::string found_commands() {
  std::set<std::string> seen;
  std::string out;
  for (const auto& dir : command_dirs()) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      auto file = entry.path().filename().string();
      if (!file.starts_with("troupe-") || !is_command_name(file.substr(7))) continue;
      if (::access(entry.path().c_str(), X_OK) != 0 || !seen.insert(file).second) continue;
      const auto name = file.substr(7);
      out += "  " + name + std::string(name.size() < 20 ? 20 - name.size() : 1, ' ') + "(" + entry.path().string() + ")\n";
    }
  }
  return out.empty() ? std::string() : "\nCommands of their own, found as troupe-NAME (troupe NAME --help):\n" + out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace troupe::cli;
  CLI::App app{"troupe: look into and drive a brokerless ZeroMQ service mesh"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(troupe::kVersion));
  std::vector<Runner> runners{add_check(app),   add_send(app),   add_query(app),   add_status(app),  add_settle(app),
                              add_deadletters(app), add_tap(app), add_trace(app), add_graph(app),  add_metrics(app),
                              add_export(app),  add_keygen(app), add_asyncapi(app), add_compat(app), add_new(app)};
  app.footer([] { return found_commands(); });
  if (argc > 1 && argv[1][0] != '-') {
    std::string name = argv[1];
    bool known = false;
    const std::function<bool(const CLI::App*)> all = [](const CLI::App*) { return true; };
    for (const auto* sub : std::as_const(app).get_subcommands(all)) known = known || sub->check_name(name);
    if (!known) {
      auto command = is_command_name(name) ? find_command(name) : std::nullopt;
      if (!command) {
        std::cerr << "troupe: '" << name << "' is not a troupe command, and no executable troupe-" << name
                  << " was found beside troupe, in " TROUPE_LIBEXEC_FROM_BINDIR " from it, in " TROUPE_LIBEXECDIR
                     " or on PATH (troupe --help)\n";
        return kUsage;
      }
      std::string self = command->string();
      std::vector<char*> args{self.data()};
      for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
      args.push_back(nullptr);
      ::execv(self.c_str(), args.data());
      std::cerr << "troupe: cannot run " << self << ": " << std::strerror(errno) << '\n';
      return 126;  // as a shell says it: found, but could not be run
    }
  }
  return run_app(app, runners, argc, argv, "troupe");
}
