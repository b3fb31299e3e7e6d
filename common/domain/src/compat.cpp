// The compatibility rules: which reader/writer pairs a change makes, and what stops a
// reader of one schema from reading what a writer of another writes.
#include <troupe/domain/compat.hpp>

#include <algorithm>
#include <set>

namespace troupe::compat {
namespace {

using schema::Shape;
using Kind = Shape::Kind;

std::string kind_name(const Shape& s) {
  switch (s.kind) {
    case Kind::boolean: return "boolean";
    case Kind::integer: return "integer (" + s.format + ")";
    case Kind::number: return "number";
    case Kind::string: return "string";
    case Kind::bytes: return "binary";
    case Kind::array: return "array";
    case Kind::map: return "map";
    case Kind::tuple: return "tuple of " + std::to_string(s.items.size());
    case Kind::any_of: return "one of " + std::to_string(s.items.size()) + " alternatives";
    case Kind::object: return s.title.empty() ? "object" : "object " + s.title;
  }
  return "?";
}

// "int32" -> {signed, 32}; anything unreadable counts as a signed 64-bit integer.
std::pair<bool, int> int_format(const std::string& f) {
  bool is_signed = f.rfind("uint", 0) != 0;
  std::string digits = f.substr(is_signed ? 3 : 4);
  int bits = 64;
  try {
    if (!digits.empty()) bits = std::stoi(digits);
  } catch (...) {
  }
  return {is_signed, bits};
}

// Does every integer the writer's format holds fit the reader's?
bool int_fits(const std::string& writer, const std::string& reader) {
  auto [ws, wb] = int_format(writer);
  auto [rs, rb] = int_format(reader);
  if (rs) return ws ? wb <= rb : wb < rb;
  return !ws && wb <= rb;
}

std::string at(const std::string& path) { return path.empty() ? "" : "field '" + path + "': "; }
std::string join(const std::string& base, const std::string& name) { return base.empty() ? name : base + "." + name; }

bool readable(const Shape& w, const Shape& r) { return read_problems(w, r, "").empty(); }

}  // namespace

std::vector<std::string> read_problems(const Shape& w, const Shape& r, const std::string& path) {
  std::vector<std::string> out;
  if (w.nullable && !r.nullable)
    out.push_back(at(path) + "may be written as nil, which the reader does not take");
  auto mismatch = [&] {
    out.push_back(at(path) + "written as " + kind_name(w) + ", read as " + kind_name(r));
  };
  // Alternatives: each the writer may write must be readable as one the reader knows.
  if (w.kind == Kind::any_of || r.kind == Kind::any_of) {
    std::vector<const Shape*> written, known;
    if (w.kind == Kind::any_of) for (const auto& i : w.items) written.push_back(&i); else written.push_back(&w);
    if (r.kind == Kind::any_of) for (const auto& i : r.items) known.push_back(&i); else known.push_back(&r);
    for (const Shape* x : written)
      if (std::none_of(known.begin(), known.end(), [&](const Shape* k) { return readable(*x, *k); }))
        out.push_back(at(path) + "may be written as " + kind_name(*x) + ", which the reader's " +
                      kind_name(r) + " does not take");
    return out;
  }
  if (r.kind == Kind::number && (w.kind == Kind::number || w.kind == Kind::integer)) return out;
  if (w.kind != r.kind) {
    mismatch();
    return out;
  }
  switch (r.kind) {
    case Kind::integer:
      if (!int_fits(w.format, r.format))
        out.push_back(at(path) + "written as " + w.format + ", read as " + r.format + ": not every value fits");
      break;
    case Kind::array:
    case Kind::map: {
      auto sub = read_problems(w.items.at(0), r.items.at(0), path + (r.kind == Kind::array ? "[]" : ".*"));
      out.insert(out.end(), sub.begin(), sub.end());
      break;
    }
    case Kind::tuple:
      if (w.items.size() != r.items.size()) {
        mismatch();
        break;
      }
      for (std::size_t i = 0; i < r.items.size(); ++i) {
        auto sub = read_problems(w.items[i], r.items[i], path + "[" + std::to_string(i) + "]");
        out.insert(out.end(), sub.begin(), sub.end());
      }
      break;
    case Kind::object:
      for (const auto& rp : r.properties) {
        std::string p = join(path, rp.name);
        auto wp = std::find_if(w.properties.begin(), w.properties.end(),
                               [&](const schema::Property& x) { return x.name == rp.name; });
        if (wp == w.properties.end()) {
          if (rp.required) out.push_back("field '" + p + "': required by the reader, no longer written");
          continue;
        }
        Shape written = wp->shape;
        if (rp.required && !wp->required) {
          out.push_back("field '" + p + "': optional for the writer (may be absent), required by the reader");
          written.nullable = rp.shape.nullable;  // said once, above
        }
        auto sub = read_problems(written, rp.shape, p);
        out.insert(out.end(), sub.begin(), sub.end());
      }
      break;
    default: break;
  }
  return out;
}

Report compare(const Mesh& o, const Mesh& n, Mode mode) {
  Report report;
  const bool backward = mode != Mode::forward, forward = mode != Mode::backward;
  auto contract = [](const Mesh& m, const std::string& service) -> const schema::Contract* {
    auto it = m.services.find(service);
    return it == m.services.end() ? nullptr : &it->second;
  };
  auto schema_of = [](const schema::Contract* c, const std::string& type) -> const schema::MessageSchema* {
    if (!c) return nullptr;
    auto it = c->messages.find(type);
    return it == c->messages.end() ? nullptr : &it->second;
  };
  auto has = [](const std::vector<std::string>& v, const std::string& t) {
    return std::find(v.begin(), v.end(), t) != v.end();
  };
  auto check = [&](const std::string& where, const std::string& whom, const schema::MessageSchema* writer,
                   const schema::MessageSchema* reader, const char* writer_build, const char* reader_build) {
    if (!writer || !reader) return;
    for (auto& p : read_problems(writer->shape, reader->shape))
      report.breaking.push_back({where, p + " (" + writer_build + " schemaversion " + std::to_string(writer->version) +
                                            ", " + reader_build + " schemaversion " + std::to_string(reader->version) + ")",
                                 whom});
  };

  // One writer and one reader, each in an old and a new build. Only the pairs the
  // change makes are checked: an unchanged reader already read the old writer, an
  // unchanged writer already wrote for the old reader; when both change, the end state
  // too. What was broken before the change is said as a note.
  auto same = [](const schema::MessageSchema* a, const schema::MessageSchema* b) { return a && b && *a == *b; };
  auto pairs = [&](const std::string& where, const std::string& reader, const schema::MessageSchema* old_writer,
                   const schema::MessageSchema* new_writer, const schema::MessageSchema* old_reader,
                   const schema::MessageSchema* new_reader) {
    if (backward && !same(old_reader, new_reader))
      check(where, reader + " (new build) reads it", old_writer, new_reader, "written by the old build",
            "read by the new");
    if (forward && !same(old_writer, new_writer))
      check(where, reader + " (old build) reads it", new_writer, old_reader, "written by the new build",
            "read by the old");
    if (!same(old_writer, new_writer) && !same(old_reader, new_reader))
      check(where, reader + " (new build) reads it", new_writer, new_reader, "written by the new build",
            "read by the new");
    if (old_writer && old_reader && same(old_writer, new_writer) && same(old_reader, new_reader))
      for (auto& p : read_problems(old_writer->shape, old_reader->shape))
        report.notes.push_back({where, p, "broken before this change: " + reader + " cannot read it now"});
  };

  // Events: every (consumer, publisher, type) either topology has — a reaction the new
  // one drops still runs in the old build of its consumer until that is replaced.
  std::map<std::string, std::map<std::string, std::set<std::string>>> relations;
  for (const auto* m : {&o, &n})
    for (const auto& [consumer, publishers] : m->reacts_to)
      for (const auto& [publisher, types] : publishers) relations[consumer][publisher].insert(types.begin(), types.end());
  for (const auto& [consumer, publishers] : relations)
    for (const auto& [publisher, types] : publishers)
      for (const auto& type : types) {
        std::string where = "event " + type + " of " + publisher;
        const auto* np = contract(n, publisher);
        const auto* op = contract(o, publisher);
        // Dropped: the old build declared it, the new one does not (a build that declares
        // nothing drops it only when it does not even know the type).
        if (np && op && has(op->publishes, type) && !has(np->publishes, type) &&
            (!np->publishes.empty() || !np->messages.count(type))) {
          report.breaking.push_back({where, "no longer published", consumer + " reacts to it"});
          continue;
        }
        pairs(where, consumer, schema_of(contract(o, publisher), type), schema_of(np, type),
              schema_of(contract(o, consumer), type), schema_of(contract(n, consumer), type));
      }

  // Commands one service sends another, as each build of the sender writes them.
  std::map<std::string, std::map<std::string, std::set<std::string>>> sent;  // sender -> target -> types
  for (const auto* m : {&o, &n})
    for (const auto& [sender, c] : m->services)
      for (const auto& [target, types] : c.sends) sent[sender][target].insert(types.begin(), types.end());
  for (const auto& [sender, targets] : sent)
    for (const auto& [target, types] : targets)
      for (const auto& type : types)
        pairs("command " + type + " from " + sender + " to " + target, target, schema_of(contract(o, sender), type),
              schema_of(contract(n, sender), type), schema_of(contract(o, target), type),
              schema_of(contract(n, target), type));

  // Commands and queries: what a service takes, as its clients were written for it.
  for (const auto& [service, oc] : o.services) {
    const auto* nc = contract(n, service);
    if (!nc) continue;  // a service removed from the mesh: the topology's change, not a schema's
    for (const auto& type : oc.accepts) {
      std::string where = "command " + type + " to " + service;
      if (!has(nc->accepts, type)) {
        report.breaking.push_back({where, "no longer accepted", "clients and services that send it"});
        continue;
      }
      if (backward)
        check(where, service + " (new build) reads what old clients send", schema_of(&oc, type), schema_of(nc, type),
              "sent as the old contract says", "read by the new build");
      if (forward)
        check(where, service + " (old build) reads what new clients send", schema_of(nc, type), schema_of(&oc, type),
              "sent as the new contract says", "read by the old build");
    }
    for (const auto& [query, reply] : oc.answers) {
      std::string where = "query " + query + " to " + service;
      auto nq = nc->answers.find(query);
      if (nq == nc->answers.end()) {
        report.breaking.push_back({where, "no longer answered", "clients that ask it"});
        continue;
      }
      if (backward) {
        check(where, service + " (new build) reads what old clients ask", schema_of(&oc, query), schema_of(nc, query),
              "asked as the old contract says", "read by the new build");
        check("reply " + reply + " to " + query + " of " + service, "new clients read it", schema_of(&oc, reply),
              schema_of(nc, nq->second), "answered by the old build", "read as the new contract says");
      }
      if (forward) {
        check(where, service + " (old build) reads what new clients ask", schema_of(nc, query), schema_of(&oc, query),
              "asked as the new contract says", "read by the old build");
        check("reply " + reply + " to " + query + " of " + service, "old clients read it", schema_of(nc, nq->second),
              schema_of(&oc, reply), "answered by the new build", "read as the old contract says");
      }
    }
  }

  // Changed schemas that kept their version.
  for (const auto& [service, oc] : o.services) {
    const auto* nc = contract(n, service);
    if (!nc) continue;
    for (const auto& [type, om] : oc.messages) {
      const auto* nm = schema_of(nc, type);
      if (nm && nm->version == om.version && !(nm->shape == om.shape))
        report.notes.push_back({"message " + type + " of " + service,
                                "its schema changed but its schemaversion is still " + std::to_string(om.version),
                                "readers cannot tell the two apart"});
    }
  }
  // One finding per (where, what, whom).
  auto dedupe = [](std::vector<Finding>& v) {
    std::set<std::string> seen;
    std::vector<Finding> out;
    for (auto& f : v)
      if (seen.insert(f.where + "\n" + f.what + "\n" + f.whom).second) out.push_back(std::move(f));
    v = std::move(out);
  };
  dedupe(report.breaking);
  dedupe(report.notes);
  return report;
}

}  // namespace troupe::compat
