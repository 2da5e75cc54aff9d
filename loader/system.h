// The machine around grpcwall: cgroup v2, bpffs, pinned objects.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gw {

constexpr const char* kDefaultPinDir = "/sys/fs/bpf/grpcwall";

// Owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

void RequireRoot(const std::string& what);

// The cgroup v2 mount point, read from /proc/self/mounts.
std::string CgroupV2Root();
// The cgroup id of a cgroup v2 directory (its inode number).
uint64_t CgroupId(const std::string& path);
bool IsCgroupV2Dir(const std::string& path);
// Throws unless this process sees the cgroup v2 hierarchy from its root
// (the initial cgroup namespace, a mount of the root): identity keys are
// paths from there.
void RequireGlobalCgroupView();

bool PinDirAttached(const std::string& pin_dir);  // has a pinned config map

// Opens a pinned object; throws a SysError naming `what` if absent.
Fd OpenPinned(const std::string& path);
std::string MapPin(const std::string& pin_dir, const std::string& map);

// Exclusive lock over the pin dir for commands that change live state.
// Throws if the directory is gone, or was removed (detached) while waiting.
Fd LockPinDir(const std::string& pin_dir);
// The same, but returns no Fd when the directory is gone or was removed.
Fd TryLockPinDir(const std::string& pin_dir);

std::string Errno(int err);

// Bytes that came from a policed workload (a :path, a comm) made safe to
// print: printable ASCII stays, backslash becomes "\\", every other byte
// "\xNN". The result is plain ASCII, so it is valid UTF-8 and valid in
// JSON, and no byte can move the cursor, clear the screen or end a line.
std::string EscapeBytes(const std::string& raw);

}  // namespace gw
