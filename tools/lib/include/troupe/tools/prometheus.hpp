// Every service's $metrics in the Prometheus text exposition format (version 0.0.4):
// what `troupe metrics --prometheus` prints and the HTTP gateway serves at /metrics.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace troupe::tools {

// `metrics`: service -> its $metrics reply as JSON (null: it did not answer, which
// becomes troupe_up 0). `extra` is appended as is (the gateway's own families).
std::string prometheus_text(const std::map<std::string, nlohmann::json>& metrics, const std::string& extra = {});

// A label value escaped for the text format (backslash, double quote, newline).
std::string prometheus_label(const std::string& value);

}  // namespace troupe::tools
