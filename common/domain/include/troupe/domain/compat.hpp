// Compatibility of two contracts of a mesh: would the new builds still speak to the old
// ones? The rules are those of schema registries (BACKWARD, FORWARD, FULL) applied to
// every pair of writer and reader the choreography has:
//   events   — the publisher writes, every service that reacts to the type reads;
//   commands — a service that declares sending it writes it as built; clients write
//              what the receiving service's contract says; the receiver reads;
//   queries  — the same for the request; the service writes the reply, clients read it.
// backward: new readers read what old writers wrote (readers are upgraded first);
// forward:  old readers read what new writers write (writers are upgraded first);
// full:     both — what a rolling upgrade, one service at a time, needs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <troupe/domain/schema.hpp>

namespace troupe::compat {

// The contracts of a mesh's services and who reacts to whom (the topology's reacts_to).
struct Mesh {
  std::map<std::string, schema::Contract> services;
  std::map<std::string, std::map<std::string, std::vector<std::string>>> reacts_to;  // consumer -> publisher -> types
};

enum class Mode { backward, forward, full };

struct Finding {
  std::string where;  // "event OrderPlaced of orders", "command PlaceOrder to orders"
  std::string what;   // "field 'quantity': is string, read as integer"
  std::string whom;   // "inventory (old build) reads it", "clients of orders send it"
};

struct Report {
  std::vector<Finding> breaking;
  // Not breaking, worth saying: a schema that changed but kept its schemaversion.
  std::vector<Finding> notes;
};

Report compare(const Mesh& old_mesh, const Mesh& new_mesh, Mode mode);

// What stops a reader built with `reader` from reading what a writer built with `writer`
// writes, one line per problem; `path` names the value ("" for a message's top).
std::vector<std::string> read_problems(const schema::Shape& writer, const schema::Shape& reader,
                                       const std::string& path = "");

}  // namespace troupe::compat
