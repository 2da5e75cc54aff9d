// grpcwall detach: remove what attach created, and nothing else.
#include <bpf/bpf.h>
#include <unistd.h>

#include <iostream>

#include "commands.h"
#include "error.h"
#include "kernel.h"
#include "live.h"
#include "pin_dir.h"
#include "proxy.h"
#include "system.h"

namespace gw {
namespace {

struct DetachOptions {
  std::string pin_dir;
};

// The server side's walked connections: the freed server sockhash would
// drop the bytes queued for their servers unread (the kernel warns "TCP
// recvmsg seq # bug" and the readers stall), so they are reset first, once
// sockops adds none. Their callers reconnect, to a server no longer
// protected. Best effort: a failure is said, and detach goes on.
void EndServerConnections(const std::string& pin_dir) {
  Fd flag(bpf_obj_get(MapPin(pin_dir, "gw_detaching").c_str()));
  if (!flag) return;  // attached by a grpcwall without it
  // sockops adds none from now on; the ingress guard would drop what the
  // connections accepted meanwhile are sent (walked by nothing any more)
  for (const char* link : {kLinkSockops, kLinkGuardIn}) {
    Fd l(bpf_obj_get(MapPin(pin_dir, link).c_str()));
    if (l && bpf_link_detach(l.get()) != 0 && errno != EINVAL)
      throw SysError(std::string("detaching ") + pin_dir + "/" + link, errno);
  }
  uint32_t zero = 0, one = 1;
  if (bpf_map_update_elem(flag.get(), &zero, &one, BPF_ANY) != 0) throw SysError("writing gw_detaching", errno);
  if (!ResetUnavailable(pin_dir).empty()) {
    std::cerr << "grpcwall: warning: this kernel cannot reset connections (no bpf_sock_destroy or tcp iterator: "
                 "see attach): the connections protected servers accepted are not reset; they lose the data "
                 "queued for their servers when the server sockhash goes (restart those servers' clients)\n";
    return;
  }
  try {
    if (int n = ResetPredating(pin_dir))
      std::cout << "reset " << n << " connection(s) walked on receive (their callers reconnect)\n";
  } catch (const std::exception& e) {
    std::cerr << "grpcwall: warning: resetting the connections walked on receive failed: " << e.what()
              << "; they lose the data queued for their servers when the server sockhash goes\n";
  }
}

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
  // an upgrade a run left half done: its new set moved in (live: its pins
  // are what EndServerConnections and RemoveOwnPins must find), or removed
  if (HasStaging(o.pin_dir)) {
    if (StagedIsLive(o.pin_dir)) {
      MoveStaged(o.pin_dir);
      std::cout << "finished moving the pins of an upgrade a run left half done\n";
    } else {
      RemoveStaging(o.pin_dir);
    }
  }
  EndServerConnections(o.pin_dir);
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
      "checked once their sockets leave the freed sockhash. Connections a protected server accepted are\n"
      "reset first (their queued bytes would be lost with the server sockhash); their callers reconnect.\n"
      "Only a grpcwall pin dir is touched (one\n"
      "whose gw_config is grpcwall's), and in it only the names grpcwall pins: anything else stays and\n"
      "is listed. A directory not on bpffs, the root of a bpffs mount, or one that is not grpcwall's\n"
      "is refused (exit 1) with nothing removed.");
  AddPinDir(sub, &o->pin_dir);
  sub->callback([o] { Detach(*o); });
}

}  // namespace gw
