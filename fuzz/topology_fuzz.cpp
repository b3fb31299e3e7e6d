// libFuzzer target: the topology loader on arbitrary text. Never a crash; every
// rejection names the file and a line ("fuzz.toml:3: ...").
#include <troupe/adapters/toml/topology_loader.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> warnings;
  auto topology = toml::parse_topology(text, "fuzz.toml", {}, &warnings);
  if (!topology) {
    const Rejection& r = topology.error();
    if (r.where.rfind("fuzz.toml:", 0) != 0 || r.what.empty()) std::abort();
  }
  return 0;
}
