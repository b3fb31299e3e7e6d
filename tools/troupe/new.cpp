// troupe new mesh DIR | troupe new service NAME: from zero to a mesh of your own. The
// project builds against the installed troupe through pkg-config; its files are
// tools/troupe/templates/ (docs/operations.md "A mesh of your own").
#include "cli.hpp"
#include "templates.hpp"

#include <troupe/adapters/toml/topology_loader.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>

namespace troupe::cli {
namespace {

namespace fs = std::filesystem;

// A name that is a C++ identifier, a file name and a topology name at once.
std::optional<std::string> bad_name(const std::string& name, const char* what) {
  static const std::set<std::string> keywords{
      "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch",
      "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept", "const", "consteval", "constexpr",
      "constinit", "const_cast", "continue", "co_await", "co_return", "co_yield", "decltype", "default", "delete",
      "do", "double", "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false", "float", "for",
      "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
      "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register", "reinterpret_cast",
      "requires", "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast", "struct",
      "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid", "typename",
      "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq",
      "troupe", "std", "main", "test", "build", "tests", "services"};
  static const std::regex word("[a-z][a-z0-9_]{0,39}");
  if (!std::regex_match(name, word))
    return std::string(what) + " '" + name + "': use 1 to 40 lower-case letters, digits and _, starting with a letter";
  if (keywords.count(name)) return std::string(what) + " '" + name + "' is reserved (a C++ keyword or a name the project uses)";
  return std::nullopt;
}

std::string camel(const std::string& name) {
  std::string out;
  bool up = true;
  for (char c : name) {
    if (c == '_') {
      up = true;
      continue;
    }
    out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    up = false;
  }
  return out;
}

std::string fill(std::string_view text, const std::map<std::string, std::string>& values) {
  std::string out(text);
  for (const auto& [key, value] : values)
    for (std::size_t at = 0; (at = out.find("{{" + key + "}}", at)) != std::string::npos; at += value.size())
      out.replace(at, key.size() + 4, value);
  return out;
}

// The C++ namespace of a mesh's code: the mesh's name with a suffix, so that no mesh
// name ("time", "tally", "greet") collides with a C library name, a service or a rule.
std::string mesh_namespace(const std::string& mesh) { return mesh + "_mesh"; }

// Writes `text` to `path` (making its directories) through a temporary file renamed
// into place: a failure leaves the old file whole. False, with the reason printed.
bool write(const fs::path& path, const std::string& text, bool executable) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  const fs::path temporary = path.string() + ".troupe-new";
  std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out || (fs::rename(temporary, path, ec), ec)) {
    std::cerr << "troupe new: cannot write " << path.string() << (ec ? ": " + ec.message() : std::string()) << '\n';
    fs::remove(temporary, ec);
    return false;
  }
  if (executable)
    fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec, fs::perm_options::add,
                    ec);
  return true;
}

int new_mesh(const std::string& dir, std::string name) {
  if (dir.empty()) {  // an unset $DIR in a script must not write into the working directory
    std::cerr << "troupe new: the project's directory is empty; name one (troupe new mesh DIR)\n";
    return kUsage;
  }
  if (name.empty()) {
    // The directory's own name, made a name: "my-mesh" -> "my_mesh".
    name = fs::path(dir).lexically_normal().filename().string();
    if (name.empty() || name == "." || name == "..") name = fs::absolute(dir).lexically_normal().parent_path().filename().string();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
      return std::isalnum(c) ? static_cast<char>(std::tolower(c)) : '_';
    });
    if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0]))) name = "mesh_" + name;
    name = name.substr(0, 40);
  }
  if (auto bad = bad_name(name, "mesh name")) {
    std::cerr << "troupe new: " << *bad << " (--name NAME)\n";
    return kUsage;
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec))) {
    std::cerr << "troupe new: " << dir << " exists and is not an empty directory; nothing was written\n";
    return kFailed;
  }
  const std::map<std::string, std::string> values{{"mesh", name}, {"mesh_ns", mesh_namespace(name)}};
  std::size_t written = 0;
  for (const auto& f : templates::files()) {
    if (!f.path.starts_with("mesh/")) continue;
    if (!write(fs::path(dir) / std::string(f.path.substr(5)), fill(f.text, values), f.executable)) return kFailed;
    ++written;
  }
  std::cout << "troupe new: wrote the mesh '" << name << "' to " << dir << " (" << written
            << " files: services greeter and tally)\n"
            << "next:\n  cd " << dir << "\n  meson setup build && meson test -C build\n"
            << "  ./mesh up && troupe send --topology topology.toml --wait greeter Greet '{\"name\":\"Ada\"}'\n";
  return kOk;
}

int new_service(const std::string& dir, const std::string& name) {
  if (auto bad = bad_name(name, "service name")) {
    std::cerr << "troupe new: " << *bad << '\n';
    return kUsage;
  }
  const fs::path root(dir), topology_file = root / "topology.toml", build_file = root / "meson.build";
  auto topology_text = read_file(topology_file.string());
  auto build_text = read_file(build_file.string());
  if (!topology_text || !build_text) {
    std::cerr << "troupe new: " << (topology_text ? build_file : topology_file).string()
              << " cannot be read: run troupe new service in a project made by troupe new mesh (or --dir DIR)\n";
    return kUsage;
  }
  auto topology = toml::parse_topology(*topology_text, topology_file.string(), {.state_dir = std::nullopt, .check = false});
  if (!topology) {
    std::cerr << "troupe new: " << topology.error().message() << '\n';
    return kUsage;
  }
  if (auto bad = bad_name(topology->mesh, "the mesh's [mesh] name")) {
    std::cerr << "troupe new: " << topology_file.string() << ": " << *bad << " (it names the code's namespace)\n";
    return kUsage;
  }
  for (const auto& s : topology->services)
    if (s.name == name || s.name.starts_with(name + ".")) {
      std::cerr << "troupe new: " << topology_file.string() << " already has a service '" << name << "'\n";
      return kFailed;
    }
  for (const auto& taken : {root / "services" / name, root / "tests" / (name + "_test.cpp")})
    if (std::error_code ec; fs::exists(fs::symlink_status(taken, ec))) {
      std::cerr << "troupe new: " << taken.string() << " exists; nothing was written\n";
      return kFailed;
    }
  // The build's list of services: "services = ['greeter', 'tally']" gets ", 'NAME'".
  static const std::regex list(R"((^|\n)(services = \[[^\]\n]*)\])");
  std::smatch m;
  if (!std::regex_search(*build_text, m, list)) {
    std::cerr << "troupe new: " << build_file.string()
              << " has no line \"services = [...]\" to add '" << name << "' to; nothing was written\n";
    return kFailed;
  }
  // "services = [" + what it lists, with trailing blanks and a trailing comma taken off.
  std::string listed = m[2].str();
  while (!listed.empty() && (listed.back() == ' ' || listed.back() == ',')) listed.pop_back();
  std::string new_build = build_text->substr(0, m.position(2)) + listed + (listed.ends_with("[") ? "" : ", ") + "'" +
                          name + "']" + build_text->substr(m.position(0) + m.length(0));
  const std::string mesh_ns = mesh_namespace(topology->mesh);
  const std::map<std::string, std::string> values{{"mesh", topology->mesh}, {"mesh_ns", mesh_ns}, {"name", name},
                                                  {"Name", camel(name)}};
  std::string section;
  for (const auto& f : templates::files())
    if (f.path == "service/topology.toml") section = fill(f.text, values);
  std::string new_topology = *topology_text + (topology_text->ends_with("\n") ? "" : "\n") + section;
  // The project as it will be must still load (also what `troupe check` will say).
  if (auto again = toml::parse_topology(new_topology, topology_file.string()); !again) {
    std::cerr << "troupe new: with '" << name << "' added, " << again.error().message() << "; nothing was written\n";
    return kFailed;
  }
  std::vector<std::string> wrote;
  for (const auto& f : templates::files()) {
    if (!f.path.starts_with("service/") || f.path == "service/topology.toml") continue;
    std::string file(f.path.substr(8));
    fs::path target = file == "test.cpp"  ? root / "tests" / (name + "_test.cpp")
                      : file == "NAME.hpp" ? root / "services" / name / (name + ".hpp")
                      : file == "NAME.cpp" ? root / "services" / name / (name + ".cpp")
                                           : root / "services" / name / file;
    if (!write(target, fill(f.text, values), f.executable)) return kFailed;
    wrote.push_back(target.string());
  }
  if (!write(topology_file, new_topology, false) || !write(build_file, new_build, false)) return kFailed;
  std::cout << "troupe new: added the service '" << name << "' (accepts Record" << camel(name) << ", publishes "
            << camel(name) << "Recorded, answers Get" << camel(name) << ")\n";
  for (const auto& w : wrote) std::cout << "  wrote " << w << '\n';
  std::cout << "  added [services." << name << "] to " << topology_file.string() << " and '" << name << "' to "
            << build_file.string() << "\nnext: ninja -C build && ./mesh up\n";
  return kOk;
}

}  // namespace

Runner add_new(CLI::App& app) {
  auto* cmd = app.add_subcommand("new", "write a new mesh project (troupe new mesh DIR) or add a service to one "
                                        "(troupe new service NAME)");
  cmd->require_subcommand(1);
  struct Opts {
    std::string dir, name, service, project = ".";
  };
  auto o = std::make_shared<Opts>();
  auto* mesh = cmd->add_subcommand("mesh", "a project of two services (greeter, tally) in DIR, built against the "
                                           "installed troupe (pkg-config), with its tests, topology and ./mesh script");
  mesh->add_option("DIR", o->dir, "the new project's directory (absent or empty)")->required();
  mesh->add_option("--name", o->name, "the mesh's name (default: DIR's name)");
  auto* service = cmd->add_subcommand("service", "add a service to the project in --dir: its files, its "
                                                 "[services.NAME] in topology.toml, NAME in meson.build's services");
  service->add_option("NAME", o->service, "the service's name")->required();
  service->add_option("--dir", o->project, "the project's directory")->capture_default_str();
  return [o, cmd, mesh, service]() -> int {
    if (!*cmd) return -1;
    if (*mesh) return new_mesh(o->dir, o->name);
    if (*service) return new_service(o->project, o->service);
    return kUsage;
  };
}

}  // namespace troupe::cli
