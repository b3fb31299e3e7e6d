// Contracts as JSON: a message's shape as JSON Schema (draft 7, the schema format
// AsyncAPI 3.0 accepts), and a service's contract as the JSON document `$schema`
// answers (docs/protocol.md §7.8). Both directions: what one build writes, another
// reads back, so `troupe compat` compares what two builds speak.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <troupe/domain/schema.hpp>

namespace troupe::json {

using Json = nlohmann::ordered_json;

// A document that is not a contract, or a schema troupe does not write; the message
// names where ("messages.PlaceOrder.payload.properties.quantity: ...").
struct ContractError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The JSON Schema of a shape. Optional fields are left out of "required" and also admit
// null (troupe writes them absent; other writers may write nil).
Json to_json_schema(const schema::Shape& shape);
// Reads back what to_json_schema writes; `where` prefixes every error.
schema::Shape shape_from_json_schema(const Json& j, const std::string& where = "payload");

Json to_json(const schema::Contract& contract);
schema::Contract contract_from_json(const Json& j);

// The text `$schema` answers, and reading it back (throws ContractError).
std::string contract_text(const schema::Contract& contract);
schema::Contract parse_contract(std::string_view text);

}  // namespace troupe::json
