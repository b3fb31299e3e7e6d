// Paged snapshot of the shop's services, over the mesh.
#include "shop_queries.hpp"

namespace troupe::cli {

std::optional<std::string> snapshot(Client& client, shop::Snapshot& out) {
  return shop::fetch(
      [&client](const std::string& service, const auto& query) {
        return client.query(service, query, std::chrono::milliseconds(5000));
      },
      out);
}

}  // namespace troupe::cli
