// grpcwall attach: check everything, load, pin, attach, apply a policy last,
// exit. A failure before the policy is live leaves the live state as it was.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "commands.h"
#include "error.h"
#include "kernel.h"
#include "live.h"
#include "pin_dir.h"
#include "proxy.h"
#include "system.h"

namespace gw {
namespace {

struct AttachOptions {
  std::string cgroup;
  std::string pin_dir;
  std::string policy;
  bool no_fallback = false;
  bool fallback_managed = false;  // a service manager runs the helper (grpcwall-proxy.service)
  std::string state_dir;          // keeps the last policy that went live (policy.yaml)
  uint32_t max_connections = 0;  // 0: kDefaultMaxConnections, or what is pinned
  uint32_t hold_slots = 0;       // 0: GW_HOLD_SLOTS, or what is pinned
  uint32_t hold_share = 0;       // 0: what is pinned, else DefaultHoldShare
};

constexpr uint32_t kDefaultMaxConnections = 262144;

// --cgroup as attach records it (status shows it, policies are checked
// against it): absolute, below the cgroup v2 root, canonical (no "//", no
// "." and no trailing "/"). A relative one is taken from the v2 root, not
// from the current directory. ".." is refused rather than resolved.
std::string AttachCgroupPath(const std::string& arg) {
  const std::string root = CgroupV2Root();
  if (arg.empty()) return root;
  std::string path = arg[0] == '/' ? "" : root;
  std::stringstream ss(arg);
  for (std::string c; std::getline(ss, c, '/');) {
    if (c.empty() || c == ".") continue;
    if (c == "..")
      throw InputError("--cgroup " + arg + ": '..' is not allowed; give the path from the cgroup v2 root (" + root +
                       "), e.g. --cgroup system.slice, or an absolute path without '..'");
    path += "/" + c;
  }
  if (path.empty()) path = "/";
  if (path != root && path.rfind(root + "/", 0) != 0)
    throw InputError("--cgroup " + path + " is not below the cgroup v2 root " + root +
                     " (a relative --cgroup is taken from there)");
  constexpr size_t kMax = sizeof(gw_name_val::text) - 1;
  if (path.size() > kMax)
    throw InputError("--cgroup " + path + " is " + std::to_string(path.size()) +
                     " bytes long; grpcwall records the attach cgroup in at most " + std::to_string(kMax) +
                     " bytes: attach at a shorter path (an ancestor cgroup covers everything below it)");
  if (!IsCgroupV2Dir(path))
    throw InputError("--cgroup " + path + " is not a cgroup v2 directory (a relative --cgroup is taken from the v2 root " +
                     root + "; make the cgroup first)");
  return path;
}

// The size of a map fixed when it is first pinned (MAP, `what` its entries,
// asked with FLAG): `asked` or `dflt` for a fresh pin dir, else the pinned
// size; throws when FLAG asks for another one.
uint32_t PinnedSize(const std::string& pin_dir, const char* map, const char* flag, uint32_t asked, uint32_t dflt,
                    const std::string& what) {
  int fd = bpf_obj_get(MapPin(pin_dir, map).c_str());
  if (fd < 0) return asked ? asked : dflt;
  Fd f(fd);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(f.get(), &info, &len) != 0) throw SysError(std::string("reading the pinned ") + map, errno);
  if (asked && asked != info.max_entries)
    throw Error(kBadInput, std::string(flag) + " " + std::to_string(asked) + ": the " + map + " pinned under " +
                               pin_dir + " holds " + std::to_string(info.max_entries) + " " + what +
                               " and cannot be resized; run 'grpcwall detach --pin-dir " + pin_dir +
                               "' first to attach with another size");
  return info.max_entries;
}

// Accepted connections of protected servers walked at once: the server
// sockhash's size less a margin for connections the ingress guard let in
// that sockops has not counted yet (a handshake on every CPU, a listener's
// backlog of them), so that each finds room in gw_srv_sockhash.
uint32_t ServerConnCap(uint32_t max_conns) {
  const uint32_t margin = std::clamp<uint32_t>(max_conns / 8, 1, 4096);
  return max_conns - margin;
}

// The sockhash size (--max-connections) and the server side's hold slots
// (--hold-slots): both fixed at the first attach of a pin dir.
uint32_t SockhashSize(const AttachOptions& o) {
  return PinnedSize(o.pin_dir, "gw_sockhash", "--max-connections", o.max_connections, kDefaultMaxConnections,
                    "connections");
}
uint32_t HoldSlots(const AttachOptions& o) {
  return PinnedSize(o.pin_dir, "gw_srv_holds", "--hold-slots", o.hold_slots, GW_HOLD_SLOTS, "hold slots");
}

// Hold slots one caller identity may hold at once, by default: half of them
// (rounded up), so that no one identity can take every slot from the rest.
uint32_t DefaultHoldShare(uint32_t hold_slots) { return (hold_slots + 1) / 2; }

// --hold-slots-per-identity: as asked (at most the slots), else what the pin
// dir has (gw_limits), else the default.
gw_limits Limits(const AttachOptions& o, uint32_t hold_slots) {
  gw_limits l{};
  if (o.hold_share > hold_slots)
    throw InputError("--hold-slots-per-identity " + std::to_string(o.hold_share) + " is more than the " +
                     std::to_string(hold_slots) + " hold slots (--hold-slots, fixed at the first attach of " +
                     o.pin_dir + "): give at most " + std::to_string(hold_slots));
  l.hold_share = o.hold_share;
  if (!l.hold_share) {
    gw_limits pinned{};
    if (ReadLimits(o.pin_dir, &pinned) && pinned.hold_share && pinned.hold_share <= hold_slots)
      l.hold_share = pinned.hold_share;
    else
      l.hold_share = DefaultHoldShare(hold_slots);
  }
  return l;
}

// Written before any program that reads it is attached (a new pin dir, or
// one an older version made: the map is new, its zero means "no share")
void WriteLimits(int map_fd, const gw_limits& l) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(map_fd, &zero, &l, BPF_ANY) != 0) throw SysError("writing gw_limits", errno);
}

void PinProgram(int prog_fd, const std::string& path) {
  // Replace the pin; sockets already in the sockhash keep the program they
  // were inserted with until they close, so enforcement never stops.
  unlink(path.c_str());
  if (bpf_obj_pin(prog_fd, path.c_str()) != 0) throw SysError("pinning " + path, errno);
}

// Refuses (before anything changes) a pin dir whose links are at another
// cgroup: one pin dir polices one cgroup.
void CheckAttachedCgroup(const std::string& pin_dir, uint64_t want_cg) {
  for (const char* link : {kLinkGuard, kLinkGuardIn, kLinkSockops}) {
    Fd l(bpf_obj_get(MapPin(pin_dir, link).c_str()));
    if (!l) continue;
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(l.get(), &info, &len) != 0) throw SysError("reading " + MapPin(pin_dir, link), errno);
    // (0: detached, by hand or by a run that died before removing its pin)
    if (info.cgroup.cgroup_id == want_cg || info.cgroup.cgroup_id == 0) continue;
    std::string where = "id " + std::to_string(info.cgroup.cgroup_id);
    gw_name_val meta{};
    if (ReadName(LiveMaps::Open(pin_dir), 0, GW_NAMEKIND_META, 0, &meta)) where = std::string(meta.text) + ", " + where;
    throw Error(kSystem, "pin dir " + pin_dir + " is attached at another cgroup (" + where +
                             "); nothing was changed: run 'grpcwall detach --pin-dir " + pin_dir +
                             "' first, or use another --pin-dir");
  }
}

// Attaches `prog` at the cgroup through a link pinned at `link_pin`, or, if
// that link exists, swaps its program atomically (no window without it).
void AttachCgroupLink(const std::string& link_pin, bpf_program* prog, const std::string& cgroup,
                      const std::string& what) {
  Fd old(bpf_obj_get(link_pin.c_str()));
  if (old) {
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(old.get(), &info, &len) == 0 && info.cgroup.cgroup_id == 0) {
      // detached (by hand, or its cgroup went): made again below
      if (unlink(link_pin.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + link_pin, errno);
    } else {
      if (bpf_link_update(old.get(), bpf_program__fd(prog), nullptr) != 0)
        throw SysError("replacing the " + what + " program", errno);
      return;
    }
  }
  Fd cg_fd(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cg_fd) throw SysError("opening cgroup " + cgroup, errno);
  bpf_link* link = bpf_program__attach_cgroup(prog, cg_fd.get());
  if (!link) throw SysError("attaching " + what + " at cgroup " + cgroup, errno);
  int perr = bpf_link__pin(link, link_pin.c_str());
  if (perr) {
    bpf_link__destroy(link);
    throw SysError("pinning " + link_pin, -perr);
  }
  bpf_link__disconnect(link);  // the pin keeps it attached after we exit
  bpf_link__destroy(link);
}

// The programs a second attach replaces, to put back if it fails half way:
// then the live state is what it was.
struct Previous {
  Fd sk_msg, sk_skb, srv_msg, sockops, guard, guard_in, reset;
  bool had_guard_in_link = false;  // attached only while the live policy protects a server
  bool had_meta = false;
  gw_name_val meta{};

  static Previous Of(const std::string& pin_dir, const LiveMaps& live) {
    Previous p;
    p.sk_msg = Fd(bpf_obj_get(MapPin(pin_dir, kProgSkMsg).c_str()));
    p.sk_skb = Fd(bpf_obj_get(MapPin(pin_dir, kProgSkSkb).c_str()));
    p.srv_msg = Fd(bpf_obj_get(MapPin(pin_dir, kProgSrvMsg).c_str()));
    p.sockops = Fd(bpf_obj_get(MapPin(pin_dir, kProgSockops).c_str()));
    p.guard = Fd(bpf_obj_get(MapPin(pin_dir, kProgGuard).c_str()));
    p.guard_in = Fd(bpf_obj_get(MapPin(pin_dir, kProgGuardIn).c_str()));
    p.reset = Fd(bpf_obj_get(MapPin(pin_dir, kProgReset).c_str()));
    p.had_guard_in_link = Fd(bpf_obj_get(MapPin(pin_dir, kLinkGuardIn).c_str())).get() >= 0;
    p.had_meta = ReadName(live, 0, GW_NAMEKIND_META, 0, &p.meta);
    return p;
  }

  // Best effort: the error that made us restore is the one reported.
  void Restore(const std::string& pin_dir, const LiveMaps& live, int sockhash_fd) const {
    if (sk_msg) bpf_prog_attach(sk_msg.get(), sockhash_fd, BPF_SK_MSG_VERDICT, 0);
    Fd srv(bpf_obj_get(MapPin(pin_dir, "gw_srv_sockhash").c_str()));
    if (sk_skb && srv) bpf_prog_attach(sk_skb.get(), srv.get(), BPF_SK_SKB_STREAM_VERDICT, 0);
    // (none before, a version without it: this one's stays; it reads only maps of this layout)
    if (srv_msg && srv) bpf_prog_attach(srv_msg.get(), srv.get(), BPF_SK_MSG_VERDICT, 0);
    const std::pair<const char*, const Fd*> links[] = {
        {kLinkGuard, &guard}, {kLinkGuardIn, &guard_in}, {kLinkSockops, &sockops}};
    for (const auto& [link, prog] : links) {
      Fd l(bpf_obj_get(MapPin(pin_dir, link).c_str()));
      const bool made = prog == &guard_in && !had_guard_in_link;
      if (l && *prog && !made) {
        bpf_link_update(l.get(), prog->get(), nullptr);
      } else if (l) {  // made by this attach (a version before it had none, or no guard was live): taken away again
        bpf_link_detach(l.get());
        unlink(MapPin(pin_dir, link).c_str());
      }
    }
    const std::pair<const char*, const Fd*> progs[] = {
        {kProgSkMsg, &sk_msg}, {kProgSkSkb, &sk_skb}, {kProgSrvMsg, &srv_msg}, {kProgSockops, &sockops},
        {kProgGuard, &guard},
        {kProgGuardIn, &guard_in}, {kProgReset, &reset}};
    for (const auto& [name, prog] : progs) {
      if (!*prog) continue;
      try {
        PinProgram(prog->get(), MapPin(pin_dir, name));
      } catch (...) {
      }
    }
    try {
      if (had_meta) WriteName(live, 0, GW_NAMEKIND_META, 0, meta.text, meta.detail, meta.aux);
    } catch (...) {
    }
  }
};

// This version's datapath reads method tables only in the format this
// version writes: over a live policy of an older one it would decide
// differently (an older table could allow what its policy denies). "" when
// the live tables are this version's (or none is live), else what differs.
std::string OtherTableFormat(const std::string& pin_dir) {
  Fd cfg_fd(bpf_obj_get(MapPin(pin_dir, "gw_config").c_str()));
  if (!cfg_fd) return "";  // nothing pinned yet
  gw_config cfg{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(cfg_fd.get(), &zero, &cfg) != 0) throw SysError("reading " + pin_dir + "/gw_config", errno);
  if (!cfg.generation || cfg.format == GW_TABLE_FORMAT) return "";
  return "method-table format " + std::to_string(cfg.format) + " live, this version writes " +
         std::to_string(GW_TABLE_FORMAT);
}

// The pinned maps this build's programs cannot use (another grpcwall
// version's layout: libbpf would refuse to reuse them), each as "name
// (what differs)". Maps this build has and the pin dir lacks are pinned by
// the attach itself and are not listed.
std::vector<std::string> OtherLayout(const grpcwall_bpf* skel, const std::string& pin_dir) {
  std::vector<std::string> out;
  bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) {
    if (bpf_map__is_internal(map)) continue;
    const std::string pin = MapPin(pin_dir, bpf_map__name(map));
    Fd fd(bpf_obj_get(pin.c_str()));
    if (!fd) continue;
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) throw SysError("reading " + pin, errno);
    std::string d;
    auto differs = [&d](const char* what, uint64_t pinned, uint64_t here) {
      if (pinned != here)
        d += (d.empty() ? "" : ", ") + std::string(what) + " " + std::to_string(pinned) + " pinned, " +
             std::to_string(here) + " here";
    };
    differs("type", info.type, bpf_map__type(map));
    differs("key bytes", info.key_size, bpf_map__key_size(map));
    differs("value bytes", info.value_size, bpf_map__value_size(map));
    differs("entries", info.max_entries, bpf_map__max_entries(map));
    differs("flags", info.map_flags, bpf_map__map_flags(map));
    if (!d.empty()) out.push_back(std::string(bpf_map__name(map)) + " (" + d + ")");
  }
  return out;
}

// A copy of `file` at `kept` in `dir` (made 0755), written whole and renamed
// over the old one: never half a policy.
void KeepPolicy(const std::string& file, const std::string& dir, const std::string& kept) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw SysError("making " + dir, errno);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw SysError("reading " + file, errno);
  const std::string tmp = kept + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
    out.flush();
    if (!out) throw SysError("writing " + tmp, errno ? errno : EIO);
  }
  if (rename(tmp.c_str(), kept.c_str()) != 0) throw SysError("renaming " + tmp + " to " + kept, errno);
}



// Attach over maps pinned by another grpcwall version (OtherLayout): this
// version's programs cannot use them, so it builds a whole new set beside
// them and moves onto it with no window without enforcement.
//  1. New maps and programs, pinned in pin_dir/upgrading; the policy applied
//     into them (its generation follows the old one); nothing of them
//     attached. The old programs enforce the old policy meanwhile.
//  2. The switch: the sockops link gets the new program (bpf_link_update,
//     atomic). From then on every new connection is the new programs', and
//     the staged set is live (StagedIsLive): never removed, only finished.
//     FinishSwitch: the ingress guard's link, the egress guard's, the marker
//     (until each guard moves, the old one holds back the payload of the
//     new programs' connections).
//  3. Connections the old programs walk keep their programs until they
//     leave the old sockhashes, and are reset: the server side's by the old
//     iterator, before the old server sockhash goes (its queued bytes would
//     be lost), the client side's by the new one (ResetAfterFlip, in Attach).
//  4. The new pins take the old ones' names (MoveStaged).
// A failure before the switch removes the staged set; a run that dies is
// picked up by the next attach or detach (SettleStaging).
uint64_t UpgradeLocked(const AttachOptions& o, const std::string& cgroup, const Policy& policy,
                       const IdentityPaths& paths, Skel& skel, bool reset, const std::vector<std::string>& why) {
  std::string said;
  for (const auto& w : why) said += (said.empty() ? "" : "; ") + w;
  if (o.policy.empty())
    throw InputError("the maps pinned under " + o.pin_dir + " are another grpcwall version's (" + said +
                     "): this version replaces them with new ones, into which it must apply a policy, and the live "
                     "one cannot be read across versions. Nothing was changed: attach again with the policy file "
                     "(grpcwall attach --pin-dir " + o.pin_dir + " ... POLICY)");
  const std::string stage = o.pin_dir + "/" + kStagingDir;
  if (mkdir(stage.c_str(), 0700) != 0) throw SysError("creating " + stage, errno);
  LiveMaps old = LiveMaps::Open(o.pin_dir);
  const gw_config old_cfg = ReadConfig(old);
  // the old sockhashes live until the old walked connections are reset
  Fd old_sockhash(bpf_obj_get(MapPin(o.pin_dir, "gw_sockhash").c_str()));
  Fd old_srv_sockhash(bpf_obj_get(MapPin(o.pin_dir, "gw_srv_sockhash").c_str()));
  uint64_t generation = 0;
  try {
    bpf_map* map;
    bpf_object__for_each_map(map, skel->obj) {
      if (bpf_map__is_internal(map)) continue;
      const std::string pin = MapPin(stage, bpf_map__name(map));
      if (bpf_map__set_pin_path(map, pin.c_str()) != 0) throw SysError("setting pin path " + pin, errno);
    }
    if (int err = grpcwall_bpf__load(skel.get()))
      throw Error(kSystem, std::string("loading the BPF programs: ") + Errno(-err) +
                               " (GRPCWALL_DEBUG=1 shows libbpf's and the verifier's log)");
    LiveMaps live = LiveMaps::Open(stage);
    WriteLimits(bpf_map__fd(skel->maps.gw_limits), Limits(o, bpf_map__max_entries(skel->maps.gw_srv_holds)));
    gw_config cfg = NewConfigKeys(gw_config{});
    cfg.generation = old_cfg.generation;  // nothing reads the new maps yet: their live slot is empty
    WriteConfig(live, cfg);
    WriteName(live, 0, GW_NAMEKIND_META, 0, cgroup, "", static_cast<uint64_t>(time(nullptr)));
    if (bpf_prog_attach(bpf_program__fd(skel->progs.gw_sk_msg), bpf_map__fd(skel->maps.gw_sockhash),
                        BPF_SK_MSG_VERDICT, 0) != 0)
      throw SysError("attaching sk_msg to the sockhash", errno);
    if (bpf_prog_attach(bpf_program__fd(skel->progs.gw_sk_skb), bpf_map__fd(skel->maps.gw_srv_sockhash),
                        BPF_SK_SKB_STREAM_VERDICT, 0) != 0)
      throw SysError("attaching sk_skb to the server sockhash", errno);
    if (bpf_prog_attach(bpf_program__fd(skel->progs.gw_srv_msg), bpf_map__fd(skel->maps.gw_srv_sockhash),
                        BPF_SK_MSG_VERDICT, 0) != 0)
      throw SysError("attaching sk_msg to the server sockhash", errno);
    const std::pair<const char*, bpf_program*> progs[] = {
        {kProgSkMsg, skel->progs.gw_sk_msg}, {kProgSkSkb, skel->progs.gw_sk_skb},
        {kProgSrvMsg, skel->progs.gw_srv_msg}, {kProgSockops, skel->progs.gw_sockops},
        {kProgGuard, skel->progs.gw_guard}, {kProgGuardIn, skel->progs.gw_guard_in}};
    for (const auto& [name, prog] : progs) PinProgram(bpf_program__fd(prog), MapPin(stage, name));
    if (reset) PinProgram(bpf_program__fd(skel->progs.gw_reset_predating), MapPin(stage, kProgReset));
    // (its ingress guard goes on at the switch: attached now, it would
    // drop what the old programs' server connections receive, and stay
    // if this run died before the switch)
    live.sync_ingress_guard = false;
    generation = ApplyPolicy(live, policy, paths);
    UpgradeStopAt("staged");
    // 2. The switch: from the sockops link's update on, every new
    // connection is the new programs' (StagedIsLive: a later attach or
    // detach finishes this set, never removes it). An update is atomic:
    // when it fails, the old program stays.
    AttachCgroupLink(MapPin(o.pin_dir, kLinkSockops), skel->progs.gw_sockops, cgroup, "sockops");
  } catch (...) {
    try {
      if (!StagedIsLive(o.pin_dir)) RemoveStaging(o.pin_dir);
    } catch (...) {
    }
    throw;
  }
  UpgradeStopAt("switched");
  // ... then the guards (ingress first: the old one drops what the new
  // programs' connections receive) and the marker
  try {
    FinishSwitch(o.pin_dir);
  } catch (const std::exception& e) {
    throw Error(kSystem, std::string(e.what()) + " (the new programs police every new connection, whose data an "
                         "old guard may hold back: attach again with this version to finish the upgrade, or detach)");
  }
  // its helper serves the old maps (attach starts one for the new ones)
  if (StopProxy(o.pin_dir)) std::cout << "fallback helper of the old maps stopped\n";
  {
    Fd flag(bpf_obj_get(MapPin(o.pin_dir, "gw_detaching").c_str()));
    uint32_t zero = 0, one = 1;
    const std::string no_reset = flag ? ResetUnavailable(o.pin_dir) : "the old version has no gw_detaching";
    if (!no_reset.empty())
      std::cerr << "grpcwall: warning: the connections the old programs walk on receive are not reset (" << no_reset
                << "): they lose the data queued for their servers when the old server sockhash goes; restart "
                   "their callers\n";
    else if (bpf_map_update_elem(flag.get(), &zero, &one, BPF_ANY) == 0) {
      try {
        if (int n = ResetPredating(o.pin_dir))
          std::cout << "reset " << n << " connection(s) the old programs walked on receive (their callers reconnect)\n";
      } catch (const std::exception& e) {
        std::cerr << "grpcwall: warning: resetting the connections the old programs walk on receive failed: "
                  << e.what() << "; they lose the data queued for their servers when the old server sockhash goes\n";
      }
    }
  }
  UpgradeStopAt("resets");
  // 4. The new pins under the old names; gw_config (what marks the pin dir
  // grpcwall's) last. Names this version pins no more stay, said.
  MoveStaged(o.pin_dir);
  if (!reset && unlink(MapPin(o.pin_dir, kProgReset).c_str()) != 0 && errno != ENOENT)
    throw SysError("removing " + MapPin(o.pin_dir, kProgReset), errno);
  std::cout << "the maps pinned under " << o.pin_dir << " were another grpcwall version's (" << said
            << "): replaced by new ones, with no moment without enforcement; connections policed under the old "
               "ones are reset (their clients reconnect under policy)\n";
  if (PinDirState st = InspectPinDir(o.pin_dir); !st.foreign.empty())
    std::cout << "left " << ListEntries(st.foreign, " this version does not pin") << " (the old version's; remove "
              << "them once nothing uses them)\n";
  return generation;
}

// Under the pin dir lock. Returns the live policy generation.
uint64_t AttachLocked(const AttachOptions& o, const std::string& cgroup, const Policy& policy,
                      const IdentityPaths& paths, bool fresh, const KernelProbe& kernel) {
  // an upgrade a run left half done: finished when its programs are live,
  // else removed (the old programs never stopped enforcing)
  if (!fresh && HasStaging(o.pin_dir)) {
    if (StagedIsLive(o.pin_dir) && StopProxy(o.pin_dir)) std::cout << "fallback helper of the old maps stopped\n";
    if (SettleStaging(o.pin_dir)) std::cout << "finished moving the pins of an upgrade a run left half done\n";
  }
  // 1. Everything that can refuse, before anything changes.
  const uint64_t want_cg = CgroupId(cgroup);
  CheckAttachedCgroup(o.pin_dir, want_cg);
  const uint32_t max_conns = SockhashSize(o);
  const uint32_t hold_slots = HoldSlots(o);
  const gw_limits limits = Limits(o, hold_slots);
  if (!o.no_fallback && max_conns < 2 * GW_POOL_SLOTS)
    throw InputError("--max-connections " + std::to_string(max_conns) + " leaves too little room in the sockhash " +
                     "for the fallback helper's " + std::to_string(GW_POOL_SLOTS) + " pool sockets, which share it: " +
                     "give at least " + std::to_string(2 * GW_POOL_SLOTS) + ", or attach with --no-fallback");
  const std::string other_format = OtherTableFormat(o.pin_dir);

  // 2. Load: a first attach pins the maps, a second one reuses them.
  Skel skel = OpenSkel();
  // the server side's maps take as many connections as the client side's
  for (bpf_map* m : {skel->maps.gw_sockhash, skel->maps.gw_srv_sockhash, skel->maps.gw_srv_conns, skel->maps.gw_srv_spills,
                     skel->maps.gw_local_calls})
    if (bpf_map__set_max_entries(m, max_conns) != 0) throw SysError("sizing the sockhash", errno);
  for (bpf_map* m : {skel->maps.gw_srv_holds, skel->maps.gw_srv_hold_owners})
    if (bpf_map__set_max_entries(m, hold_slots) != 0) throw SysError("sizing the hold slots", errno);
  skel->rodata->gw_srv_cap = ServerConnCap(max_conns);
  // the verifier never checks a helper call behind a 0 here (Attach warns)
  skel->rodata->gw_have_pid = kernel.Has("bpf_get_current_pid_tgid");
  skel->rodata->gw_have_comm = kernel.Has("bpf_get_current_comm");
  // a kernel without what the reset of predating connections needs gets
  // everything else (Attach warns what that costs)
  const bool reset = kernel.CanResetPredating();
  if (!reset && bpf_program__set_autoload(skel->progs.gw_reset_predating, false) != 0)
    throw SysError("leaving out the reset program", errno);
  // another grpcwall version's maps: replaced as a whole (UpgradeLocked)
  if (!fresh) {
    std::vector<std::string> other = OtherLayout(skel.get(), o.pin_dir);
    if (!other_format.empty()) other.push_back("the live policy (" + other_format + ")");
    if (!other.empty()) return UpgradeLocked(o, cgroup, policy, paths, skel, reset, other);
  }
  bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) {
    const char* name = bpf_map__name(map);
    if (bpf_map__is_internal(map)) continue;  // .rodata/.data: per program, not shared state
    std::string pin = MapPin(o.pin_dir, name);
    if (bpf_map__set_pin_path(map, pin.c_str()) != 0) throw SysError("setting pin path " + pin, errno);
  }
  int err = grpcwall_bpf__load(skel.get());
  if (err)
    throw Error(kSystem, std::string("loading the BPF programs: ") + Errno(-err) +
                             (-err == EPERM ? " (run as root)" :
                              fresh ? " (this kernel, " + kernel.release + ", refused them: GRPCWALL_DEBUG=1 shows "
                                      "libbpf's and the verifier's log)" :
                              " (GRPCWALL_DEBUG=1 shows libbpf's and the verifier's log)"));

  LiveMaps live = LiveMaps::Open(o.pin_dir);
  gw_config cfg = ReadConfig(live);
  if (!cfg.key0 && !cfg.key1) WriteConfig(live, NewConfigKeys(cfg));  // first attach: a new key
  uint64_t generation = cfg.generation;
  // a pin dir an older grpcwall attached gets gw_svc_ports now: the live
  // slot's ports, before the guard that reads them is attached
  if (generation) WriteServicePorts(live, GW_SLOT_OF(generation));
  // maps older than the hold shares' ids (gw_ident_shares is new): the
  // live identities get theirs before these programs run, as the keys the
  // older programs count their holds under (one count across the switch,
  // and after a rollback to them)
  if (generation) {
    const std::vector<std::string> names = LiveIdentityNames(live, GW_SLOT_OF(generation));
    if (!HasIdentShares(live, GW_SLOT_OF(generation), names.size()))
      WriteIdentShares(live, GW_SLOT_OF(generation), names, true);
  }
  Previous prev = Previous::Of(o.pin_dir, live);
  gw_limits prev_limits{};
  const bool had_limits = ReadLimits(o.pin_dir, &prev_limits);
  const int sockhash = bpf_map__fd(skel->maps.gw_sockhash);
  try {
    WriteLimits(bpf_map__fd(skel->maps.gw_limits), limits);
    // 3. Attach. sk_msg first, so every socket the sockops program inserts
    // is covered; then the egress guard, then sockops: a socket sockops
    // makes policed is never on the wire without the guard.
    if (bpf_prog_attach(bpf_program__fd(skel->progs.gw_sk_msg), sockhash, BPF_SK_MSG_VERDICT, 0) != 0)
      throw SysError("attaching sk_msg to the sockhash", errno);
    PinProgram(bpf_program__fd(skel->progs.gw_sk_msg), MapPin(o.pin_dir, kProgSkMsg));
    // the server side: accepted connections of protected servers are walked on receive
    if (bpf_prog_attach(bpf_program__fd(skel->progs.gw_sk_skb), bpf_map__fd(skel->maps.gw_srv_sockhash),
                        BPF_SK_SKB_STREAM_VERDICT, 0) != 0)
      throw SysError("attaching sk_skb to the server sockhash", errno);
    PinProgram(bpf_program__fd(skel->progs.gw_sk_skb), MapPin(o.pin_dir, kProgSkSkb));
    // ... and what their servers write back: a denied RPC's answer becomes PERMISSION_DENIED
    if (bpf_prog_attach(bpf_program__fd(skel->progs.gw_srv_msg), bpf_map__fd(skel->maps.gw_srv_sockhash),
                        BPF_SK_MSG_VERDICT, 0) != 0)
      throw SysError("attaching sk_msg to the server sockhash", errno);
    PinProgram(bpf_program__fd(skel->progs.gw_srv_msg), MapPin(o.pin_dir, kProgSrvMsg));
    AttachCgroupLink(MapPin(o.pin_dir, kLinkGuard), skel->progs.gw_guard, cgroup, "the egress guard");
    {  // the ingress guard: swapped if attached; attached only while the live policy protects a server
      Fd gin(bpf_obj_get(MapPin(o.pin_dir, kLinkGuardIn).c_str()));
      if (gin && bpf_link_update(gin.get(), bpf_program__fd(skel->progs.gw_guard_in), nullptr) != 0)
        throw SysError("replacing the ingress guard program", errno);
    }
    AttachCgroupLink(MapPin(o.pin_dir, kLinkSockops), skel->progs.gw_sockops, cgroup, "sockops");
    PinProgram(bpf_program__fd(skel->progs.gw_sockops), MapPin(o.pin_dir, kProgSockops));
    PinProgram(bpf_program__fd(skel->progs.gw_guard), MapPin(o.pin_dir, kProgGuard));
    PinProgram(bpf_program__fd(skel->progs.gw_guard_in), MapPin(o.pin_dir, kProgGuardIn));
    if (reset)
      PinProgram(bpf_program__fd(skel->progs.gw_reset_predating), MapPin(o.pin_dir, kProgReset));
    else if (unlink(MapPin(o.pin_dir, kProgReset).c_str()) != 0 && errno != ENOENT)  // (prev puts it back on failure)
      throw SysError("removing " + MapPin(o.pin_dir, kProgReset), errno);
    WriteName(live, 0, GW_NAMEKIND_META, 0, cgroup, "", static_cast<uint64_t>(time(nullptr)));
    // 4. The policy last: its flip is the one write that cannot be undone.
    // (It attaches the ingress guard if it protects a server; the live one
    // kept gets it here.)
    if (!o.policy.empty())
      generation = ApplyPolicy(live, policy, paths);
    else
      SyncIngressGuard(live, generation && SlotProtects(live, GW_SLOT_OF(generation)));
  } catch (...) {
    if (!fresh) {  // a fresh dir: the caller removes it all
      prev.Restore(o.pin_dir, live, sockhash);
      try {
        // (none before: an older version's pin dir, where it is new)
        WriteLimits(bpf_map__fd(skel->maps.gw_limits), had_limits ? prev_limits : gw_limits{});
      } catch (...) {
      }
    }
    throw;
  }
  return generation;
}

void Attach(const AttachOptions& o) {
  RequireRoot("attach");
  // what this kernel lacks: refused before anything is made (the pin dir
  // too), or attached without it and said
  const KernelProbe kernel = ProbeKernel();
  if (!kernel.MissingRequired().empty()) throw Error(kSystem, RefusalMessage(kernel.release, kernel.MissingRequired()));
  const std::string cgroup = AttachCgroupPath(o.cgroup);
  // Check the policy before touching anything: bad input changes nothing.
  Policy policy;
  IdentityPaths paths;
  std::string applied = o.policy;  // the file whose policy goes live
  const std::string kept = o.state_dir.empty() ? "" : o.state_dir + "/policy.yaml";
  if (!o.policy.empty()) {
    try {
      policy = LoadPolicyFile(o.policy);
      paths = ResolveIdentities(policy, cgroup);
    } catch (const Error& e) {
      // a refused file changes nothing live; with nothing live yet (a boot)
      // the last policy that went live stands in rather than none at all
      if (e.code() != kBadInput || kept.empty() || PinDirAttached(o.pin_dir) || access(kept.c_str(), R_OK) != 0)
        throw;
      std::cerr << "grpcwall: " << e.what() << "\n";
      policy = LoadPolicyFile(kept);
      paths = ResolveIdentities(policy, cgroup);
      applied = kept;
      std::cerr << "grpcwall: warning: " << o.policy << " was refused (above) and nothing was attached yet: "
                << "attaching with the last policy that went live from --state-dir instead, " << kept
                << ". Fix " << o.policy << " and attach again (systemctl reload grpcwall)\n";
    }
  }
  std::exception_ptr reset_error;
  {
    bool created = false;
    Fd lock = PreparePinDir(o.pin_dir, &created);
    // under the lock: no other attach or detach can change what is decided here
    PinDirState st = InspectPinDir(o.pin_dir);
    if (!st.grpcwall && !st.entries.empty())
      throw InputError(o.pin_dir + " is not a grpcwall pin dir (" + st.why_not + ") and not empty: it holds " +
                       ListEntries(st.entries) +
                       ". Nothing was changed: grpcwall pins only into a directory of its own; give a new --pin-dir "
                       "under /sys/fs/bpf");
    const bool fresh = !st.grpcwall;
    uint64_t generation = 0;
    try {
      AttachOptions eff = o;
      eff.policy = applied;
      generation = AttachLocked(eff, cgroup, policy, paths, fresh, kernel);
    } catch (...) {
      if (fresh) {  // a failed first attach removes what it pinned, and the dir if it made it
        try {
          RemoveOwnPins(o.pin_dir);
          if (created) rmdir(o.pin_dir.c_str());
        } catch (...) {
        }
      }
      throw;
    }
    std::cout << "grpcwall attached at cgroup " << cgroup << ", pinned under " << o.pin_dir << "\n";
    if (generation)
      std::cout << "policy generation " << generation << (applied.empty() ? " (kept)" : " from " + applied) << "\n";
    else
      std::cout << "no policy yet: nothing is policed until 'grpcwall policy apply FILE'\n";
    if (!kept.empty() && !o.policy.empty() && applied == o.policy) {
      try {
        KeepPolicy(o.policy, o.state_dir, kept);
      } catch (const std::exception& e) {  // live already: said, not undone
        std::cerr << "grpcwall: warning: the policy is live, but keeping a copy of it failed: " << e.what() << "\n";
      }
    }
    if (!kernel.CanResetPredating())
      std::cerr << "grpcwall: warning: " << NoResetMessage(kernel.release, kernel.MissingOptional(kReset)) << "\n";
    if (!kernel.MissingOptional(kTask).empty())
      std::cerr << "grpcwall: warning: " << NoTaskMessage(kernel.release, kernel.MissingOptional(kTask)) << "\n";
    // connections made before sockops saw them carry RPCs unchecked: reset
    // them so their clients reconnect under policy
    if (generation && kernel.CanResetPredating()) {
      try {
        int reset = ResetAfterFlip(o.pin_dir, generation, "attach again");
        if (reset)
          std::cout << "reset " << reset << " connection(s) that predate attach: their clients reconnect under policy\n";
      } catch (...) {
        reset_error = std::current_exception();  // said after the helper is started
      }
    }
  }
  // after the pin dir lock is released: the helper is a fork of this process
  if (o.no_fallback) {
    if (StopProxy(o.pin_dir)) std::cout << "fallback helper stopped (--no-fallback)\n";
    std::cout << "no fallback helper: header blocks the kernel cannot see whole fail their connection\n";
    if (o.fallback_managed)
      std::cout << "(a helper run by its service comes back: systemctl mask --now grpcwall-proxy)\n";
  } else if (pid_t pid = RunningProxy(o.pin_dir)) {
    std::cout << "fallback helper already running (pid " << pid << ")\n";
  } else if (o.fallback_managed) {  // (--no-fallback above wins over it)
    std::cout << "fallback helper not running yet: it is left to its service (--fallback-managed: "
                 "systemctl start grpcwall-proxy); until it runs, header blocks the kernel cannot see whole "
                 "fail their connection\n";
  } else {
    try {
      StartProxy(o.pin_dir);
    } catch (const std::exception& e) {
      std::string also;  // the reset's failure is not lost
      if (reset_error) {
        try {
          std::rethrow_exception(reset_error);
        } catch (const std::exception& r) {
          also = " Also: " + std::string(r.what());
        }
      }
      throw Error(kSystem, "grpcwall is attached and enforcing at cgroup " + cgroup + ", but the fallback helper did not start: " +
                               e.what() + ". Until it runs, connections whose header blocks the kernel cannot see whole fail "
                               "closed: start it with 'grpcwall proxy --pin-dir " + o.pin_dir +
                               " --daemon', or attach again with --no-fallback." + also);
    }
  }
  if (reset_error) std::rethrow_exception(reset_error);
}

}  // namespace

void RegisterAttach(CLI::App& app) {
  auto o = std::make_shared<AttachOptions>();
  auto* sub = app.add_subcommand(
      "attach",
      "Load the programs, pin them and the maps under the pin dir, attach sockops and the egress and ingress\n"
      "guards at the cgroup, sk_msg to the sockhash and sk_skb to the server sockhash, apply POLICY if given,\n"
      "start the fallback helper, and exit.\n"
      "Enforcement needs no running process. Running attach again replaces the programs with no window of\n"
      "no enforcement and keeps the live policy unless POLICY is given. Everything that can refuse is\n"
      "checked first (policy, cgroup, the pin dir's cgroup and size) and the policy is applied last: a\n"
      "failed attach leaves what was live as it was, and a failed first attach removes what it pinned.\n"
      "Over maps pinned by another grpcwall version (an upgrade: maps of another layout), attach with\n"
      "POLICY builds a new set beside them (PIN_DIR/upgrading), applies POLICY into it and moves the\n"
      "cgroup's links onto the new programs, again with no window; the connections the old programs\n"
      "walked are reset (their clients reconnect). Without POLICY it changes nothing and says why.\n"
      "The pin dir must be a directory of grpcwall's own on bpffs (new, empty, or attached before).");
  sub->footer(
      "Kernel: attach first probes the running kernel for what grpcwall's programs use (README, Kernels).\n"
      "Without a required facility it exits 2 naming the Linux version that has it, with nothing attached.\n"
      "Without bpf_sock_destroy (Linux 6.5) or the tcp iterator (5.9) it attaches all the rest and warns:\n"
      "connections that predate attach or a policy apply cannot be reset; their payload is held back, so\n"
      "restart them. GRPCWALL_KERNEL_PRETEND=sock_destroy[,FACILITY...] treats those facilities as missing\n"
      "(for tests; an unknown name lists them all).\n");
  sub->add_option("--cgroup", o->cgroup,
                  "cgroup v2 directory whose processes are policed: absolute, or relative to the cgroup v2 root\n"
                  "(not to the current directory); default the v2 root from /proc/self/mounts. Recorded as\n"
                  "an absolute canonical path (status shows it); '..' is refused, at most 255 bytes");
  AddPinDir(sub, &o->pin_dir);
  sub->add_option("POLICY", o->policy, "policy YAML to apply")->check(CLI::ExistingFile);
  sub->add_option("--max-connections", o->max_connections,
                  "policed connections the sockhash holds at once (default " + std::to_string(kDefaultMaxConnections) +
                      "); fixed at the first attach of a pin dir. When it is full, new policed connections\n"
                      "fail closed: their data never leaves the host, and an event says so. The server side takes\n"
                      "as many accepted connections of protected servers, less 1/8 (at most 4096) kept for those in\n"
                      "their handshake: past that, new connections to a protected server are refused at its listener\n"
                      "(an event each, reason: most walked connections)")
      ->check(CLI::Range(2u, 1u << 24));
  sub->add_option("--hold-slots", o->hold_slots,
                  "server side: HEADERS frames that can be held back at once, each until the rest of it arrives\n"
                  "(a frame cut across received TCP buffers; ~80 KiB of kernel memory per slot; default " +
                      std::to_string(GW_HOLD_SLOTS) + "). Fixed at the first attach of a pin dir. When every slot\n"
                      "is busy, a connection that needs one fails closed with an event (reason: could not be held back)")
      ->check(CLI::Range(1u, static_cast<uint32_t>(GW_HOLD_SLOTS_MAX)));
  sub->add_option("--hold-slots-per-identity", o->hold_share,
                  "server side: hold slots the callers of one identity may hold at once (default half of\n"
                  "--hold-slots, rounded up; at most all of them). A caller that stops inside HEADERS frames on\n"
                  "many connections takes its own identity's share, never more: past it, its connection that\n"
                  "needs one more fails closed with an event (reason: identity holds its share of the hold\n"
                  "slots). With the default, two identities' callers can hold every slot: give less where more\n"
                  "identities must be kept from each other. Kept by later attaches that do not give it; status\n"
                  "shows it")
      ->check(CLI::Range(1u, static_cast<uint32_t>(GW_HOLD_SLOTS_MAX)));
  sub->add_flag("--no-fallback", o->no_fallback,
                "do not start the userspace fallback ('grpcwall proxy'), and stop one that runs: connections\n"
                "whose header blocks the kernel cannot see whole (CONTINUATION, over 16384 bytes) then fail closed");
  sub->add_flag("--fallback-managed", o->fallback_managed,
                "the fallback helper is run by a service manager (grpcwall-proxy.service runs 'grpcwall proxy'\n"
                "with Restart=always): attach neither starts nor stops one (--no-fallback still stops one)");
  sub->add_option("--state-dir", o->state_dir,
                  "keep a copy of each POLICY that goes live in DIR/policy.yaml; when POLICY is refused and\n"
                  "nothing is attached yet (a boot after a bad edit), attach with that copy instead, and warn:\n"
                  "never a boot with no policy at all (grpcwall.service passes /var/lib/grpcwall)");
  sub->callback([o] { Attach(*o); });
}

}  // namespace gw
