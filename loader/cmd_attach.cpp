// grpcwall attach: load, pin, attach, apply a policy, exit.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <ctime>
#include <iostream>
#include <memory>

#include "commands.h"
#include "error.h"
#include "proxy.h"
#include "live.h"
#include "system.h"

#include "grpcwall.skel.h"

namespace gw {
namespace {

struct AttachOptions {
  std::string cgroup;
  std::string pin_dir;
  std::string policy;
  bool no_fallback = false;
  uint32_t max_connections = 0;  // 0: kDefaultMaxConnections, or what is pinned
};

constexpr uint32_t kDefaultMaxConnections = 262144;

// The sockhash size: fixed when its map is first pinned. Returns the size
// to load with; throws when --max-connections asks for another one.
uint32_t SockhashSize(const AttachOptions& o) {
  int fd = bpf_obj_get(MapPin(o.pin_dir, "gw_sockhash").c_str());
  if (fd < 0) return o.max_connections ? o.max_connections : kDefaultMaxConnections;
  Fd f(fd);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(f.get(), &info, &len) != 0) throw SysError("reading the pinned sockhash", errno);
  if (o.max_connections && o.max_connections != info.max_entries)
    throw Error(kBadInput, "--max-connections " + std::to_string(o.max_connections) + ": the sockhash pinned under " +
                            o.pin_dir + " holds " + std::to_string(info.max_entries) +
                            " connections and cannot be resized; run 'grpcwall detach --pin-dir " + o.pin_dir +
                            "' first to attach with another size");
  return info.max_entries;
}

using Skel = std::unique_ptr<grpcwall_bpf, decltype(&grpcwall_bpf__destroy)>;

void PinProgram(bpf_program* prog, const std::string& path) {
  // Replace the pin; sockets already in the sockhash keep the program they
  // were inserted with until they close, so enforcement never stops.
  unlink(path.c_str());
  if (bpf_obj_pin(bpf_program__fd(prog), path.c_str()) != 0) throw SysError("pinning " + path, errno);
}

std::string Dirname(const std::string& p);

uint64_t LinkCgroupId(int link_fd) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(link_fd, &info, &len) != 0) throw SysError("reading sockops link info", errno);
  return info.cgroup.cgroup_id;
}

// Attaches `prog` at the cgroup through a link pinned at `link_pin`, or, if
// that link exists, swaps its program atomically (no window without it).
void AttachCgroupLink(const std::string& link_pin, bpf_program* prog, const std::string& cgroup, uint64_t want_cg,
                      const std::string& what) {
  int old_link = bpf_obj_get(link_pin.c_str());
  if (old_link >= 0) {
    Fd old(old_link);
    uint64_t have_cg = LinkCgroupId(old.get());
    if (have_cg != want_cg)
      throw Error(kSystem, "pin dir " + Dirname(link_pin) + " is attached at another cgroup (id " +
                               std::to_string(have_cg) + "): run 'grpcwall detach --pin-dir " + Dirname(link_pin) +
                               "' first, or use another --pin-dir");
    if (bpf_link_update(old.get(), bpf_program__fd(prog), nullptr) != 0)
      throw SysError("replacing the " + what + " program", errno);
    return;
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

std::string Dirname(const std::string& p) {
  auto i = p.rfind('/');
  return i == std::string::npos ? "." : p.substr(0, i);
}

void AttachPinned(const AttachOptions& o, const std::string& cgroup, const Policy& policy,
                  const IdentityPaths& paths);

void Attach(const AttachOptions& o) {
  RequireRoot("attach");
  std::string cgroup = o.cgroup.empty() ? CgroupV2Root() : o.cgroup;
  if (!IsCgroupV2Dir(cgroup))
    throw Error(kSystem, "--cgroup " + cgroup + " is not a cgroup v2 directory (the v2 root here is " +
                             CgroupV2Root() + ")");
  // Check the policy before touching anything: bad input changes nothing.
  Policy policy;
  IdentityPaths paths;
  if (!o.policy.empty()) {
    policy = LoadPolicyFile(o.policy);
    paths = ResolveIdentities(policy, cgroup);
  }
  const bool fresh = !PinDirAttached(o.pin_dir);
  try {
    AttachPinned(o, cgroup, policy, paths);
  } catch (...) {
    if (fresh) {
      try {
        RemovePinDir(o.pin_dir);  // a failed first attach leaves nothing
      } catch (...) {
      }
    }
    throw;
  }
  // after the pin dir lock is released: the helper is a fork of this process
  if (o.no_fallback) {
    if (StopProxy(o.pin_dir)) std::cout << "fallback helper stopped (--no-fallback)\n";
    std::cout << "no fallback helper: header blocks the kernel cannot see whole fail their connection\n";
  } else if (pid_t pid = RunningProxy(o.pin_dir)) {
    std::cout << "fallback helper already running (pid " << pid << ")\n";
  } else {
    StartProxy(o.pin_dir);
  }
}

void AttachPinned(const AttachOptions& o, const std::string& cgroup, const Policy& policy,
                  const IdentityPaths& paths) {
  EnsurePinDir(o.pin_dir);
  Fd lock = LockPinDir(o.pin_dir);

  uint32_t max_conns = SockhashSize(o);
  Skel skel(grpcwall_bpf__open(), grpcwall_bpf__destroy);
  if (!skel) throw SysError("opening the BPF object", errno);
  if (bpf_map__set_max_entries(skel->maps.gw_sockhash, max_conns) != 0)
    throw SysError("sizing the sockhash", errno);
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
                              " (if maps pinned by another grpcwall version are in " + o.pin_dir +
                                  ", run 'grpcwall detach --pin-dir " + o.pin_dir + "' first; GRPCWALL_DEBUG=1 shows the verifier log)"));

  LiveMaps live = LiveMaps::Open(o.pin_dir);
  gw_config cfg = ReadConfig(live);
  if (!cfg.key0 && !cfg.key1) WriteConfig(live, NewConfigKeys(cfg));  // first attach: new key

  uint64_t generation = cfg.generation;
  if (!o.policy.empty()) generation = ApplyPolicy(live, policy, paths);

  // sk_msg first, so every socket the sockops program inserts is covered.
  int map_fd = bpf_map__fd(skel->maps.gw_sockhash);
  if (bpf_prog_attach(bpf_program__fd(skel->progs.gw_sk_msg), map_fd, BPF_SK_MSG_VERDICT, 0) != 0)
    throw SysError("attaching sk_msg to the sockhash", errno);
  PinProgram(skel->progs.gw_sk_msg, o.pin_dir + "/prog_sk_msg");

  // The egress guard first, then sockops: a socket sockops makes policed
  // is never on the wire without the guard.
  uint64_t want_cg = CgroupId(cgroup);
  AttachCgroupLink(o.pin_dir + "/link_guard", skel->progs.gw_guard, cgroup, want_cg, "the egress guard");
  AttachCgroupLink(o.pin_dir + "/link_sockops", skel->progs.gw_sockops, cgroup, want_cg, "sockops");
  PinProgram(skel->progs.gw_sockops, o.pin_dir + "/prog_sockops");
  PinProgram(skel->progs.gw_guard, o.pin_dir + "/prog_guard");
  PinProgram(skel->progs.gw_reset_predating, o.pin_dir + "/prog_reset");
  // connections made before sockops saw them carry RPCs unchecked: reset
  // them so their clients reconnect under policy
  int reset = generation ? ResetPredating(o.pin_dir) : 0;
  WriteName(live, 0, GW_NAMEKIND_META, 0, cgroup, "", static_cast<uint64_t>(time(nullptr)));

  std::cout << "grpcwall attached at cgroup " << cgroup << ", pinned under " << o.pin_dir << "\n";
  if (generation)
    std::cout << "policy generation " << generation << (o.policy.empty() ? " (kept)" : " from " + o.policy) << "\n";
  else
    std::cout << "no policy yet: nothing is policed until 'grpcwall policy apply FILE'\n";
  if (reset)
    std::cout << "reset " << reset << " connection(s) that predate attach: their clients reconnect under policy\n";
}

}  // namespace

void RegisterAttach(CLI::App& app) {
  auto o = std::make_shared<AttachOptions>();
  auto* sub = app.add_subcommand(
      "attach",
      "Load the programs, pin them and the maps under the pin dir, attach sockops at the cgroup\n"
      "and sk_msg to the sockhash, apply POLICY if given, and exit. Enforcement needs no running\n"
      "process. Running attach again replaces the programs with no window of no enforcement and\n"
      "keeps the live policy unless POLICY is given.");
  sub->add_option("--cgroup", o->cgroup,
                  "cgroup v2 directory whose processes are watched (default: the cgroup v2 root from /proc/self/mounts)")
      ->check(CLI::ExistingDirectory);
  AddPinDir(sub, &o->pin_dir);
  sub->add_option("POLICY", o->policy, "policy YAML to apply")->check(CLI::ExistingFile);
  sub->add_option("--max-connections", o->max_connections,
                  "policed connections the sockhash holds at once (default " + std::to_string(kDefaultMaxConnections) +
                      "); fixed at the first attach of a pin dir. When it is full, new policed connections\n"
                      "fail closed: their data never leaves the host, and an event says so")
      ->check(CLI::Range(1u, 1u << 24));
  sub->add_flag("--no-fallback", o->no_fallback,
                "do not start the userspace fallback ('grpcwall proxy'): connections whose header blocks the\n"
                "kernel cannot see whole (CONTINUATION, over 16384 bytes) then fail closed");
  sub->callback([o] { Attach(*o); });
}

}  // namespace gw
