// grpcwall detach: remove what attach created, and nothing else.
#include <unistd.h>

#include <iostream>

#include "commands.h"
#include "error.h"
#include "pin_dir.h"
#include "proxy.h"
#include "system.h"

namespace gw {
namespace {

struct DetachOptions {
  std::string pin_dir;
};

void Detach(const DetachOptions& o) {
  RequireRoot("detach");
  if (access(o.pin_dir.c_str(), F_OK) != 0) {
    std::cout << "grpcwall: nothing attached at " << o.pin_dir << "\n";
    return;
  }
  CheckPinDirPath(o.pin_dir);
  Fd lock = TryLockPinDir(o.pin_dir);
  if (!lock) {  // another detach removed it meanwhile
    std::cout << "grpcwall: nothing attached at " << o.pin_dir << "\n";
    return;
  }
  PinDirState st = InspectPinDir(o.pin_dir);
  if (!st.grpcwall) {
    if (st.entries.empty()) {
      std::cout << "grpcwall: nothing attached at " << o.pin_dir << " (an empty directory: left as it is)\n";
      return;
    }
    throw InputError(o.pin_dir + " is not a grpcwall pin dir: " + st.why_not + "; it holds " +
                     ListEntries(st.entries) + ". Nothing was removed: give detach the --pin-dir attach used");
  }
  // the helper goes before the maps it serves, under the lock so no attach
  // starts one in between
  if (StopProxy(o.pin_dir)) std::cout << "fallback helper stopped\n";
  std::vector<std::string> left = RemoveOwnPins(o.pin_dir);
  if (!left.empty()) {
    std::cout << "grpcwall detached from " << o.pin_dir << "; left " << ListEntries(left, " grpcwall did not create")
              << " (so the directory stays; remove them yourself once nothing uses them)\n";
    return;
  }
  if (rmdir(o.pin_dir.c_str()) != 0) throw SysError("removing " + o.pin_dir, errno);
  std::cout << "grpcwall detached: " << o.pin_dir << " removed\n";
}

}  // namespace

void RegisterDetach(CLI::App& app) {
  auto o = std::make_shared<DetachOptions>();
  auto* sub = app.add_subcommand(
      "detach",
      "Stop the fallback helper, detach the programs and remove what attach pinned under the pin dir,\n"
      "then the pin dir itself if nothing else is in it. Connections that were policed are no longer\n"
      "checked once their sockets leave the freed sockhash. Only a grpcwall pin dir is touched (one\n"
      "whose gw_config is grpcwall's), and in it only the names grpcwall pins: anything else stays and\n"
      "is listed. A directory not on bpffs, the root of a bpffs mount, or one that is not grpcwall's\n"
      "is refused (exit 1) with nothing removed.");
  AddPinDir(sub, &o->pin_dir);
  sub->callback([o] { Detach(*o); });
}

}  // namespace gw
