// IpcGuard: the socket files of a node's bound ipc endpoints. ZeroMQ binds an ipc path
// by unlinking whatever is there, so a second process bound to the same path silently
// takes it over: the first keeps a listening socket nobody can reach. The guard
// refuses to bind over a path another process serves, and notices later when a bound
// file was removed or replaced.
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

namespace troupe::transport {

class IpcGuard {
 public:
  enum class Finding { ours, removed, replaced_live, replaced_stale };

  // The file path of an ipc:// endpoint, or "" for other transports.
  static std::string path_of(const std::string& endpoint);
  // True if a process accepts connections on the unix socket at `path`.
  static bool served(const std::string& path);

  // Remembers the file now bound at `endpoint` (no-op for non-ipc endpoints).
  void watch(const std::string& endpoint);
  // What happened to the file of each watched endpoint since it was bound.
  struct Status {
    std::string endpoint;
    Finding finding = Finding::ours;
  };
  std::vector<Status> check() const;

 private:
  struct Watched {
    std::string endpoint, path;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  std::vector<Watched> watched_;
};

}  // namespace troupe::transport
