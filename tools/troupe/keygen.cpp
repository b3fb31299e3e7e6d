// troupe keygen: CURVE key pairs. One identity (`troupe keygen NAME --out DIR`) or
// every identity of a topology that has none yet (`troupe keygen --mesh`). Never
// overwrites a key; never prints a secret key.
#include "cli.hpp"

#include <troupe/adapters/zmq/keys.hpp>

#include <iostream>

namespace troupe::cli {

Runner add_keygen(CLI::App& app) {
  auto* cmd = app.add_subcommand("keygen", "make CURVE key pairs: one identity, or every missing one of a mesh");
  struct Opts : Common {
    std::string name, out;
    bool mesh = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("NAME", o->name, "the identity (service, client or tap) to make a key pair for");
  cmd->add_option("--out,-o", o->out, "directory for NAME.pub and NAME.key (default: the topology's keys_dir)");
  cmd->add_flag("--mesh", o->mesh, "make the missing key pairs of every service, client and tap of the topology "
              "(and a lost NAME.pub again from its NAME.key)");
  cmd->add_flag("--quiet,-q", o->quiet, "print nothing when nothing was made");
  cmd->footer("NAME.key (the secret key) is written with mode 0600 in a 0700 directory; an existing key "
              "is never overwritten (exit 1). Exit: 0 done, 1 refused, 2 bad arguments.");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    if (o->mesh == !o->name.empty()) {
      std::cerr << "troupe keygen: give either NAME or --mesh (try --help)\n";
      return kUsage;
    }
    if (o->mesh) {
      auto t = load(*o);
      if (!t) return kUsage;
      auto made = keys::make_missing(*t);
      if (!made) {
        std::cerr << "troupe keygen: " << made.error().message() << '\n';
        return kFailed;
      }
      for (const auto& n : made->repaired)
        std::cout << "keygen: " << t->defaults.keys_dir << "/" << n << ".pub was missing: derived it again from "
                  << n << ".key\n";
      if (!made->made.empty()) {
        std::cout << "keygen: made " << made->made.size() << " key pair(s) in " << t->defaults.keys_dir << ':';
        for (const auto& n : made->made) std::cout << ' ' << n;
        std::cout << '\n';
      } else if (made->repaired.empty() && !o->quiet) {
        std::cout << "keygen: all " << t->identities().size() << " identities of " << t->file << " have keys in "
                  << t->defaults.keys_dir << '\n';
      }
      return kOk;
    }
    std::string dir = o->out;
    if (dir.empty()) {
      auto t = load(*o);
      if (!t) return kUsage;
      dir = t->defaults.keys_dir;
    }
    if (!valid_name(o->name)) {
      std::cerr << "troupe keygen: '" << o->name << "' is not a valid identity name\n";
      return kUsage;
    }
    auto pair = keys::generate();
    if (!pair) {
      std::cerr << "troupe keygen: " << pair.error().message() << '\n';
      return kFailed;
    }
    if (auto r = keys::write(dir, o->name, *pair); !r) {
      std::cerr << "troupe keygen: " << r.error().message() << '\n';
      return kFailed;
    }
    std::cout << "keygen: " << o->name << " public key " << pair->public_key << "\n  " << dir << "/" << o->name
              << ".pub\n  " << dir << "/" << o->name << ".key (secret, mode 0600)\n";
    return kOk;
  };
}

}  // namespace troupe::cli
