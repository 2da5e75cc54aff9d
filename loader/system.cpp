#include "system.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "error.h"
#include "policy.h"

namespace gw {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) close(fd_);
}

std::string Errno(int err) { return std::strerror(err); }

void RequireRoot(const std::string& what) {
  if (geteuid() != 0)
    throw Error(kSystem, what + " needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo");
}

std::string CgroupV2Root() {
  std::string root = FindCgroup2Mount();  // policy.cpp: the parser needs it without the rest of this file
  if (!root.empty()) return root;
  throw Error(kSystem, "no cgroup v2 hierarchy is mounted (see /proc/self/mounts): mount one with 'mount -t cgroup2 none /sys/fs/cgroup/unified'");
}

void RequireGlobalCgroupView() {
  // the kernel keys identities by the path from the hierarchy's root: the
  // loader must see the same root, not a cgroup namespace's or a bind mount's
  char ns[64] = {};
  ssize_t n = readlink("/proc/self/ns/cgroup", ns, sizeof(ns) - 1);
  const std::string init = "cgroup:[4026531835]";  // CGROUP_NS_INIT_INO
  if (n > 0 && std::string(ns, size_t(n)) != init)
    throw Error(kSystem, "grpcwall runs in a cgroup namespace (" + std::string(ns, size_t(n)) +
                             "): identities are cgroup paths from the hierarchy's root, so run it in the host's "
                             "cgroup namespace (nsenter -C -t 1, or hostPID/hostCgroup for a pod)");
  std::ifstream in("/proc/self/mountinfo");
  const std::string root = CgroupV2Root();
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, devno, mroot, mdir;
    f >> id >> parent >> devno >> mroot >> mdir;
    if (mdir == root && line.find(" - cgroup2 ") != std::string::npos && mroot != "/")
      throw Error(kSystem, "the cgroup2 mount at " + root + " shows the subtree " + mroot +
                               ", not the hierarchy's root: mount cgroup2 itself (mount -t cgroup2 none DIR) for grpcwall");
  }
}

bool IsCgroupV2Dir(const std::string& path) {
  struct statfs fs {};
  struct stat st {};
  return statfs(path.c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC &&
         stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

uint64_t CgroupId(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) throw SysError("cgroup " + path, errno);
  if (!IsCgroupV2Dir(path)) throw Error(kSystem, path + " is not a cgroup v2 directory");
  return st.st_ino;
}

bool PinDirAttached(const std::string& pin_dir) {
  return access(MapPin(pin_dir, "gw_config").c_str(), F_OK) == 0;
}

std::string MapPin(const std::string& pin_dir, const std::string& map) { return pin_dir + "/" + map; }

Fd OpenPinned(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      std::string dir = path.substr(0, path.find_last_of('/'));
      throw Error(kSystem, "grpcwall is not attached at pin dir " + dir + " (" + path +
                               " missing): run 'grpcwall attach --pin-dir " + dir + "' first");
    }
    throw SysError("opening " + path, err);
  }
  return Fd(fd);
}

Fd TryLockPinDir(const std::string& pin_dir) {
  Fd fd(open(pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Fd();
    throw SysError("opening pin dir " + pin_dir, errno);
  }
  int r;
  while ((r = flock(fd.get(), LOCK_EX)) != 0 && errno == EINTR) {
  }
  if (r != 0) throw SysError("locking pin dir " + pin_dir, errno);
  // the holder before us may have removed it (detach, a failed first attach)
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) throw SysError("pin dir " + pin_dir, errno);
  if (st.st_nlink == 0) return Fd();
  return fd;
}

Fd LockPinDir(const std::string& pin_dir) {
  Fd fd = TryLockPinDir(pin_dir);
  if (!fd)
    throw Error(kSystem, "pin dir " + pin_dir + " is gone (grpcwall was detached): run 'grpcwall attach --pin-dir " +
                             pin_dir + "' first");
  return fd;
}

std::string EscapeBytes(const std::string& raw) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size());
  for (unsigned char ch : raw) {
    if (ch == '\\') {
      out += "\\\\";
    } else if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      out += "\\x";
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

}  // namespace gw
