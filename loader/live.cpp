#include "live.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include <algorithm>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "error.h"
#include "kernel.h"
#include "pin_dir.h"
#include "siphash.h"

namespace gw {
namespace {

// Every key of a map, or an error: a walk that stopped early (an LPM trie's
// get_next_key allocates, and can fail with ENOMEM) would leave out keys that
// what is built from them must cover (the service port bits: a connection to
// a port left out is not policed at all).
template <typename K>
std::vector<K> Keys(int fd) {
  std::vector<K> keys;
  K cur{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    keys.push_back(next);
    cur = next;
    prev = &cur;
  }
  if (errno != ENOENT) throw SysError("reading the keys of a policy map", errno);
  return keys;
}

// The keys of a hash map, 4096 a call (bpf_map_lookup_batch) where
// get_next_key takes one call per key (20,000 for a 10,000-identity policy's
// names); one at a time where the kernel cannot batch.
template <typename K, typename V>
std::vector<K> HashKeys(int fd) {
  std::vector<K> out, keys(4096);
  std::vector<V> vals(keys.size());
  uint64_t in = 0, next = 0;  // the batch token (a bucket index for a hash map)
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  for (bool first = true;; first = false) {
    uint32_t count = static_cast<uint32_t>(keys.size());
    const int r = bpf_map_lookup_batch(fd, first ? nullptr : &in, &next, keys.data(), vals.data(), &count, &opts);
    const int err = r ? errno : 0;
    if (r && err != ENOENT) return Keys<K>(fd);  // no batch lookup, or a bucket over 4096 keys
    out.insert(out.end(), keys.begin(), keys.begin() + count);
    if (err == ENOENT) return out;
    in = next;
  }
}

// Entries [0, n) of an array of u32, in one call where the kernel can
// batch (32,768 lookups one at a time are ~30 ms of an apply).
std::vector<uint32_t> ReadArray(int fd, uint32_t n, const char* what) {
  std::vector<uint32_t> keys(n), vals(n);
  uint32_t count = n, next = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  const int r = bpf_map_lookup_batch(fd, nullptr, &next, keys.data(), vals.data(), &count, &opts);
  if ((r == 0 || errno == ENOENT) && count == n) {
    std::vector<uint32_t> out(n);
    for (uint32_t i = 0; i < n; i++)
      if (keys[i] < n) out[keys[i]] = vals[i];
    return out;
  }
  for (uint32_t i = 0; i < n; i++)
    if (bpf_map_lookup_elem(fd, &i, &vals[i]) != 0) throw SysError(std::string("reading ") + what, errno);
  return vals;
}

void Update(int fd, const void* k, const void* v, const char* what) {
  if (bpf_map_update_elem(fd, k, v, BPF_ANY) != 0) throw SysError(std::string("updating ") + what, errno);
}

// Batch updates (gw_policy, and each fresh method table in one call),
// falling back to one at a time where the kernel has none.
// (stride: values per key, the CPU count for a per-CPU map)
template <typename K, typename V>
void BatchUpdate(int fd, std::vector<K>& keys, std::vector<V>& vals, const char* what, size_t stride = 1) {
  if (keys.empty()) return;
  uint32_t count = static_cast<uint32_t>(keys.size());
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  if (bpf_map_update_batch(fd, keys.data(), vals.data(), &count, &opts) == 0) return;
  if (errno != EINVAL && errno != 524 /* ENOTSUPP */ && errno != EOPNOTSUPP)
    throw SysError(std::string("updating ") + what, errno);
  // from the first: a kernel without the command leaves count as it was
  // given; writing an element again with BPF_ANY changes nothing
  for (size_t i = 0; i < keys.size(); i++) Update(fd, &keys[i], &vals[i * stride], what);
}

template <typename K>
void BatchDelete(int fd, std::vector<K>& keys) {
  if (keys.empty()) return;
  uint32_t count = static_cast<uint32_t>(keys.size());
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  if (bpf_map_delete_batch(fd, keys.data(), &count, &opts) == 0) return;
  // a kernel without the command leaves count as it was given: one at a
  // time from the first; else from the key it stopped at (gone already)
  const int err = errno;
  const size_t from = err == EINVAL || err == 524 /* ENOTSUPP */ || err == EOPNOTSUPP ? 0 : count;
  for (size_t i = from; i < keys.size(); i++)
    if (bpf_map_delete_elem(fd, &keys[i]) != 0 && errno != ENOENT)
      throw SysError("emptying the inactive policy slot", errno);
}

int NumCpus() {
  int n = libbpf_num_possible_cpus();
  if (n <= 0) throw SysError("counting possible CPUs", -n);
  return n;
}

}  // namespace

LiveMaps LiveMaps::Open(const std::string& pin_dir) {
  LiveMaps m;
  m.pin_dir = pin_dir;
  m.config = OpenPinned(MapPin(pin_dir, "gw_config"));
  m.idents = OpenPinned(MapPin(pin_dir, "gw_idents"));
  m.services = OpenPinned(MapPin(pin_dir, "gw_services"));
  m.policy = OpenPinned(MapPin(pin_dir, "gw_policy"));
  m.names = OpenPinned(MapPin(pin_dir, "gw_names"));
  m.counters = OpenPinned(MapPin(pin_dir, "gw_counters"));
  m.rule_counters = OpenPinned(MapPin(pin_dir, "gw_rule_counters"));
  m.svc_ports = Fd(bpf_obj_get(MapPin(pin_dir, "gw_svc_ports").c_str()));
  m.pair_rules = Fd(bpf_obj_get(MapPin(pin_dir, "gw_pair_rules").c_str()));
  m.peers = Fd(bpf_obj_get(MapPin(pin_dir, "gw_peers").c_str()));
  m.srv_ports = Fd(bpf_obj_get(MapPin(pin_dir, "gw_srv_ports").c_str()));
  m.srv_port_bits = Fd(bpf_obj_get(MapPin(pin_dir, "gw_srv_port_bits").c_str()));
  m.ident_shares = Fd(bpf_obj_get(MapPin(pin_dir, "gw_ident_shares").c_str()));
  m.hold_shares = Fd(bpf_obj_get(MapPin(pin_dir, "gw_srv_hold_shares").c_str()));
  return m;
}

void WriteServicePorts(const LiveMaps& m, uint32_t slot) {
  if (!m.svc_ports) return;
  gw_port_bits bits{};
  for (const auto& k : Keys<gw_svc_key>(m.services.get()))
    if (k.slot == slot) {
      const uint16_t port = ntohs(k.port);
      bits.w[port / 64] |= uint64_t{1} << (port % 64);
    }
  Update(m.svc_ports.get(), &slot, &bits, "gw_svc_ports");
  if (!m.srv_port_bits) return;
  gw_port_bits srv{};  // the protected servers' ports, for the ingress guard
  if (m.srv_ports)
    for (const auto& k : Keys<gw_srv_key>(m.srv_ports.get()))
      if (k.slot == slot) srv.w[(k.port & 0xffff) / 64] |= uint64_t{1} << (k.port % 64);
  Update(m.srv_port_bits.get(), &slot, &srv, "gw_srv_port_bits");
}

bool SlotProtects(const LiveMaps& m, uint32_t slot) {
  gw_port_bits bits{};
  if (!m.srv_port_bits || bpf_map_lookup_elem(m.srv_port_bits.get(), &slot, &bits) != 0) return false;
  for (uint64_t w : bits.w)
    if (w) return true;
  return false;
}

bool SyncIngressGuard(const LiveMaps& m, bool want) {
  const std::string pin = MapPin(m.pin_dir, kLinkGuardIn);
  Fd link(bpf_obj_get(pin.c_str()));
  if (link) {  // a link whose cgroup went, or detached by hand (bpftool link detach), guards nothing
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0) throw SysError("reading " + pin, errno);
    if (info.cgroup.cgroup_id == 0) {
      if (unlink(pin.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + pin, errno);
      link = Fd();
    }
  }
  if (!want) {
    if (!link) return false;
    if (bpf_link_detach(link.get()) != 0 && errno != EINVAL) throw SysError("detaching the ingress guard", errno);
    if (unlink(pin.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + pin, errno);
    return false;
  }
  Fd prog(bpf_obj_get(MapPin(m.pin_dir, kProgGuardIn).c_str()));
  if (link || !prog) return false;
  const std::string cgroup = AttachCgroup(m);
  Fd cg(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cg) throw SysError("opening cgroup " + cgroup, errno);
  Fd made(bpf_link_create(prog.get(), cg.get(), BPF_CGROUP_INET_INGRESS, nullptr));
  if (!made) throw SysError("attaching the ingress guard at cgroup " + cgroup, errno);
  if (bpf_obj_pin(made.get(), pin.c_str()) != 0) throw SysError("pinning " + pin, errno);  // closing it detaches
  return true;
}

void UpgradeStopAt(const char* step) {
  const char* at = std::getenv("GRPCWALL_UPGRADE_STOP_AT");
  if (at && std::string(at) == step) _exit(9);
}

void FinishSwitch(const std::string& pin_dir) {
  const std::string stage = pin_dir + "/" + kStagingDir;
  if (access(MapPin(stage, kStagedMarker).c_str(), F_OK) == 0) return;  // done
  LiveMaps live = LiveMaps::Open(stage);
  const gw_config cfg = ReadConfig(live);
  // the ingress guard first: the old one drops every segment of a
  // connection the new programs accepted (not in its gw_srv_conns)
  const std::string pin = MapPin(pin_dir, kLinkGuardIn);
  Fd link(bpf_obj_get(pin.c_str()));
  if (link) {  // one whose cgroup went, or detached by hand, guards nothing
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0) throw SysError("reading " + pin, errno);
    if (info.cgroup.cgroup_id == 0) {
      link = Fd();
      if (unlink(pin.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + pin, errno);
    }
  }
  const std::string cgroup = AttachCgroup(live);
  if (access(cgroup.c_str(), F_OK) != 0) {
    // the attach cgroup went: nothing runs there to switch; the marker only
    std::cerr << "grpcwall: warning: " << cgroup << " is gone: no guard to switch\n";
  } else if (cfg.generation && SlotProtects(live, GW_SLOT_OF(cfg.generation))) {
    Fd prog = OpenPinned(MapPin(stage, kProgGuardIn));
    if (link) {
      if (bpf_link_update(link.get(), prog.get(), nullptr) != 0) throw SysError("replacing the ingress guard program", errno);
    } else {
      Fd cg(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!cg) throw SysError("opening cgroup " + cgroup, errno);
      Fd made(bpf_link_create(prog.get(), cg.get(), BPF_CGROUP_INET_INGRESS, nullptr));
      if (!made) throw SysError("attaching the ingress guard at cgroup " + cgroup, errno);
      unlink(pin.c_str());  // (a detached one's)
      if (bpf_obj_pin(made.get(), pin.c_str()) != 0) throw SysError("pinning " + pin, errno);
    }
  } else if (link) {
    if (bpf_link_detach(link.get()) != 0 && errno != EINVAL) throw SysError("detaching the ingress guard", errno);
    if (unlink(pin.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + pin, errno);
  }
  UpgradeStopAt("guard_in");
  const std::string gpin = MapPin(pin_dir, kLinkGuard);
  Fd guard(bpf_obj_get(gpin.c_str()));
  bpf_link_info ginfo{};
  uint32_t glen = sizeof(ginfo);
  const bool attached = guard && bpf_obj_get_info_by_fd(guard.get(), &ginfo, &glen) == 0 && ginfo.cgroup.cgroup_id != 0;
  Fd gprog = OpenPinned(MapPin(stage, kProgGuard));
  if (attached) {
    if (bpf_link_update(guard.get(), gprog.get(), nullptr) != 0) throw SysError("replacing the egress guard program", errno);
  } else if (access(cgroup.c_str(), F_OK) == 0) {  // detached by hand: made again
    Fd cg(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg) throw SysError("opening cgroup " + cgroup, errno);
    Fd made(bpf_link_create(gprog.get(), cg.get(), BPF_CGROUP_INET_EGRESS, nullptr));
    if (!made) throw SysError("attaching the egress guard at cgroup " + cgroup, errno);
    if (unlink(gpin.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + gpin, errno);
    if (bpf_obj_pin(made.get(), gpin.c_str()) != 0) throw SysError("pinning " + gpin, errno);
  }
  Fd marker(bpf_map_create(BPF_MAP_TYPE_ARRAY, "gw_switched", 4, 4, 1, nullptr));
  if (!marker || bpf_obj_pin(marker.get(), MapPin(stage, kStagedMarker).c_str()) != 0)
    throw SysError("pinning " + MapPin(stage, kStagedMarker), errno);
}

bool SettleStaging(const std::string& pin_dir) {
  if (!HasStaging(pin_dir)) return false;
  if (!StagedIsLive(pin_dir)) {
    RemoveStaging(pin_dir);
    return false;
  }
  FinishSwitch(pin_dir);
  std::cerr << "grpcwall: warning: finishing an upgrade that died half way: the connections its old programs walked "
               "on receive were not reset before their server sockhash goes, and lose what is queued for their "
               "servers (attach resets them next; detach leaves them to their callers)\n";
  MoveStaged(pin_dir);
  return true;
}

gw_config ReadConfig(const LiveMaps& m) {
  gw_config c{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(m.config.get(), &zero, &c) != 0) throw SysError("reading gw_config", errno);
  return c;
}

void WriteConfig(const LiveMaps& m, const gw_config& c) {
  uint32_t zero = 0;
  Update(m.config.get(), &zero, &c, "gw_config");
}

gw_config NewConfigKeys(const gw_config& in) {
  gw_config c = in;
  uint64_t key[2];
  if (getrandom(key, sizeof(key), 0) != sizeof(key)) throw SysError("getrandom", errno);
  c.key0 = key[0];
  c.key1 = key[1];
  c.hash_any = MethodHash("", GW_MATCH_ANY, c.key0, c.key1);
  c.hash_default = MethodHash("", GW_MATCH_DEFAULT, c.key0, c.key1);
  return c;
}

namespace {
gw_name_val NameVal(const std::string& text, const std::string& detail, uint64_t aux) {
  gw_name_val v{};
  std::strncpy(v.text, text.c_str(), sizeof(v.text) - 1);
  std::strncpy(v.detail, detail.c_str(), sizeof(v.detail) - 1);
  v.aux = aux;
  return v;
}
}  // namespace

void WriteName(const LiveMaps& m, uint32_t slot, uint32_t kind, uint64_t id, const std::string& text,
               const std::string& detail, uint64_t aux) {
  gw_name_key k{slot, kind, id};
  gw_name_val v = NameVal(text, detail, aux);
  Update(m.names.get(), &k, &v, "gw_names");
}

bool ReadName(const LiveMaps& m, uint32_t slot, uint32_t kind, uint64_t id, gw_name_val* out) {
  gw_name_key k{slot, kind, id};
  return bpf_map_lookup_elem(m.names.get(), &k, out) == 0;
}

std::string AttachCgroup(const LiveMaps& m) {
  gw_name_val meta{};
  const std::string cg = ReadName(m, 0, GW_NAMEKIND_META, 0, &meta) ? std::string(meta.text) : CgroupV2Root();
  // the record must name the cgroup sockops really is attached at (an older
  // grpcwall recorded --cgroup as typed)
  Fd link(bpf_obj_get((m.pin_dir + "/link_sockops").c_str()));
  if (link) {
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    struct stat st {};
    if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0) throw SysError("reading the sockops link", errno);
    if (info.cgroup.cgroup_id == 0)
      throw Error(kSystem, "the cgroup sockops was attached at under " + m.pin_dir +
                               " is gone (removed, perhaps made again): nothing is policed there; run 'grpcwall "
                               "detach --pin-dir " + m.pin_dir + "', then attach again");
    if (cg.empty() || cg[0] != '/' || stat(cg.c_str(), &st) != 0 || st.st_ino != info.cgroup.cgroup_id)
      throw Error(kSystem, "the attach record of " + m.pin_dir + " names cgroup '" + cg +
                               "', which is not where sockops is attached (cgroup id " +
                               std::to_string(info.cgroup.cgroup_id) + "): run 'grpcwall attach --pin-dir " +
                               m.pin_dir + " --cgroup DIR' again with the cgroup it is attached at");
  }
  return cg;
}

IdentityPaths ResolveIdentities(const Policy& p, const std::string& attach_cgroup) {
  IdentityPaths out;
  RequireGlobalCgroupView();
  const std::string root = CgroupV2Root();
  // the attach cgroup as components below the root: sockops runs only for
  // sockets of processes in it or below it
  std::vector<std::string> attach;
  std::string err = attach_cgroup.empty() || attach_cgroup == root ? "" : CanonicalCgroup(attach_cgroup, root, &attach);
  if (!err.empty()) throw Error(kSystem, "attach cgroup " + attach_cgroup + ": " + err);
  // whether an identity's cgroup exists: a directory on the v2 root's file
  // system, looked up from the root (one fstatat each, not a statfs and a
  // stat of the whole path: 10,000 identities were ~0.1 s)
  Fd root_fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  struct stat root_st {};
  const bool have_root = root_fd && IsCgroupV2Dir(root) && fstat(root_fd.get(), &root_st) == 0;
  auto exists = [&](const std::string& cg) {
    struct stat st {};
    return have_root && fstatat(root_fd.get(), cg.c_str() + 1, &st, 0) == 0 && S_ISDIR(st.st_mode) &&
           st.st_dev == root_st.st_dev;
  };
  for (const auto& s : p.services) {
    if (s.cgroup.empty()) continue;
    const std::string where = p.file + ":" + std::to_string(s.cgroup_line) + ": service '" + s.name + "': ";
    if (s.components.size() < attach.size() || !std::equal(attach.begin(), attach.end(), s.components.begin()))
      throw InputError(where + "cgroup " + s.cgroup + " is outside the cgroup grpcwall is attached at (" +
                       attach_cgroup + "), so the connections its server accepts would never be walked; attach "
                       "at a cgroup that holds it (grpcwall attach --cgroup DIR) or name a cgroup below " +
                       attach_cgroup);
    if (!exists(s.cgroup))
      std::cerr << where << "warning: cgroup " << root + s.cgroup
                << " does not exist yet; its server is protected once it runs there\n";
  }
  // cgroup v2 lets the owner of a delegated cgroup (systemd Delegate=, a
  // container's: its cgroup.procs owned by a user other than root) move
  // its processes anywhere below it: identities there are one trust
  // domain. The topmost such cgroup above or at each identity's
  std::map<std::string, uid_t> delegated;  // path -> owner (0: none), looked up once per path
  auto delegated_to = [&](const std::string& path, uid_t* uid) {
    auto it = delegated.find(path);
    if (it == delegated.end()) {
      struct stat st {};
      const std::string procs = path.substr(1) + "/cgroup.procs";
      const uid_t owner = have_root && fstatat(root_fd.get(), procs.c_str(), &st, 0) == 0 ? st.st_uid : 0;
      it = delegated.emplace(path, owner).first;
    }
    *uid = it->second;
    return it->second != 0;
  };
  std::map<std::string, std::pair<const Identity*, uid_t>> domain;  // delegated cgroup -> first identity in it
  for (const auto& id : p.identities) {
    std::string path;
    uid_t uid = 0;
    for (const auto& c : id.components) {
      path += "/" + c;
      if (!delegated_to(path, &uid)) continue;
      auto [it, fresh] = domain.emplace(path, std::make_pair(&id, uid));
      if (!fresh)
        std::cerr << p.file << ":" << id.line << ": identity '" << id.name << "': warning: its cgroup and identity '"
                  << it->second.first->name << "''s (" << p.file << ":" << it->second.first->line
                  << ") are both in " << root << path << ", delegated to uid " << uid
                  << " (it owns cgroup.procs there): a process of either may move into the other's cgroup and carry "
                     "its identity; give identities with different rights cgroups outside each other's "
                     "delegated cgroup\n";
      break;
    }
  }
  for (const auto& id : p.identities) {
    const std::string where = p.file + ":" + std::to_string(id.line) + ": identity '" + id.name + "': ";
    if (id.cgroup.empty()) {  // callers by address only: nothing local to check
      out.push_back({});
      continue;
    }
    if (id.components.size() < attach.size() ||
        !std::equal(attach.begin(), attach.end(), id.components.begin()))
      throw InputError(where + "cgroup " + id.cgroup + " is outside the cgroup grpcwall is attached at (" +
                       attach_cgroup + "), so its connections would never be policed; attach at a cgroup that "
                       "holds it (grpcwall attach --cgroup DIR) or name a cgroup below " + attach_cgroup);
    if (!exists(id.cgroup))
      std::cerr << where << "warning: cgroup " << root + id.cgroup
                << " does not exist yet; its processes carry the identity once it is made\n";
    out.push_back(id.components);
  }
  return out;
}

uint64_t CgroupPathKey(const std::vector<std::string>& components, uint64_t k0, uint64_t k1) {
  uint64_t h = 0;
  unsigned char buf[GW_CGROUP_NAME_BUF] = {};
  for (const auto& c : components) {
    size_t n = std::min<size_t>(c.size(), GW_CGROUP_NAME_MAX + 1);
    std::memset(buf, 0, sizeof(buf));
    std::memcpy(buf, c.data(), n);
    h = gw_cgroup_hash(h, buf, static_cast<__u32>(n), k0, k1);
  }
  return h;
}

uint64_t ApplyPolicy(const LiveMaps& m, const Policy& p, const IdentityPaths& paths) {
  gw_config cfg = ReadConfig(m);
  if (!cfg.key0 && !cfg.key1) cfg = NewConfigKeys(cfg);
  // the datapath hashes as many cgroup levels as the deepest identity: grown
  // (never shrunk, so a reader of the old generation still hashes enough)
  // and written before the new slot goes live
  uint32_t depth = cfg.ident_depth;
  for (const auto& c : paths) depth = std::max<uint32_t>(depth, static_cast<uint32_t>(c.size()));
  if (depth != cfg.ident_depth) {
    cfg.ident_depth = depth;
    WriteConfig(m, cfg);
  }
  const uint32_t slot = GW_SLOT_OF(cfg.generation + 1);  // the datapath derives it so (grpcwall.h)
  CompiledPolicy cp = Compile(p, cfg.key0, cfg.key1);
  // the hold shares' ids, chosen while the slot being filled still holds
  // the names of two generations ago (a name back after one generation
  // away gets its old id) and written once they are gone, before the flip
  // (read by the datapath only once the slot is live): an apply failing in
  // between leaves old names beside old ids, or new ids beside no names,
  // never new ids beside old names for the next apply to pair by number
  IdentSharesPlan shares;
  {
    std::vector<std::string> names;
    for (const auto& id : cp.identities) names.push_back(id.name);
    shares = PlanIdentShares(m, slot, names);
  }

  // 1. Empty the inactive slot (what was live two generations ago).
  // (hash maps a batch at a time: 10,000 identities' keys and names one by
  // one were ~0.2 s of a repeated apply)
  {
    std::vector<gw_ident_key> old;
    for (auto& k : HashKeys<gw_ident_key, gw_ident_val>(m.idents.get()))
      if (k.slot == slot) old.push_back(k);
    BatchDelete(m.idents.get(), old);
  }
  for (auto& k : Keys<gw_svc_key>(m.services.get()))
    if (k.slot == slot) bpf_map_delete_elem(m.services.get(), &k);
  if (m.peers)
    for (auto& k : Keys<gw_peer_key>(m.peers.get()))
      if (k.slot == slot) bpf_map_delete_elem(m.peers.get(), &k);
  if (m.srv_ports)
    for (auto& k : Keys<gw_srv_key>(m.srv_ports.get()))
      if (k.slot == slot) bpf_map_delete_elem(m.srv_ports.get(), &k);
  {
    // outer map-of-maps: every single update or delete waits for an RCU
    // grace period (~10-30 ms here); a batch waits once
    std::vector<gw_pair_key> old;
    for (auto& k : HashKeys<gw_pair_key, uint32_t>(m.policy.get()))
      if (k.slot == slot) old.push_back(k);
    BatchDelete(m.policy.get(), old);
    if (m.pair_rules) {
      old.clear();
      for (auto& k : HashKeys<gw_pair_key, gw_pair_rules>(m.pair_rules.get()))
        if (k.slot == slot) old.push_back(k);
      BatchDelete(m.pair_rules.get(), old);
    }
  }
  {
    std::vector<gw_name_key> old;
    for (auto& k : HashKeys<gw_name_key, gw_name_val>(m.names.get()))
      if (k.slot == slot && k.kind != GW_NAMEKIND_META) old.push_back(k);
    BatchDelete(m.names.get(), old);
  }
  WriteIdentShares(m, shares);
  {
    // ids above the new rule count are never counted nor read in this
    // generation; a later one zeroes them when it uses them
    std::vector<uint32_t> idx;
    for (uint32_t r = 0; r <= p.rules.size() && r < GW_MAX_RULES; r++) idx.push_back(slot * GW_MAX_RULES + r);
    const size_t cpus = NumCpus();
    std::vector<gw_rule_counters> zero(idx.size() * cpus);  // per rule, per CPU
    BatchUpdate(m.rule_counters.get(), idx, zero, "gw_rule_counters", cpus);
  }

  // 2. Fill it. Identities and names go in by batch, as method tables
  // do: 10,000 identities were 20,000 syscalls of ~5 us each.
  std::vector<gw_name_key> name_keys;
  std::vector<gw_name_val> name_vals;
  auto name = [&](uint32_t kind, uint64_t id, const std::string& text, const std::string& detail, uint64_t aux) {
    name_keys.push_back(gw_name_key{slot, kind, id});
    name_vals.push_back(NameVal(text, detail, aux));
  };
  {
    std::vector<gw_ident_key> keys;
    std::vector<gw_ident_val> vals;
    for (size_t i = 0; i < cp.identities.size(); i++) {
      const Identity& id = cp.identities[i];
      if (id.cgroup.empty()) {  // callers by address only (gw_peers, below)
        name(GW_NAMEKIND_IDENT, i + 1, id.name, "", 0);
        continue;
      }
      const uint64_t key = CgroupPathKey(paths[i], cfg.key0, cfg.key1);
      keys.push_back(gw_ident_key{slot, 0, key});
      vals.push_back(gw_ident_val{static_cast<uint16_t>(i + 1), 0, 0});
      name(GW_NAMEKIND_IDENT, i + 1, id.name, id.cgroup, key);
    }
    BatchUpdate(m.idents.get(), keys, vals, "gw_idents");
  }
  // the server side: callers by address, protected servers by port
  if (m.peers && m.srv_ports) {
    for (size_t i = 0; i < cp.identities.size(); i++)
      for (const auto& c : cp.identities[i].cidrs) {
        gw_peer_key k{};
        k.prefixlen = GW_PEER_PREFIX_FIXED + c.len;
        k.slot = static_cast<uint8_t>(slot);
        std::memcpy(k.addr, c.addr, sizeof(k.addr));
        gw_peer_val v{static_cast<uint16_t>(i + 1), 0, 0};
        Update(m.peers.get(), &k, &v, "gw_peers");
      }
    for (size_t i = 0; i < cp.services.size(); i++) {
      const Service& s = cp.services[i];
      if (s.cgroup.empty()) continue;
      gw_srv_key k{slot, s.port};
      gw_srv_val v{};
      v.service = static_cast<uint16_t>(i + 1);
      v.levels = static_cast<uint16_t>(s.components.size());
      v.cgroup_key = CgroupPathKey(s.components, cfg.key0, cfg.key1);
      Update(m.srv_ports.get(), &k, &v, "gw_srv_ports");
    }
  } else if (std::any_of(cp.services.begin(), cp.services.end(), [](const Service& s) { return !s.cgroup.empty(); })) {
    throw InputError(p.file + ": the programs attached at " + m.pin_dir + " predate server-side enforcement: run "
                     "'grpcwall attach --pin-dir " + m.pin_dir + "' again with this grpcwall, then apply");
  }
  for (size_t i = 0; i < cp.services.size(); i++) {
    const Service& s = cp.services[i];
    gw_svc_val v{static_cast<uint16_t>(i + 1), 0, 0};
    std::string dest;
    auto put = [&](const uint8_t* addr, uint8_t len) {
      gw_svc_key k{};
      k.prefixlen = GW_SVC_PREFIX_FIXED + len;
      k.slot = static_cast<uint8_t>(slot);
      k.port = htons(s.port);
      std::memcpy(k.addr, addr, sizeof(k.addr));
      Update(m.services.get(), &k, &v, "gw_services");
    };
    if (s.cidrs.empty()) {  // any address, IPv4 and IPv6
      static const uint8_t kAny[16] = {};
      put(kAny, 0);
      dest = "any";
    }
    for (const auto& c : s.cidrs) {
      put(c.addr, c.len);
      dest += (dest.empty() ? "" : ",") + c.text;
    }
    name(GW_NAMEKIND_SERVICE, i + 1, s.name, dest, s.port);
    if (!s.cgroup.empty()) name(GW_NAMEKIND_SERVICE, GW_NAME_SRV_CGROUP + i + 1, s.cgroup, "", s.port);
  }
  WriteServicePorts(m, slot);
  for (const auto& r : cp.rules)
    name(GW_NAMEKIND_RULE, r.id, r.from + " -> " + r.to, p.file + ":" + std::to_string(r.line), r.audit);
  std::unordered_set<uint64_t> named;  // method hashes with a name written
  for (const auto& table : cp.tables)
    for (const auto& meth : table)
      if (named.insert(meth.hash).second) name(GW_NAMEKIND_METHOD, meth.hash, std::string(meth.pattern), "", 0);
  std::vector<gw_pair_key> pair_keys;
  std::vector<uint32_t> pair_fds;
  std::vector<Fd> inner_fds;                // tables of one pair, open until their batch is in
  std::unordered_map<size_t, Fd> shared;    // cp.tables index -> its map, open until a batch is in
  std::vector<gw_pair_key> rules_keys;
  std::vector<gw_pair_rules> rules_vals;
  // method tables go into gw_policy in batches (each waits for one RCU
  // grace period) of as many as the open-file limit allows
  size_t chunk = 4096;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    if (nofile.rlim_cur < nofile.rlim_max && nofile.rlim_cur < 2 * chunk) {
      nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, 2 * chunk);
      setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < chunk + 128)
      chunk = nofile.rlim_cur > 256 ? nofile.rlim_cur - 128 : std::max<size_t>(nofile.rlim_cur / 4, 4);
  }
  std::vector<uint64_t> hashes;
  std::vector<gw_method_val> vals;
  // Method tables are preallocated (the gw_methods template, bpf/maps.h):
  // a million entries go in at a fraction of the cost of BPF_F_NO_PREALLOC's
  // allocation per entry, and freeing a table needs no RCU barrier (each
  // NO_PREALLOC table freed queues a kworker that waits for one: thousands
  // of them after an apply that replaces a large policy). A gw_policy pinned
  // by an older grpcwall takes only tables made with its template's
  // BPF_F_NO_PREALLOC: the first table goes in alone to find out which.
  uint32_t inner_flags = 0;
  auto make_table = [&](const std::vector<CompiledMethod>& methods, uint32_t flags) {
    LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
    int inner = bpf_map_create(BPF_MAP_TYPE_HASH, "gw_methods", sizeof(uint64_t), sizeof(gw_method_val),
                               static_cast<uint32_t>(methods.size()), &opts);
    if (inner < 0) throw SysError("creating a method table", errno);
    Fd inner_fd(inner);
    // one batch per table: a syscall per entry was most of the time of a
    // large apply (1M entries: ~4 s of this machine's syscall overhead)
    hashes.clear();
    vals.clear();
    for (const auto& meth : methods) {
      hashes.push_back(meth.hash);
      vals.push_back(meth.val);
    }
    BatchUpdate(inner_fd.get(), hashes, vals, "a method table");
    return inner_fd;
  };
  // A pair's table: the one its rules' shape compiled to, shared with every
  // pair of that shape (10,000 identities under one aliased rule list: one
  // table, not 10,000), its rule ids in gw_pair_rules. A pair with more
  // rules than gw_pair_rules holds, or a pin dir without gw_pair_rules (an
  // older grpcwall's programs, which read rule ids only), gets its own.
  auto table_for = [&](const CompiledPair& pair, const gw_pair_key& key) -> uint32_t {
    if (!m.pair_rules || pair.rules.size() > GW_PAIR_RULES) {
      inner_fds.push_back(make_table(PairMethods(cp, pair), inner_flags));
      return static_cast<uint32_t>(inner_fds.back().get());
    }
    auto it = shared.find(pair.table);
    if (it == shared.end()) it = shared.emplace(pair.table, make_table(cp.tables[pair.table], inner_flags)).first;
    gw_pair_rules pr{};
    pr.n = static_cast<uint16_t>(pair.rules.size());
    std::copy(pair.rules.begin(), pair.rules.end(), pr.rule);
    rules_keys.push_back(key);
    rules_vals.push_back(pr);
    return static_cast<uint32_t>(it->second.get());
  };
  for (const auto& pair : cp.pairs) {
    const gw_pair_key key{slot, pair.ident, pair.service};
    if (&pair == &cp.pairs.front()) {
      uint32_t fd = table_for(pair, key);
      if (bpf_map_update_elem(m.policy.get(), &key, &fd, BPF_ANY) == 0) continue;
      const int err = errno;
      if (err != EINVAL) throw SysError("updating gw_policy", err);
      inner_flags = BPF_F_NO_PREALLOC;  // an older grpcwall's template
      shared.clear();
      inner_fds.clear();
      rules_keys.clear();
      rules_vals.clear();
      fd = table_for(pair, key);
      if (bpf_map_update_elem(m.policy.get(), &key, &fd, BPF_ANY) != 0) throw SysError("updating gw_policy", errno);
      continue;
    }
    pair_keys.push_back(key);
    pair_fds.push_back(table_for(pair, key));
    if (inner_fds.size() + shared.size() >= chunk) {  // a policy may hold more pairs than this process may open files
      BatchUpdate(m.policy.get(), pair_keys, pair_fds, "gw_policy");
      pair_keys.clear();
      pair_fds.clear();
      inner_fds.clear();
      shared.clear();  // made again if a later pair needs one: more tables, same decisions
    }
  }
  BatchUpdate(m.policy.get(), pair_keys, pair_fds, "gw_policy");
  inner_fds.clear();
  shared.clear();
  if (m.pair_rules) BatchUpdate(m.pair_rules.get(), rules_keys, rules_vals, "gw_pair_rules");
  BatchUpdate(m.names.get(), name_keys, name_vals, "gw_names");
  WriteName(m, 0, GW_NAMEKIND_META, 1 + slot, p.file, "", 0);

  // 3. Flip: one write makes the whole new policy live. The ingress guard
  // is there before a policy that protects a server goes live (it reads
  // the live slot only, so until the flip it lets everything pass), and
  // goes after the flip to one that protects none.
  const bool protects = SlotProtects(m, slot);
  const bool made_guard = protects && m.sync_ingress_guard && SyncIngressGuard(m, true);
  cfg.generation++;
  cfg.format = GW_TABLE_FORMAT;
  try {
    WriteConfig(m, cfg);
  } catch (...) {
    if (made_guard) SyncIngressGuard(m, false);
    throw;
  }
  if (!protects && m.sync_ingress_guard) {
    try {
      SyncIngressGuard(m, false);
    } catch (const std::exception& e) {  // the policy is live: the guard left lets everything pass
      std::cerr << "grpcwall: warning: " << e.what() << " (it costs a little per received segment, decides nothing)\n";
    }
  }
  return cfg.generation;
}

namespace {

// Runs the iterator once in the calling thread's network namespace.
int RunResetIterator(int prog_fd, std::vector<std::pair<uint32_t, uint64_t>>* outside) {
  int link = bpf_link_create(prog_fd, 0, BPF_TRACE_ITER, nullptr);
  if (link < 0) throw SysError("creating the tcp iterator", errno);
  Fd link_fd(link);
  int it = bpf_iter_create(link_fd.get());
  if (it < 0) throw SysError("starting the tcp iterator", errno);
  Fd iter(it);
  int resets = 0;
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(iter.get(), buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0) throw SysError("reading the tcp iterator", errno);
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    unsigned port = 0;
    unsigned long long cg = 0;
    if (std::sscanf(line.c_str(), "L %u %llu", &port, &cg) == 2) {  // a listener outside its service's cgroup
      if (outside) outside->emplace_back(port, cg);
    } else {
      resets++;  // "[address]:port" of a connection reset
    }
  }
  return resets;
}

// The numeric entries of a /proc directory (pids, or tids under task/).
// nullopt when the directory is gone (its process exited).
std::optional<std::vector<long>> ProcIds(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT || errno == ESRCH) return std::nullopt;
    throw SysError("listing " + dir, errno);
  }
  std::vector<long> ids;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long id = std::strtol(e->d_name, &end, 10);
    if (id > 0 && !*end) ids.push_back(id);
  }
  closedir(d);
  return ids;
}

// Is the thread at /proc/PID/task/TID/ under the cgroup `below` (a path from
// the v2 root, "" for the root)? Its v2 line ("0::/a/b") says; a thread whose
// line cannot be read counts as under it.
bool ThreadUnder(const std::string& task_dir, const std::string& below) {
  std::ifstream f(task_dir + "cgroup");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("0::", 0) == 0) {
      const std::string path = line.substr(3);
      return path.compare(0, below.size(), below) == 0 && (path.size() == below.size() || path[below.size()] == '/');
    }
  return true;
}

}  // namespace

// The tcp iterator walks the sockets of the network namespace it is created
// in, so it runs in every network namespace a thread of this host is in, once
// each; the program itself picks the sockets (cgroup path with an identity,
// destination a service, not policed yet). Every thread, not every process:
// a process whose main thread has exited (a zombie leader with live threads)
// has no /proc/PID/ns/net, and a thread may have a namespace of its own. A
// namespace is entered as soon as it is found, and the scan repeats until a
// pass finds none new (processes made during a pass). A namespace no thread
// is in (kept by a socket alone) is not reached: see README, limitations.
int ResetPredating(const std::string& pin_dir, std::vector<std::pair<uint32_t, uint64_t>>* outside) {
  Fd prog = OpenPinned(pin_dir + "/prog_reset");
  Fd self(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!self) throw SysError("opening /proc/self/ns/net", errno);
  struct stat self_st {};
  if (fstat(self.get(), &self_st) != 0) throw SysError("reading /proc/self/ns/net", errno);
  std::set<std::pair<dev_t, ino_t>> seen{{self_st.st_dev, self_st.st_ino}};
  int reset = RunResetIterator(prog.get(), outside);
  auto gone = [](int err) { return err == ENOENT || err == ESRCH; };
  // threads under the attach cgroup whose namespace this process may not
  // read (a sandbox's init, an LSM): named once on stderr, since connections
  // there are not reset (sockets of policy identities are made under it)
  const std::string root = CgroupV2Root();
  gw_name_val meta{};
  std::string below = ReadName(LiveMaps::Open(pin_dir), 0, GW_NAMEKIND_META, 0, &meta) ? meta.text : root;
  below = below.compare(0, root.size(), root) == 0 ? below.substr(root.size()) : "";
  while (!below.empty() && below.back() == '/') below.pop_back();
  long denied = 0, denied_tid = 0;
  int denied_err = 0, pass = 0;
  auto deny = [&](const std::string& task_dir, long tid, int err) {
    if (err != EACCES && err != EPERM) return false;
    if (pass == 0 && ThreadUnder(task_dir, below) && !denied++) denied_tid = tid, denied_err = err;
    return true;
  };
  for (; pass < 8; pass++) {
    bool found = false;
    const auto pids = ProcIds("/proc");
    if (!pids) throw SysError("listing /proc", ENOENT);
    for (long pid : *pids) {
      const std::string task = "/proc/" + std::to_string(pid) + "/task/";
      auto tids = ProcIds(task);
      if (!tids) continue;
      for (long tid : *tids) {
        const std::string path = task + std::to_string(tid) + "/ns/net";
        struct stat st {};
        if (stat(path.c_str(), &st) != 0) {
          if (gone(errno)) continue;  // the thread exited (or a zombie leader: no namespaces)
          if (deny(task + std::to_string(tid) + "/", tid, errno)) continue;
          throw SysError("reading " + path, errno);
        }
        if (seen.count({st.st_dev, st.st_ino})) continue;
        Fd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!ns) {
          if (gone(errno)) continue;
          if (deny(task + std::to_string(tid) + "/", tid, errno)) continue;
          throw SysError("opening " + path, errno);
        }
        if (fstat(ns.get(), &st) != 0) throw SysError("reading " + path, errno);
        if (!seen.insert({st.st_dev, st.st_ino}).second) continue;  // it moved to one already done
        found = true;
        if (setns(ns.get(), CLONE_NEWNET) != 0)
          throw SysError("entering the network namespace of thread " + std::to_string(tid), errno);
        int n = 0;
        try {
          n = RunResetIterator(prog.get(), outside);
        } catch (...) {
          setns(self.get(), CLONE_NEWNET);
          throw;
        }
        if (setns(self.get(), CLONE_NEWNET) != 0) throw SysError("returning to the loader's network namespace", errno);
        reset += n;
      }
    }
    if (!found) break;
  }
  if (denied)
    std::cerr << "grpcwall: warning: the network namespace of " << denied
              << " thread(s) under the attach cgroup could not be read (thread "
              << denied_tid << ": " << std::strerror(denied_err)
              << "); connections there that predate the policy were not reset (the egress guard does not "
                 "stop them either: see README, limitations)\n";
  return reset;
}

namespace {
// The cgroup v2 directory whose inode (the cgroup id) is `id`, or "".
std::string CgroupPathOf(const std::string& dir, uint64_t id, int depth = 0) {
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0 && st.st_ino == id) return dir;
  if (depth > 32) return "";
  DIR* d = opendir(dir.c_str());
  if (!d) return "";
  std::string found;
  while (dirent* e = readdir(d)) {
    if (e->d_type != DT_DIR || !std::strcmp(e->d_name, ".") || !std::strcmp(e->d_name, "..")) continue;
    found = CgroupPathOf(dir + "/" + e->d_name, id, depth + 1);
    if (!found.empty()) break;
  }
  closedir(d);
  return found;
}
}  // namespace

int ResetAfterFlip(const std::string& pin_dir, uint64_t generation, const std::string& retry) {
  const std::string no_reset = ResetUnavailable(pin_dir);
  if (!no_reset.empty()) {  // attached on a kernel without what the reset needs
    std::cerr << "grpcwall: warning: " << no_reset << "\n";
    return 0;
  }
  try {
    std::vector<std::pair<uint32_t, uint64_t>> outside;
    int n = ResetPredating(pin_dir, &outside);
    std::sort(outside.begin(), outside.end());
    outside.erase(std::unique(outside.begin(), outside.end()), outside.end());
    const std::string root = CgroupV2Root();
    for (const auto& [port, cg] : outside) {
      std::string path = CgroupPathOf(root, cg);
      path = path.empty() ? "id " + std::to_string(cg) : path.substr(root.size()).empty() ? "/" : path.substr(root.size());
      std::cerr << "grpcwall: warning: a socket listens on protected port " << port << " from cgroup " << path
                << ", outside the cgroup its service names: the connections it accepts are NOT protected (a "
                   "listening socket keeps the cgroup of the process that made it, e.g. systemd socket "
                   "activation). If it is the protected server, name that cgroup in the service, or make the "
                   "socket in the server's own cgroup\n";
    }
    return n;
  } catch (const std::exception& e) {
    throw Error(kSystem, "policy generation " + std::to_string(generation) +
                             " is live, but resetting connections that predate it failed: " + e.what() +
                             " (those connections stay unpoliced until they close; " + retry + " to retry)");
  }
}

namespace {
// An identity's name as gw_names keeps it (cut to its text field)
std::string NameText(const std::string& name) { return NameVal(name, "", 0).text; }
}  // namespace

IdentSharesPlan PlanIdentShares(const LiveMaps& m, uint32_t slot, const std::vector<std::string>& names,
                                bool legacy_keys) {
  IdentSharesPlan plan;
  if (!m.ident_shares || !m.hold_shares) return plan;
  constexpr uint32_t kIds = GW_SLOTS * GW_MAX_IDENTITIES;  // ids 1 .. kIds - 1; 0: none
  const std::vector<uint32_t> ids = ReadArray(m.ident_shares.get(), kIds, "gw_ident_shares");
  const std::vector<uint32_t> held = ReadArray(m.hold_shares.get(), kIds, "gw_srv_hold_shares");
  const gw_config cfg = ReadConfig(m);
  const uint32_t live = GW_SLOT_OF(cfg.generation);
  // name -> id in a slot (its names are still there: the slot being
  // filled is emptied after this)
  auto ids_of = [&](uint32_t s, std::unordered_map<std::string, uint32_t>* out, std::vector<bool>* mark) {
    for (uint32_t id = 1; id < GW_MAX_IDENTITIES; id++) {
      const uint32_t share = ids[s * GW_MAX_IDENTITIES + id];
      if (!share || share >= kIds) continue;
      gw_name_val v{};
      if (!ReadName(m, s, GW_NAMEKIND_IDENT, id, &v)) continue;
      v.text[sizeof(v.text) - 1] = 0;
      out->emplace(v.text, share);
      if (mark) (*mark)[share] = true;
    }
  };
  // the live generation's names keep their ids, which no new name gets
  // (a removed name's holds still count there); a name of the generation
  // before, away from the live one, gets its id back if no live name has
  // it (its holds may still count there too)
  std::unordered_map<std::string, uint32_t> kept, older;
  std::vector<bool> taken(kIds, false), given(kIds, false);
  if (cfg.generation) ids_of(live, &kept, &taken);
  std::vector<uint32_t> share(names.size(), 0);
  const size_t n = std::min<size_t>(names.size(), GW_MAX_IDENTITIES - 1);
  uint32_t next_free = 1, next_any = 1;
  bool older_read = false;
  for (int pass = 0; pass < 3; pass++)
    for (size_t i = 0; i < n; i++) {
      if (share[i]) continue;
      const std::string text = NameText(names[i]);
      uint32_t id = 0;
      if (pass == 0) {
        auto it = kept.find(text);
        if (it != kept.end()) id = it->second;
      } else if (pass == 1) {
        if (!older_read && cfg.generation && slot != live)  // (read only for a name the live slot lacks)
          ids_of(slot, &older, nullptr);
        older_read = true;
        auto it = older.find(text);
        if (it != older.end() && !taken[it->second]) id = it->second;
        // maps older than the ids: the key the programs before them
        // counted this identity's holds under
        const uint32_t legacy = slot * GW_MAX_IDENTITIES + static_cast<uint32_t>(i) + 1;
        if (!id && legacy_keys && !taken[legacy] && !given[legacy]) id = legacy;
      } else {
        // a new name: an id no live name has and no hold counts under
        // (cursors: what they passed stays unusable in this call)
        for (; next_free < kIds && !id; next_free++)
          if (!taken[next_free] && !given[next_free] && !held[next_free]) id = next_free;
        // (past 32,767 names of two generations: a removed name's, free)
        for (; next_any < kIds && !id; next_any++)
          if (!given[next_any] && !held[next_any]) id = next_any;
      }
      if (id && !given[id]) {
        share[i] = id;
        given[id] = true;
      }
    }
  std::vector<uint32_t>& keys = plan.keys;
  std::vector<uint32_t>& vals = plan.vals;
  for (size_t i = 0; i < n; i++) {
    keys.push_back(slot * GW_MAX_IDENTITIES + static_cast<uint32_t>(i) + 1);
    vals.push_back(share[i]);  // (0: none left, counted with the callers without one)
  }
  // the rest of the slot: no id (an identity number past the policy's is
  // never read in its generation)
  for (uint32_t id = static_cast<uint32_t>(n) + 1; id < GW_MAX_IDENTITIES; id++)
    if (ids[slot * GW_MAX_IDENTITIES + id]) {
      keys.push_back(slot * GW_MAX_IDENTITIES + id);
      vals.push_back(0);
    }
  return plan;
}

void WriteIdentShares(const LiveMaps& m, const IdentSharesPlan& plan) {
  if (!m.ident_shares || plan.keys.empty()) return;
  std::vector<uint32_t> keys = plan.keys, vals = plan.vals;
  BatchUpdate(m.ident_shares.get(), keys, vals, "gw_ident_shares");
}

void WriteIdentShares(const LiveMaps& m, uint32_t slot, const std::vector<std::string>& names, bool legacy_keys) {
  WriteIdentShares(m, PlanIdentShares(m, slot, names, legacy_keys));
}

std::vector<std::pair<std::string, uint32_t>> HoldsByIdentity(const LiveMaps& m) {
  std::vector<std::pair<std::string, uint32_t>> out;
  if (!m.ident_shares || !m.hold_shares) return out;
  constexpr uint32_t kIds = GW_SLOTS * GW_MAX_IDENTITIES;
  const std::vector<uint32_t> held = ReadArray(m.hold_shares.get(), kIds, "gw_srv_hold_shares");
  if (std::all_of(held.begin(), held.end(), [](uint32_t n) { return n == 0; })) return out;
  const std::vector<uint32_t> ids = ReadArray(m.ident_shares.get(), kIds, "gw_ident_shares");
  const gw_config cfg = ReadConfig(m);
  const uint32_t live = GW_SLOT_OF(cfg.generation);
  std::vector<bool> named(kIds, false);
  for (uint32_t id = 1; cfg.generation && id < GW_MAX_IDENTITIES; id++) {
    const uint32_t share = ids[live * GW_MAX_IDENTITIES + id];
    if (!share || share >= kIds || named[share] || !held[share]) continue;
    gw_name_val v{};
    if (!ReadName(m, live, GW_NAMEKIND_IDENT, id, &v)) continue;
    v.text[sizeof(v.text) - 1] = 0;
    named[share] = true;
    out.emplace_back(v.text, held[share]);
  }
  uint32_t other = 0;
  for (uint32_t i = 1; i < kIds; i++)
    if (!named[i]) other += held[i];
  if (other) out.emplace_back("(not in the live policy)", other);
  if (held[0]) out.emplace_back("(no share id)", held[0]);
  return out;
}

std::vector<std::string> LiveIdentityNames(const LiveMaps& m, uint32_t slot) {
  std::vector<std::string> names;
  for (uint32_t id = 1; id < GW_MAX_IDENTITIES; id++) {
    gw_name_val v{};
    if (!ReadName(m, slot, GW_NAMEKIND_IDENT, id, &v)) break;
    v.text[sizeof(v.text) - 1] = 0;
    names.emplace_back(v.text);
  }
  return names;
}

bool HasIdentShares(const LiveMaps& m, uint32_t slot, size_t identities) {
  if (!m.ident_shares) return true;  // (nothing to give)
  const std::vector<uint32_t> ids =
      ReadArray(m.ident_shares.get(), GW_SLOTS * GW_MAX_IDENTITIES, "gw_ident_shares");
  // every one (an id is never 0 for an identity of a policy: 32,767 ids for
  // at most 2 x 16,383 names), so a batch cut short is written again
  for (uint32_t id = 1; id <= identities && id < GW_MAX_IDENTITIES; id++)
    if (!ids[slot * GW_MAX_IDENTITIES + id]) return false;
  return true;
}

bool ReadLimits(const std::string& pin_dir, gw_limits* out) {
  Fd m(bpf_obj_get(MapPin(pin_dir, "gw_limits").c_str()));
  bpf_map_info info{};
  uint32_t len = sizeof(info), zero = 0;
  if (!m || bpf_obj_get_info_by_fd(m.get(), &info, &len) != 0 || info.type != BPF_MAP_TYPE_ARRAY ||
      info.key_size != sizeof(zero) || info.value_size != sizeof(gw_limits) || info.max_entries < 1)
    return false;
  return bpf_map_lookup_elem(m.get(), &zero, out) == 0;
}

std::vector<uint64_t> ReadCounters(const LiveMaps& m) {
  int ncpu = NumCpus();
  std::vector<uint64_t> out(GW_CNT_MAX, 0), vals(ncpu);
  for (uint32_t i = 0; i < GW_CNT_MAX; i++) {
    if (bpf_map_lookup_elem(m.counters.get(), &i, vals.data()) != 0) throw SysError("reading gw_counters", errno);
    for (auto v : vals) out[i] += v;
  }
  return out;
}

gw_rule_counters ReadRuleCounters(const LiveMaps& m, uint32_t slot, uint16_t rule) {
  std::vector<gw_rule_counters> vals(NumCpus());
  gw_rule_counters sum{};
  uint32_t idx = slot * GW_MAX_RULES + rule;
  if (bpf_map_lookup_elem(m.rule_counters.get(), &idx, vals.data()) != 0)
    throw SysError("reading gw_rule_counters", errno);
  for (const auto& v : vals) {
    sum.allowed += v.allowed;
    sum.denied += v.denied;
    sum.audited += v.audited;
  }
  return sum;
}

LivePolicy ReadLivePolicy(const LiveMaps& m) {
  LivePolicy lp;
  lp.config = ReadConfig(m);
  if (lp.config.generation == 0) return lp;
  const uint32_t slot = GW_SLOT_OF(lp.config.generation);
  gw_name_val nv{};
  if (ReadName(m, 0, GW_NAMEKIND_META, 1 + slot, &nv)) lp.file = nv.text;
  std::map<uint16_t, std::string> ident_names, svc_names;
  for (uint16_t id = 1; ReadName(m, slot, GW_NAMEKIND_IDENT, id, &nv); id++) {
    lp.identities.push_back({id, nv.text, nv.detail, nv.aux, ""});
    ident_names[id] = nv.text;
  }
  for (uint16_t id = 1; ReadName(m, slot, GW_NAMEKIND_SERVICE, id, &nv); id++) {
    lp.services.push_back({id, nv.text, nv.detail, static_cast<uint16_t>(nv.aux), ""});
    svc_names[id] = nv.text;
  }
  // the server side: each protected service's server, each identity's callers by address
  for (auto& s : lp.services)
    if (ReadName(m, slot, GW_NAMEKIND_SERVICE, GW_NAME_SRV_CGROUP + s.id, &nv)) s.server_cgroup = nv.text;
  if (m.peers) {
    std::map<uint16_t, std::vector<std::string>> cidrs;
    for (const auto& k : Keys<gw_peer_key>(m.peers.get())) {
      gw_peer_val v{};
      if (k.slot != slot || bpf_map_lookup_elem(m.peers.get(), &k, &v) != 0) continue;
      const uint32_t len = k.prefixlen - GW_PEER_PREFIX_FIXED;  // over the 128-bit address
      const bool v4 = k.addr[0] == 0 && k.addr[1] == 0 && k.addr[2] == htonl(0xffff) && len >= 96;
      char buf[INET6_ADDRSTRLEN] = {};
      inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? static_cast<const void*>(&k.addr[3]) : k.addr, buf, sizeof(buf));
      cidrs[v.ident].push_back(std::string(buf) + "/" + std::to_string(v4 ? len - 96 : len));
    }
    for (auto& i : lp.identities) {
      auto& c = cidrs[i.id];
      std::sort(c.begin(), c.end());
      for (const auto& t : c) i.cidrs += (i.cidrs.empty() ? "" : ",") + t;
    }
  }
  for (uint16_t id = 1; ReadName(m, slot, GW_NAMEKIND_RULE, id, &nv); id++) {
    LiveRule r{id, nv.text, nv.detail, nv.aux != 0, ReadRuleCounters(m, slot, id)};
    lp.rules.push_back(r);
  }
  auto pair_keys = Keys<gw_pair_key>(m.policy.get());
  std::sort(pair_keys.begin(), pair_keys.end(), [](const gw_pair_key& a, const gw_pair_key& b) {
    return std::make_pair(a.ident, a.service) < std::make_pair(b.ident, b.service);
  });
  for (const auto& k : pair_keys) {
    if (k.slot != slot) continue;
    uint32_t inner_id = 0;
    if (bpf_map_lookup_elem(m.policy.get(), &k, &inner_id) != 0) continue;
    Fd inner(bpf_map_get_fd_by_id(inner_id));
    if (!inner) throw SysError("opening method table id " + std::to_string(inner_id), errno);
    LivePair lpair{ident_names[k.ident], svc_names[k.service], {}, {}};
    gw_pair_rules pr{};  // a shared table's rule numbers are the pair's
    const bool have_rules = m.pair_rules && bpf_map_lookup_elem(m.pair_rules.get(), &k, &pr) == 0;
    for (auto h : Keys<uint64_t>(inner.get())) {
      LiveMethod lm{"?", h, {}};
      if (bpf_map_lookup_elem(inner.get(), &h, &lm.val) != 0) continue;
      if (lm.val.local && lm.val.rule)
        lm.val.rule = have_rules && lm.val.rule <= pr.n ? pr.rule[lm.val.rule - 1] : 0;
      lm.val.local = 0;
      if (ReadName(m, slot, GW_NAMEKIND_METHOD, h, &nv)) lm.pattern = nv.text;
      lpair.methods.push_back(lm);
    }
    std::sort(lpair.methods.begin(), lpair.methods.end(), [](const LiveMethod& a, const LiveMethod& b) {
      // (what no entry matches last)
      auto rank = [](uint8_t kind) { return kind == GW_MATCH_DEFAULT ? 255 : kind; };
      return std::make_pair(rank(a.val.kind), a.pattern) < std::make_pair(rank(b.val.kind), b.pattern);
    });
    lp.pairs.push_back(std::move(lpair));
  }
  return lp;
}

}  // namespace gw
