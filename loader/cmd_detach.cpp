// grpcwall detach: remove everything attach created.
#include <bpf/bpf.h>
#include <dirent.h>
#include <unistd.h>

#include <iostream>
#include <vector>

#include "commands.h"
#include "error.h"
#include "proxy.h"
#include "system.h"

namespace gw {
namespace {

struct DetachOptions {
  std::string pin_dir;
};

void Detach(const DetachOptions& o) {
  RequireRoot("detach");
  if (!RemovePinDir(o.pin_dir)) {
    std::cout << "grpcwall: nothing attached at " << o.pin_dir << "\n";
    return;
  }
  std::cout << "grpcwall detached: " << o.pin_dir << " removed\n";
}

}  // namespace

bool RemovePinDir(const std::string& pin_dir) {
  if (access(pin_dir.c_str(), F_OK) != 0) return false;
  DetachOptions o{pin_dir};
  StopProxy(pin_dir);  // before the maps it serves go
  {
    Fd lock = LockPinDir(o.pin_dir);
    // sockops first: no new socket becomes policed once the guard is gone
    for (const char* what : {"sockops", "guard"}) {
      std::string link_pin = o.pin_dir + "/link_" + what;
      int link = bpf_obj_get(link_pin.c_str());
      if (link >= 0) {
        Fd l(link);
        if (bpf_link_detach(l.get()) != 0 && errno != EINVAL) throw SysError(std::string("detaching ") + what, errno);
      }
    }
    int prog = bpf_obj_get((o.pin_dir + "/prog_sk_msg").c_str());
    int map = bpf_obj_get((o.pin_dir + "/gw_sockhash").c_str());
    if (prog >= 0 && map >= 0) {
      if (bpf_prog_detach2(prog, map, BPF_SK_MSG_VERDICT) != 0 && errno != ENOENT)
        throw SysError("detaching sk_msg from the sockhash", errno);
    }
    if (prog >= 0) close(prog);
    if (map >= 0) close(map);

    DIR* d = opendir(o.pin_dir.c_str());
    if (!d) throw SysError("reading " + o.pin_dir, errno);
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
    for (const auto& n : names)
      if (unlink((o.pin_dir + "/" + n).c_str()) != 0) throw SysError("removing " + o.pin_dir + "/" + n, errno);
  }
  if (rmdir(o.pin_dir.c_str()) != 0) throw SysError("removing " + o.pin_dir, errno);
  return true;
}

void RegisterDetach(CLI::App& app) {
  auto o = std::make_shared<DetachOptions>();
  auto* sub = app.add_subcommand(
      "detach", "Detach the programs and remove every pin under the pin dir. Connections that were policed\n"
                "are no longer checked once their sockets leave the freed sockhash.");
  AddPinDir(sub, &o->pin_dir);
  sub->callback([o] { Detach(*o); });
}

}  // namespace gw
