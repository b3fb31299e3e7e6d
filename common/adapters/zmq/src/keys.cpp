#include <troupe/adapters/zmq/keys.hpp>

#include <zmq.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace troupe::keys {
namespace {

using Code = Rejection::Code;
namespace fs = std::filesystem;

// One key per file: the first line that is not empty and not a # comment.
Result<std::string> read_key(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return reject(Code::missing, path.string(), "cannot read the key file (make it with `troupe keygen`)");
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::array<std::uint8_t, 32> raw{};
    if (line.size() != 40 || !zmq_z85_decode(raw.data(), line.c_str()))
      return reject(Code::invalid, path.string(), "not a Z85 CURVE key (40 characters)");
    return line;
  }
  return reject(Code::invalid, path.string(), "the key file holds no key");
}

// A secret key is refused when group or others may read or write its file, as ssh
// refuses such an identity file: the key may already be another user's too.
Result<std::string> read_secret_key(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return reject(Code::refused, path.string(),
                  std::string((st.st_mode & 044) ? "readable" : "writable") + " by others (mode " + mode +
                      "): chmod 600 it");
  }
  return read_key(path);
}

Result<void> write_file(const fs::path& path, const std::string& text, mode_t mode) {
  // O_EXCL: never overwrite, even when two keygens race.
  std::FILE* f = nullptr;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST)
      return reject(Code::invalid, path.string(), "already exists; not overwriting a key (remove it first to replace it)");
    return reject(Code::refused, path.string(), std::string("cannot create: ") + std::strerror(errno));
  }
  f = ::fdopen(fd, "w");
  if (!f) {
    ::close(fd);
    return reject(Code::refused, path.string(), std::string("cannot write: ") + std::strerror(errno));
  }
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return reject(Code::refused, path.string(), "cannot write the key file");
  return {};
}

std::string public_file(const std::string& name, const std::string& public_key) {
  return "# troupe CURVE public key of '" + name + "'\n" + public_key + "\n";
}

}  // namespace

Result<KeyPair> generate() {
  std::array<char, 41> pub{}, sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0)
    return reject(Code::refused, "keygen", std::string("libzmq cannot make CURVE keys: ") + zmq_strerror(zmq_errno()));
  return KeyPair{pub.data(), sec.data()};
}

Result<void> write(const std::string& dir, const std::string& name, const KeyPair& pair) {
  if (!file_name(name) || !valid_name(name))
    return reject(Code::invalid, name, "not an identity name (no spaces, '/', or leading '.')");
  std::error_code ec;
  // A directory made here is private; one that exists keeps its mode (it may be shared).
  if (fs::create_directories(dir, ec)) ::chmod(dir.c_str(), 0700);
  if (ec) return reject(Code::refused, dir, "cannot create the keys directory: " + ec.message());
  fs::path pub = fs::path(dir) / (name + ".pub"), sec = fs::path(dir) / (name + ".key");
  for (const auto& p : {pub, sec})
    if (fs::exists(p))
      return reject(Code::invalid, p.string(), "already exists; not overwriting a key (remove it first to replace it)");
  if (auto r = write_file(sec, "# troupe CURVE secret key of '" + name + "': keep it private\n" + pair.secret_key + "\n", 0600); !r)
    return r;
  return write_file(pub, public_file(name, pair.public_key), 0644);
}

Result<KeyPair> load(const std::string& dir, const std::string& name) {
  if (!file_name(name)) return reject(Code::invalid, name, "not an identity name (no '/', or leading '.')");
  fs::path sec = fs::path(dir) / (name + ".key"), pub = fs::path(dir) / (name + ".pub");
  auto secret = read_secret_key(sec);
  if (!secret) return secret.error();
  std::array<char, 41> derived{};
  if (zmq_curve_public(derived.data(), secret->c_str()) != 0)
    return reject(Code::invalid, sec.string(), "not a Z85 CURVE secret key");
  KeyPair pair{derived.data(), *secret};
  if (fs::exists(pub)) {
    auto written = read_key(pub);
    if (!written) return written.error();
    if (*written != pair.public_key)
      return reject(Code::invalid, pub.string(), "does not match the secret key in " + sec.filename().string());
  }
  return pair;
}

Result<std::string> public_key(const Topology& topology, const std::string& name) {
  if (const auto* s = topology.find(name); s && !s->public_key.empty()) return s->public_key;
  if (const auto* c = topology.find_client(name); c && !c->public_key.empty()) return c->public_key;
  return read_key(fs::path(topology.defaults.keys_dir) / (name + ".pub"));
}

std::string decode(const std::string& z85) {
  std::array<std::uint8_t, 32> raw{};
  if (z85.size() != 40 || !zmq_z85_decode(raw.data(), z85.c_str())) return {};
  return std::string(reinterpret_cast<const char*>(raw.data()), raw.size());
}

std::string encode(const std::string& raw) {
  if (raw.size() != 32) return {};
  std::array<char, 41> out{};
  if (!zmq_z85_encode(out.data(), reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size())) return {};
  return out.data();
}

Result<MeshKeys> make_missing(const Topology& topology) {
  MeshKeys out;
  const auto& dir = topology.defaults.keys_dir;
  for (const auto& name : topology.identities()) {
    const auto* s = topology.find(name);
    const auto* c = topology.find_client(name);
    if ((s && !s->public_key.empty()) || (c && !c->public_key.empty())) continue;  // held elsewhere
    fs::path sec = fs::path(dir) / (name + ".key"), pub = fs::path(dir) / (name + ".pub");
    if (fs::exists(sec) && !fs::exists(pub)) {  // the public half was lost: it follows from the secret one
      auto secret = read_secret_key(sec);
      if (!secret) return secret.error();
      std::array<char, 41> derived{};
      if (zmq_curve_public(derived.data(), secret->c_str()) != 0)
        return reject(Code::invalid, sec.string(), "not a Z85 CURVE secret key");
      if (auto r = write_file(pub, public_file(name, derived.data()), 0644); !r) return r.error();
      out.repaired.push_back(name);
      continue;
    }
    // Its own pair is here, or its public key is: on a host of a multi-host mesh the
    // other identities' pairs live on their hosts and only NAME.pub is copied here.
    if (fs::exists(sec) || fs::exists(pub)) continue;
    auto pair = generate();
    if (!pair) return pair.error();
    if (auto r = write(dir, name, *pair); !r) return r.error();
    out.made.push_back(name);
  }
  return out;
}

}  // namespace troupe::keys
