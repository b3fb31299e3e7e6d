// codec_probe: the C++ side of the cross-language codec test (polyglot/codec_test.py).
//   codec_probe example            prints the worked example's envelope and payload, hex
//   codec_probe decode ENV PAYLOAD decodes hex frames as an OrderPlaced event and prints
//                                  one "key=value" line per attribute and field;
//                                  on a rejection prints it to stderr and exits 2
#include <troupe/adapters/msgpack/codec.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "../adapters/msgpack/protocol_example.hpp"

namespace {

std::string to_hex(std::string_view bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

std::string from_hex(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace troupe;
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "example") {
    std::cout << to_hex(codec::encode_envelope(example::envelope())) << '\n'
              << to_hex(codec::encode(example::payload())) << '\n';
    return 0;
  }
  if (mode == "decode" && argc == 4) {
    auto env = codec::decode_envelope(from_hex(argv[2]));
    if (!env) {
      std::cerr << env.error().message() << '\n';
      return 2;
    }
    auto payload = codec::decode<example::OrderPlaced>(from_hex(argv[3]));
    if (!payload) {
      std::cerr << payload.error().message() << '\n';
      return 2;
    }
    std::cout << "specversion=" << env->specversion << "\nid=" << env->id
              << "\nsource=" << env->source << "\ntype=" << env->type << "\ntime=" << env->time
              << "\ndatacontenttype=" << env->datacontenttype << "\nkind=" << to_string(env->kind)
              << "\nsequence=" << env->sequence << "\ncorrelationid=" << env->correlationid
              << "\ncausationid=" << env->causationid << "\nschemaversion=" << env->schemaversion
              << "\norder_id=" << payload->order_id << "\nsku=" << payload->sku
              << "\nquantity=" << payload->quantity << '\n';
    return 0;
  }
  std::cerr << "usage: codec_probe example | codec_probe decode ENVELOPE_HEX PAYLOAD_HEX\n";
  return 64;
}
