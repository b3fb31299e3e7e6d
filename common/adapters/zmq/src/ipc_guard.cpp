// IpcGuard: see ipc_guard.hpp.
#include <troupe/adapters/zmq/ipc_guard.hpp>

#include <algorithm>
#include <cstring>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace troupe::transport {

std::string IpcGuard::path_of(const std::string& endpoint) {
  constexpr std::string_view kIpc = "ipc://";
  if (endpoint.rfind(kIpc, 0) != 0) return {};
  return endpoint.substr(kIpc.size());
}

bool IpcGuard::served(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

void IpcGuard::watch(const std::string& endpoint) {
  auto path = path_of(endpoint);
  if (path.empty()) return;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;
  std::erase_if(watched_, [&](const Watched& w) { return w.endpoint == endpoint; });
  watched_.push_back({endpoint, path, st.st_dev, st.st_ino});
}

std::vector<IpcGuard::Status> IpcGuard::check() const {
  std::vector<Status> out;
  for (const auto& w : watched_) {
    struct stat st {};
    Finding f = Finding::ours;
    if (::stat(w.path.c_str(), &st) != 0)
      f = Finding::removed;
    else if (st.st_dev != w.dev || st.st_ino != w.ino)
      f = served(w.path) ? Finding::replaced_live : Finding::replaced_stale;
    out.push_back({w.endpoint, f});
  }
  return out;
}

}  // namespace troupe::transport
