// troupe graph: the choreography from the topology — who emits what, who reacts to
// what, commands and queries — as Graphviz DOT or Mermaid.
#include "cli.hpp"

#include <algorithm>
#include <iostream>
#include <map>

namespace troupe::cli {
namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

Runner add_graph(CLI::App& app) {
  auto* cmd = app.add_subcommand("graph", "the choreography as Graphviz DOT (default) or Mermaid");
  struct Opts : Common {
    std::string format = "dot";
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("--format", o->format, "dot or mermaid")->check(CLI::IsMember({"dot", "mermaid"}))->capture_default_str();
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    bool dot = o->format == "dot";
    if (dot) {
      std::cout << "digraph \"" << t->mesh << "\" {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef3fb\", fontname=\"Helvetica\"];\n"
                << "  edge [fontname=\"Helvetica\", fontsize=10];\n  clients [shape=ellipse, fillcolor=\"#f5f5f5\", label=\"clients\"];\n";
    } else {
      std::cout << "flowchart LR\n  clients([clients])\n";
    }
    // A partitioned service is drawn once, as declared, with its count and key: its
    // instances are one service to the choreography.
    auto group_of = [&](const std::string& name) {
      const ServiceSpec* x = t->find(name);
      return x ? x->service() : name;
    };
    std::vector<ServiceSpec> declared;
    for (const auto& s : t->services)
      if (s.partition == 0) {
        declared.push_back(s);
        declared.back().name = s.service();
        std::vector<Subscription> subs;
        for (const auto& sub : s.reacts_to) {
          const std::string pub = group_of(sub.publisher);
          if (std::none_of(subs.begin(), subs.end(), [&](const Subscription& x) { return x.publisher == pub; }))
            subs.push_back({pub, sub.types, sub.line});
        }
        declared.back().reacts_to = std::move(subs);
      }
    for (const auto& s : declared) {
      std::string label = s.name;
      if (s.partitioned())
        label += (dot ? "\\n" : "<br/>") + std::string("×") + std::to_string(s.partitions) + " partitions by " + s.key;
      if (!s.answers.empty()) label += dot ? "\\nanswers: " + join(s.answers, ", ") : "<br/>answers: " + join(s.answers, ", ");
      if (dot) std::cout << "  \"" << s.name << "\" [label=\"" << label << "\"" << (s.partitioned() ? ", peripheries=2" : "") << "];\n";
      else std::cout << "  " << s.name << "[\"" << label << "\"]\n";
    }
    for (const auto& s : declared) {
      for (const auto& sub : s.reacts_to) {
        std::string types = join(sub.types, dot ? "\\n" : "<br/>");
        if (dot) std::cout << "  \"" << sub.publisher << "\" -> \"" << s.name << "\" [label=\"" << types << "\"];\n";
        else std::cout << "  " << sub.publisher << " -- \"" << types << "\" --> " << s.name << "\n";
      }
      for (const auto& route : s.sends) {
        std::string types = join(route.types, dot ? "\\n" : "<br/>");
        if (dot) std::cout << "  \"" << s.name << "\" -> \"" << route.target << "\" [style=dashed, label=\"" << types << "\"];\n";
        else std::cout << "  " << s.name << " -. \"" << types << "\" .-> " << route.target << "\n";
      }
      if (!s.accepts.empty()) {
        std::string types = join(s.accepts, dot ? "\\n" : "<br/>");
        if (dot) std::cout << "  clients -> \"" << s.name << "\" [style=dashed, color=\"#666666\", label=\"" << types << "\"];\n";
        else std::cout << "  clients -. \"" << types << "\" .-> " << s.name << "\n";
      }
    }
    if (dot) std::cout << "}\n";
    return kOk;
  };
}

}  // namespace troupe::cli
