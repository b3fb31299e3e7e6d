// The mesh's messages as JSON, for the tools that show them to people and scripts (the
// `troupe` command and the HTTP gateway): msgpack <-> JSON, CloudEvents JSON, and the
// RFC 3339 times envelopes carry.
#pragma once

#include <troupe/domain/envelope.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>
#include <string_view>

namespace troupe {
class Client;
}

namespace troupe::tools {

std::string to_msgpack(const nlohmann::json& j);
// Decodes a msgpack value to JSON (binaries become arrays of bytes); never throws.
nlohmann::json to_json(std::string_view msgpack);

// JSON text of `j` (indented when indent >= 0). Strings that are not UTF-8 — dead
// letters and metrics carry what peers sent — are printed with U+FFFD, never an error.
std::string dump(const nlohmann::json& j, int indent = -1);

// A payload's fields as "k=v k=v …" on one line, at most about `width` characters,
// order_id left out (it is shown as the correlation), control bytes escaped.
std::string short_fields(const nlohmann::json& data, std::size_t width);

// One message as a CloudEvents 1.0 JSON document, payload decoded into "data".
nlohmann::json cloudevent(const Envelope& envelope, std::string_view payload);
// The same with the data already as JSON.
nlohmann::json cloudevent_json(const Envelope& envelope, nlohmann::json data);

// Microseconds since the epoch of an envelope's time (RFC 3339 UTC, microseconds);
// 0 for a text that is not one.
std::int64_t micros(const std::string& rfc3339);

// The replies of a partitioned service's instances (by name, in instance order) to one
// query, as one: a built-in's (`by_instance`) as an object of them by instance name; a
// list's with the arrays of each reply joined in instance order, the rest as the first
// instance said it. One reply is itself.
nlohmann::json merge_replies(std::vector<std::pair<std::string, nlohmann::json>> replies, bool by_instance);

// Whom to ask a query of `type` with `payload` addressed to `service`: every instance of
// a partitioned service for a built-in ($health) or a query without its key (a list),
// else `service` alone (the Client routes a keyed one to its owner).
std::vector<std::string> ask_of(const Client& client, const std::string& service, const std::string& type,
                                std::string_view payload);

}  // namespace troupe::tools
