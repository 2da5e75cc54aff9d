#include "pin_dir.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>

#include "error.h"

extern "C" {
#include "grpcwall.h"
}

namespace gw {

Skel OpenSkel() {
  Skel skel(grpcwall_bpf__open(), grpcwall_bpf__destroy);
  if (!skel) throw SysError("opening the BPF object", errno);
  return skel;
}

const std::vector<std::string>& OwnPinNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    Skel skel = OpenSkel();
    bpf_map* map;
    bpf_object__for_each_map(map, skel->obj) {
      if (!bpf_map__is_internal(map)) n.push_back(bpf_map__name(map));  // .rodata/.data are not pinned
    }
    for (const char* p : {kProgSkMsg, kProgSkSkb, kProgSrvMsg, kProgSockops, kProgGuard, kProgGuardIn, kProgReset, kLinkGuard,
                          kLinkGuardIn, kLinkSockops})
      n.push_back(p);
    return n;
  }();
  return names;
}

namespace {

bool IsOwnName(const std::string& n) {
  const auto& own = OwnPinNames();
  return std::find(own.begin(), own.end(), n) != own.end();
}

// Empty if `path` holds grpcwall's config map, else why not. Checks what a
// stray map cannot match by accident: a map (not a program or link), the
// array of one gw_config, and its BTF value type's name.
std::string WhyNotGrpcwallConfig(const std::string& path) {
  Fd fd(bpf_obj_get(path.c_str()));
  if (!fd) return "its gw_config cannot be opened as a BPF object (" + Errno(errno) + ")";
  char link[64] = {};
  if (readlink(("/proc/self/fd/" + std::to_string(fd.get())).c_str(), link, sizeof(link) - 1) <= 0 ||
      std::string(link) != "anon_inode:bpf-map")
    return "its gw_config is not a BPF map";
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return "its gw_config cannot be read (" + Errno(errno) + ")";
  if (info.type != BPF_MAP_TYPE_ARRAY || info.key_size != sizeof(uint32_t) || info.value_size != sizeof(gw_config) ||
      info.max_entries != 1)
    return "its gw_config is not grpcwall's config map (type " + std::to_string(info.type) + ", key " +
           std::to_string(info.key_size) + " bytes, value " + std::to_string(info.value_size) + " bytes, " +
           std::to_string(info.max_entries) + " entries; grpcwall's is an array of one " +
           std::to_string(sizeof(gw_config)) + "-byte gw_config)";
  if (!info.btf_id || !info.btf_value_type_id) return "its gw_config carries no BTF (grpcwall's does)";
  btf* b = btf__load_from_kernel_by_id(info.btf_id);
  if (!b) return "its gw_config's BTF cannot be read (" + Errno(errno) + ")";
  const btf_type* t = btf__type_by_id(b, info.btf_value_type_id);
  std::string name = t ? btf__name_by_offset(b, t->name_off) : "";
  btf__free(b);
  if (name != "gw_config") return "its gw_config holds a '" + name + "', not grpcwall's struct gw_config";
  return "";
}

}  // namespace

std::vector<std::string> Entries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) throw SysError("reading " + dir, errno);
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

bool OnBpffs(const std::string& path) {
  struct statfs fs {};
  return statfs(path.c_str(), &fs) == 0 && fs.f_type == BPF_FS_MAGIC;
}

std::string Parent(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto i = p.find_last_of('/');
  if (i == std::string::npos) return ".";
  return i == 0 ? "/" : p.substr(0, i);
}

}  // namespace

std::string ListEntries(const std::vector<std::string>& names, const std::string& which) {
  std::string s = std::to_string(names.size()) + (names.size() == 1 ? " entry" : " entries") + which;
  for (size_t i = 0; i < names.size() && i < 8; i++) s += (i ? ", " : ": ") + names[i];
  if (names.size() > 8) s += ", ...";
  return s;
}

void CheckPinDirPath(const std::string& pin_dir) {
  struct stat st {}, up {};
  if (stat(pin_dir.c_str(), &st) != 0) throw SysError("pin dir " + pin_dir, errno);
  if (!S_ISDIR(st.st_mode)) throw InputError("--pin-dir " + pin_dir + " is not a directory");
  if (!OnBpffs(pin_dir))
    throw InputError("--pin-dir " + pin_dir +
                     " is not on a bpf filesystem: grpcwall pins only on bpffs; use a directory of its own "
                     "under /sys/fs/bpf (default " + kDefaultPinDir + ")");
  // the root of a mount: another file system's (or the same one's
  // mount root) is one level up
  if (stat((pin_dir + "/..").c_str(), &up) != 0) throw SysError("pin dir " + pin_dir + "/..", errno);
  if (up.st_dev != st.st_dev || up.st_ino == st.st_ino)
    throw InputError("--pin-dir " + pin_dir +
                     " is the root of a bpf filesystem, which other software pins into too: use a directory of "
                     "grpcwall's own below it, e.g. " + (pin_dir == "/" ? std::string() : pin_dir) + "/grpcwall");
}

PinDirState InspectPinDir(const std::string& pin_dir) {
  PinDirState s;
  s.entries = Entries(pin_dir);
  for (const auto& n : s.entries)
    if (!IsOwnName(n) && n != kStagingDir) s.foreign.push_back(n);
  if (std::find(s.entries.begin(), s.entries.end(), kConfigPin) == s.entries.end()) {
    s.why_not = "it holds no gw_config";
  } else {
    s.why_not = WhyNotGrpcwallConfig(MapPin(pin_dir, kConfigPin));
    s.grpcwall = s.why_not.empty();
  }
  return s;
}

Fd PreparePinDir(const std::string& pin_dir, bool* created) {
  *created = false;
  if (pin_dir.empty() || pin_dir[0] != '/') throw InputError("--pin-dir " + pin_dir + ": give an absolute path");
  const std::string bpffs = "/sys/fs/bpf";
  if (pin_dir.rfind(bpffs + "/", 0) == 0 && !OnBpffs(bpffs)) {
    mkdir(bpffs.c_str(), 0700);
    if (mount("bpf", bpffs.c_str(), "bpf", 0, "mode=0700") != 0) throw SysError("mounting bpffs at " + bpffs, errno);
  }
  // a racing detach or rolled-back attach may remove the directory while
  // this one waits for its lock: make it again then
  for (int attempt = 0; attempt < 5; attempt++) {
    struct stat st {};
    if (stat(pin_dir.c_str(), &st) != 0) {
      if (errno != ENOENT) throw SysError("pin dir " + pin_dir, errno);
      const std::string parent = Parent(pin_dir);
      if (access(parent.c_str(), F_OK) != 0) throw SysError("pin dir parent " + parent, errno);
      if (!OnBpffs(parent))
        throw InputError("--pin-dir " + pin_dir + " is not on a bpf filesystem (" + parent +
                         " is not bpffs): use a directory under /sys/fs/bpf");
      if (mkdir(pin_dir.c_str(), 0700) == 0) *created = true;
      else if (errno != EEXIST) throw SysError("creating pin dir " + pin_dir, errno);
    }
    CheckPinDirPath(pin_dir);
    Fd lock = TryLockPinDir(pin_dir);
    if (lock) return lock;
    *created = false;
  }
  throw Error(kSystem, "pin dir " + pin_dir + " kept being removed while attach waited for it: run attach again");
}

std::vector<std::string> RemoveOwnPins(const std::string& pin_dir) {
  // sockops first: no new socket becomes policed once the guard is gone
  for (const char* link : {kLinkSockops, kLinkGuardIn, kLinkGuard}) {
    Fd l(bpf_obj_get(MapPin(pin_dir, link).c_str()));
    if (l && bpf_link_detach(l.get()) != 0 && errno != EINVAL)
      throw SysError(std::string("detaching ") + pin_dir + "/" + link, errno);
  }
  {
    Fd prog(bpf_obj_get(MapPin(pin_dir, kProgSkMsg).c_str()));
    Fd map(bpf_obj_get(MapPin(pin_dir, "gw_sockhash").c_str()));
    if (prog && map && bpf_prog_detach2(prog.get(), map.get(), BPF_SK_MSG_VERDICT) != 0 && errno != ENOENT)
      throw SysError("detaching sk_msg from the sockhash", errno);
  }
  {
    Fd prog(bpf_obj_get(MapPin(pin_dir, kProgSkSkb).c_str()));
    Fd map(bpf_obj_get(MapPin(pin_dir, "gw_srv_sockhash").c_str()));
    if (prog && map && bpf_prog_detach2(prog.get(), map.get(), BPF_SK_SKB_STREAM_VERDICT) != 0 && errno != ENOENT)
      throw SysError("detaching sk_skb from the server sockhash", errno);
  }
  {
    Fd prog(bpf_obj_get(MapPin(pin_dir, kProgSrvMsg).c_str()));
    Fd map(bpf_obj_get(MapPin(pin_dir, "gw_srv_sockhash").c_str()));
    if (prog && map && bpf_prog_detach2(prog.get(), map.get(), BPF_SK_MSG_VERDICT) != 0 && errno != ENOENT)
      throw SysError("detaching sk_msg from the server sockhash", errno);
  }
  auto unpin = [&](const std::string& n) {
    const std::string p = MapPin(pin_dir, n);
    // EISDIR: a directory of that name is not grpcwall's; it stays
    if (unlink(p.c_str()) != 0 && errno != ENOENT && errno != EISDIR) throw SysError("removing " + p, errno);
  };
  for (const auto& n : OwnPinNames())
    if (n != kConfigPin) unpin(n);
  unpin(kConfigPin);
  return Entries(pin_dir);
}

void RemoveStaging(const std::string& pin_dir) {
  const std::string dir = pin_dir + "/" + kStagingDir;
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw SysError("reading " + dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) return;  // not ours
  for (const auto& n : Entries(dir)) {
    const std::string p = dir + "/" + n;
    if (n.rfind("link_", 0) == 0) {
      Fd l(bpf_obj_get(p.c_str()));
      if (l && bpf_link_detach(l.get()) != 0 && errno != EINVAL) throw SysError("detaching " + p, errno);
    }
    if (unlink(p.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + p, errno);
  }
  if (rmdir(dir.c_str()) != 0 && errno != ENOENT) throw SysError("removing " + dir, errno);
}

bool HasStaging(const std::string& pin_dir) {
  return access((pin_dir + "/" + kStagingDir).c_str(), F_OK) == 0;
}

bool StagedIsLive(const std::string& pin_dir) {
  // "no" only when it is known: a live set taken for a dead one would be
  // removed (RemoveStaging) under a sockops that fills its sockhash
  const std::string dir = pin_dir + "/" + kStagingDir;
  if (!HasStaging(pin_dir)) return false;
  if (access((dir + "/" + kStagedMarker).c_str(), F_OK) == 0) return true;
  auto unknown = [&](const std::string& what) {
    return SysError("telling whether the upgrade staged in " + dir + " is live (" + what +
                        "); nothing was changed: run this again",
                    errno);
  };
  Fd cfg(bpf_obj_get(MapPin(dir, kConfigPin).c_str()));
  if (!cfg) {
    if (errno == ENOENT) return false;  // never loaded, or the set moved in and only the marker's step was left
    throw unknown("opening its gw_config");
  }
  Fd link(bpf_obj_get(MapPin(pin_dir, kLinkSockops).c_str()));
  if (!link) {
    if (errno == ENOENT) return false;  // no sockops link: nothing runs any program
    throw unknown("opening " + MapPin(pin_dir, kLinkSockops));
  }
  bpf_map_info mi{};
  uint32_t len = sizeof(mi);
  bpf_link_info li{};
  uint32_t llen = sizeof(li);
  if (bpf_obj_get_info_by_fd(cfg.get(), &mi, &len) != 0 || bpf_obj_get_info_by_fd(link.get(), &li, &llen) != 0)
    throw unknown("reading the map and link");
  Fd prog(bpf_prog_get_fd_by_id(li.prog_id));
  if (!prog) throw unknown("opening the sockops link's program");
  bpf_prog_info pi{};
  uint32_t plen = sizeof(pi);
  if (bpf_obj_get_info_by_fd(prog.get(), &pi, &plen) != 0) throw unknown("reading the sockops program");
  std::vector<uint32_t> ids(pi.nr_map_ids);
  bpf_prog_info again{};
  again.nr_map_ids = pi.nr_map_ids;
  again.map_ids = reinterpret_cast<uint64_t>(ids.data());
  plen = sizeof(again);
  if (bpf_obj_get_info_by_fd(prog.get(), &again, &plen) != 0) throw unknown("reading the sockops program's maps");
  ids.resize(std::min<uint32_t>(again.nr_map_ids, static_cast<uint32_t>(ids.size())));
  return std::find(ids.begin(), ids.end(), mi.id) != ids.end();
}

void MoveStaged(const std::string& pin_dir) {
  const std::string dir = pin_dir + "/" + kStagingDir;
  std::vector<std::string> names = Entries(dir);
  std::stable_partition(names.begin(), names.end(), [](const std::string& n) { return n != kConfigPin; });
  for (const auto& n : names) {
    if (n == kStagedMarker) continue;
    if (rename(MapPin(dir, n).c_str(), MapPin(pin_dir, n).c_str()) != 0)
      throw SysError("moving " + MapPin(dir, n) + " to " + MapPin(pin_dir, n) +
                         " (the new programs enforce; 'grpcwall attach' or 'detach' of this version finishes the move)",
                     errno);
  }
  if (unlink(MapPin(dir, kStagedMarker).c_str()) != 0 && errno != ENOENT)
    throw SysError("removing " + MapPin(dir, kStagedMarker), errno);
  if (rmdir(dir.c_str()) != 0) throw SysError("removing " + dir, errno);
}

}  // namespace gw
