// A mesh's contract as an AsyncAPI 3.0 document: written from the topology and the
// services' contracts (each service's `$schema`, or its executable's --contract), and
// read back into contracts for `troupe compat`. Descriptions come from the comments in
// the services' messages.hpp.
#pragma once

#include <troupe/adapters/json/contract.hpp>
#include <troupe/domain/compat.hpp>
#include <troupe/domain/topology.hpp>

#include <map>
#include <string>
#include <string_view>

namespace troupe::contract {

using Json = nlohmann::ordered_json;

struct Description {
  std::string text;                           // the comment block above `struct T {`
  std::map<std::string, std::string> fields;  // a field's trailing `// comment`
};
using Descriptions = std::map<std::string, Description>;  // by message type

// Reads the comments of a messages.hpp: the block of `//` lines right above a struct
// describes it, a `//` comment after a field's declaration describes the field.
Descriptions descriptions_from_header(std::string_view text);

// The AsyncAPI 3.0 document of `topology`'s mesh. Every service needs a contract; a type
// the topology names that the service's contract does not describe is an error
// (json::ContractError naming both).
Json asyncapi(const Topology& topology, const std::map<std::string, schema::Contract>& contracts,
              const Descriptions& descriptions);

// The contracts and reactions an AsyncAPI document written by asyncapi() describes
// (throws json::ContractError naming what is missing where).
compat::Mesh mesh_from_asyncapi(const Json& document);

// YAML text of a JSON value (block style; every string double-quoted as in JSON, which
// YAML reads the same).
std::string to_yaml(const Json& value);

}  // namespace troupe::contract
