// libFuzzer target: the envelope decoder on arbitrary bytes (the first frame a peer
// sends). Never a crash; every rejection has a reason; whatever is accepted survives
// encode -> decode unchanged.
#include <troupe/adapters/msgpack/codec.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto envelope = codec::decode_envelope(bytes);
  if (!envelope) {
    if (envelope.error().what.empty()) std::abort();
    return 0;
  }
  // The encoder always writes schemaversion and datacontenttype, so the copy may be
  // a little larger than the original: decode it without the size limit.
  codec::Limits roomy = codec::kEnvelopeLimits;
  roomy.max_bytes = 2 * codec::kEnvelopeLimits.max_bytes;
  auto again = codec::decode_envelope(codec::encode_envelope(*envelope), roomy);
  if (!again || !(*again == *envelope)) std::abort();
  return 0;
}
