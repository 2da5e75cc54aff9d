// What grpcwall pins under a pin dir, and when a directory is grpcwall's:
// attach, detach and a failed first attach touch only those names, only in
// such a directory, so the tool never removes what it does not own.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "system.h"

#include "grpcwall.skel.h"

namespace gw {

using Skel = std::unique_ptr<grpcwall_bpf, decltype(&grpcwall_bpf__destroy)>;
// The BPF object, opened (not loaded). The one place that opens the
// skeleton, so its embedded object is linked in once.
Skel OpenSkel();

// What attach pins besides the maps (gw_config is the map that marks a
// grpcwall pin dir: pinned first, removed last).
constexpr const char* kConfigPin = "gw_config";
constexpr const char* kProgSkMsg = "prog_sk_msg";
constexpr const char* kProgSkSkb = "prog_sk_skb";  // the server side's walker
constexpr const char* kProgSrvMsg = "prog_srv_msg";  // the server side's answers to denied RPCs
constexpr const char* kProgSockops = "prog_sockops";
constexpr const char* kProgGuard = "prog_guard";
constexpr const char* kProgReset = "prog_reset";
constexpr const char* kLinkGuard = "link_guard";
constexpr const char* kProgGuardIn = "prog_guard_in";  // the server side's ingress guard
constexpr const char* kLinkGuardIn = "link_guard_in";
constexpr const char* kLinkSockops = "link_sockops";

// A directory inside the pin dir where an attach over another grpcwall
// version's maps builds the new maps and programs, before they replace the
// old ones (UpgradeLocked, cmd_attach.cpp). Attach and detach remove one a
// failed run left (RemoveStaging).
constexpr const char* kStagingDir = "upgrading";  // (bpffs refuses names with a dot: EPERM)

// Every name grpcwall pins in a pin dir: the skeleton's maps (so a map added
// to bpf/ is covered without a list to keep), then the programs and links.
const std::vector<std::string>& OwnPinNames();

// A pin dir as found under its lock.
struct PinDirState {
  bool grpcwall = false;             // its gw_config is grpcwall's config map
  std::string why_not;               // else: why not, in words
  std::vector<std::string> entries;  // everything in it
  std::vector<std::string> foreign;  // ... of that, what grpcwall does not pin
};

// Throws InputError unless `pin_dir` is a directory on a bpf filesystem
// below the root of its mount (the root is shared with other software).
void CheckPinDirPath(const std::string& pin_dir);
PinDirState InspectPinDir(const std::string& pin_dir);
// "N entries<which>: a, b, c" for a message.
std::string ListEntries(const std::vector<std::string>& names, const std::string& which = "");

// For attach: mounts bpffs at /sys/fs/bpf if the pin dir lives there and it
// is absent, refuses what CheckPinDirPath refuses, creates the pin dir if
// needed (*created) and returns it locked (LockPinDir).
Fd PreparePinDir(const std::string& pin_dir, bool* created);

// Under the pin dir's lock, in a grpcwall pin dir: detaches the links and
// sk_msg, unlinks grpcwall's own names (gw_config last, so a dir half
// removed is still recognised) and returns what is left that grpcwall did
// not create. Does not remove the directory.
std::vector<std::string> RemoveOwnPins(const std::string& pin_dir);

// Pinned in pin_dir/upgrading once every link at the cgroup runs the new
// programs (an empty map: bpffs holds BPF objects only).
constexpr const char* kStagedMarker = "switched";
// Removes pin_dir/upgrading and what is pinned in it (a link there is
// detached first: closing the last reference to a pinned link does not).
// Only for a set that is not live (StagedIsLive): a sockhash whose last
// pin goes loses its verdict programs while a live sockops still fills it.
void RemoveStaging(const std::string& pin_dir);
// Is the staged set live: its marker pinned, or the sockops link's program
// one that uses the staged gw_config (moved last, so this holds while a
// move is under way)? From the sockops link's update on, new connections
// are the staged programs'.
bool StagedIsLive(const std::string& pin_dir);
// Is there a staged set at all?
bool HasStaging(const std::string& pin_dir);
// The staged pins under the pin dir's names (rename replaces), gw_config
// last; then the marker and the directory go. Picks up where a run that
// died stopped.
void MoveStaged(const std::string& pin_dir);


// The names in a directory, sorted.
std::vector<std::string> Entries(const std::string& dir);

}  // namespace gw
