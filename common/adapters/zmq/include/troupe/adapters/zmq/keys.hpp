// CURVE keys: the key pair of each identity of a mesh (service, client, tap), kept as
// two files in the topology's keys directory: NAME.pub (the public key, Z85) and
// NAME.key (the secret key, Z85, mode 0600). Secret keys are never logged or printed.
#pragma once

#include <string>
#include <vector>

#include <troupe/domain/result.hpp>
#include <troupe/domain/topology.hpp>

namespace troupe::keys {

struct KeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// A fresh key pair from libzmq (zmq_curve_keypair).
Result<KeyPair> generate();

// Writes DIR/NAME.pub and DIR/NAME.key (0600), creating DIR (0700). Refuses to
// overwrite either file: a replaced key locks its holder out of the mesh.
Result<void> write(const std::string& dir, const std::string& name, const KeyPair& pair);

// Reads NAME's key pair from DIR; the public key is derived from the secret one and
// checked against NAME.pub when that exists. A NAME.key that group or others may read
// or write is refused, naming the file and its mode ("chmod 600 it"), as ssh does.
Result<KeyPair> load(const std::string& dir, const std::string& name);

// The public key of identity NAME: its public_key in the topology, else DIR/NAME.pub.
Result<std::string> public_key(const Topology& topology, const std::string& name);

// Z85 → the 32 raw bytes ZAP passes as credentials, and back.
std::string decode(const std::string& z85);
std::string encode(const std::string& raw);

struct MeshKeys {
  std::vector<std::string> made;      // identities given a new key pair
  std::vector<std::string> repaired;  // identities whose lost NAME.pub was derived from NAME.key
};

// Makes the key pairs that are missing in the topology's keys directory: for every
// identity with neither a public_key in the topology nor NAME.key or NAME.pub there (a
// NAME.pub alone is another host's identity). An identity with NAME.key but no
// NAME.pub gets its NAME.pub back, derived from the secret key (zmq_curve_public).
Result<MeshKeys> make_missing(const Topology& topology);

}  // namespace troupe::keys
