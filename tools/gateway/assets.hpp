// Files the gateway serves from its own binary (no CDN, nothing read at run time):
// made at build time from tools/gateway/dashboard.html and docs/gateway.openapi.json.
#pragma once

#include <string_view>

namespace troupe::gateway::assets {
extern const std::string_view dashboard_html;
extern const std::string_view openapi_json;
}  // namespace troupe::gateway::assets
