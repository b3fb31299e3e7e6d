// Paged snapshot of the shop's services, over the mesh.
#include "shop_cli.hpp"

namespace troupe::cli {

std::optional<std::string> snapshot(Client& client, shop::Snapshot& out) {
  return shop::fetch(
      [&client](const std::string& service, const auto& query) {
        return client.query(service, query, std::chrono::milliseconds(5000));
      },
      out,
      [&client](const std::string& service) {
        std::vector<std::string> names;
        for (const auto* i : client.topology().instances(service)) names.push_back(i->name);
        return names;
      });
}

}  // namespace troupe::cli
