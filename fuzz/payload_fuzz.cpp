// libFuzzer target: typed payload decoding (the second frame) for real message types
// of the shop and of troupe itself. Never a crash; every rejection has a reason; a
// decoded message encodes to bytes that decode to the same message.
#include <troupe/adapters/msgpack/codec.hpp>

#include "fuzzed_messages.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace troupe;

namespace {

template <Message T>
void decode_as(std::string_view bytes) {
  auto message = codec::decode<T>(bytes);
  if (!message) {
    if (message.error().what.empty()) std::abort();
    return;
  }
  // Absent optionals come back as nil, so the copy may be larger than the original.
  codec::Limits roomy;
  roomy.max_bytes *= 2;
  std::string once = codec::encode(*message);
  auto again = codec::decode<T>(once, roomy);
  if (!again || codec::encode(*again) != once) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto valid = codec::validate(bytes, "payload"); !valid && valid.error().what.empty()) std::abort();
  std::apply([&](auto... none) { (decode_as<decltype(none)>(bytes), ...); }, fuzz::FuzzedMessages{});
  return 0;
}
