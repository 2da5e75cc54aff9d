// grpcwall proxy: the userspace fallback for header blocks the kernel
// cannot see whole (see bpf/fallback.h for the mechanism). Started by
// `grpcwall attach` unless --no-fallback; restartable on its own.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "commands.h"
#include "error.h"
#include "fb_stream.h"
#include "kernel.h"

extern "C" {
#include "conn_state.h"
}
#include "live.h"
#include "pin_dir.h"
#include "proxy.h"
#include "system.h"

namespace gw {
namespace {

struct ProxyOptions {
  std::string pin_dir;
  std::string log;
  bool daemon = false;
};

volatile sig_atomic_t g_stop = 0;

// Who the helper is: the process holding a POSIX record lock (F_SETLK,
// F_WRLCK) on its pin dir's gw_fb_stats inode, which it takes at start and
// holds for its life. The kernel drops it when the process ends, crash or
// not, so a reused pid or a renamed binary is never taken for the helper.
// Only a process that does not hold the lock may query it: closing any fd
// on that inode drops the closing process's own POSIX locks on it.
constexpr const char* kHelperLockPin = "gw_fb_stats";

pid_t HelperLockHolder(const std::string& pin_dir) {
  Fd fd(open(MapPin(pin_dir, kHelperLockPin).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd.get(), F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) return 0;
  return fl.l_pid > 0 ? pid_t(fl.l_pid) : 0;  // -1: an OFD lock, never the helper's
}

Fd TakeHelperLock(const std::string& pin_dir) {
  const std::string path = MapPin(pin_dir, kHelperLockPin);
  Fd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) throw SysError("opening " + path + " (the helper holds a lock on it)", errno);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd.get(), F_SETLK, &fl) != 0) {
    if (errno != EAGAIN && errno != EACCES) throw SysError("locking " + path, errno);
    pid_t other = HelperLockHolder(pin_dir);
    if (other <= 0)
      throw Error(kSystem, "another process holds a lock on " + path +
                               ", which only the fallback helper may hold: stop it, then run the helper again");
    throw Error(kSystem, "a fallback helper (pid " + std::to_string(other) + ") already runs for " + pin_dir +
                             ": it serves until 'grpcwall detach'; to restart it, stop it first (kill " +
                             std::to_string(other) + ")");
  }
  return fd;
}

// Waits up to `ms` for the process behind `pidfd` to end.
bool WaitGone(int pidfd, int ms) {
  pollfd p{pidfd, POLLIN, 0};
  int r;
  while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR) {
  }
  return r > 0;
}

uint64_t MonoNs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000ull + t.tv_nsec;
}

struct FbMaps {
  Fd pool, ret, model, stats, events, conns, sockhash, paths;
  static FbMaps Open(const std::string& d) {
    FbMaps m;
    m.pool = OpenPinned(MapPin(d, "gw_pool"));
    m.ret = OpenPinned(MapPin(d, "gw_fb_ret"));
    m.model = OpenPinned(MapPin(d, "gw_fb_model"));
    m.stats = OpenPinned(MapPin(d, "gw_fb_stats"));
    m.events = OpenPinned(MapPin(d, "gw_fb_events"));
    m.conns = OpenPinned(MapPin(d, "gw_conns"));
    m.sockhash = OpenPinned(MapPin(d, "gw_sockhash"));
    m.paths = OpenPinned(MapPin(d, "gw_paths"));
    return m;
  }
};

void SetCell(const FbMaps& m, uint32_t slot, uint32_t cell, uint64_t v) {
  uint32_t k = slot * GW_FB_RET_CELLS + cell;
  if (bpf_map_update_elem(m.ret.get(), &k, &v, BPF_ANY) != 0) throw SysError("writing gw_fb_ret", errno);
}

struct Slot {
  Fd mine, peer;      // the pool pair: mine is in the sockhash
  uint32_t epoch = 0;  // the diversion being followed
  uint64_t resent = 0;
  bool failed = false;
  gw_pool_slot info{};
  gw_config cfg{};        // keys and match hashes: fixed for the attach
  uint32_t inner_id = 0;  // the pair's method map last looked up ...
  Fd inner;               // ... and an fd on it, reused while the id holds
  uint64_t gen = 0;       // the generation ident/service below are resolved for
  uint16_t ident = 0, service = 0;
  bool stale = false;     // the path recorded at the divert is too short for that policy
  FbStream stream;
};

class Helper {
 public:
  Helper(const std::string& pin_dir) : pin_dir_(pin_dir), live_(LiveMaps::Open(pin_dir)), m_(FbMaps::Open(pin_dir)) {}

  void Setup() {
    lock_ = TakeHelperLock(pin_dir_);  // from here on, this process is the helper
    // connections a previous helper had taken are lost: fail them closed
    for (uint32_t i = 0; i < GW_POOL_SLOTS; i++) {
      gw_pool_slot ps{};
      if (bpf_map_lookup_elem(m_.pool.get(), &i, &ps) == 0 && ps.busy) SetCell(m_, i, GW_FB_FAILED, ps.epoch);
      SetCell(m_, i, GW_FB_COOKIE, 0);
    }
    epoll_ = Fd(epoll_create1(EPOLL_CLOEXEC));
    for (uint32_t i = 0; i < GW_POOL_SLOTS; i++) {
      slots_[i] = std::make_unique<Slot>();
      SetFree(i);  // what a predecessor held is failed above; the slot starts anew ...
      OpenPair(i);  // ... and is claimable only once its cookie is published here
    }
    stats_ = gw_fb_stats{};
    stats_.pid = getpid();
    stats_.slots = GW_POOL_SLOTS;
    stats_.started_ns = MonoNs();
    PublishStats();
  }

  void Run() {
    std::vector<uint8_t> buf(256 * 1024), out;
    epoll_event evs[GW_POOL_SLOTS];
    while (!g_stop) {
      int n = epoll_wait(epoll_.get(), evs, GW_POOL_SLOTS, 200);
      if (n < 0 && errno != EINTR) throw SysError("epoll_wait", errno);
      for (int e = 0; e < n; e++) Serve(evs[e].data.u32, &buf, &out);
      Recycle();
      EndLingering();
    }
  }

  // Server side, once a second: a connection failed closed on receive (its
  // bytes all dropped, the caller left waiting) or holding a HEADERS frame
  // longer than GW_HOLD_TIMEOUT_NS (its caller stopped inside it; a server
  // polling level-triggered spins on such a socket) is ended by the reset
  // iterator, which picks them (gw_srv_lingers).
  void EndLingering() {
    const uint64_t now = MonoNs();
    if (now - last_linger_ < 1000000000ull) return;
    last_linger_ = now;
    bool due = false;
    try {
      const uint64_t failed = ReadCounters(live_)[GW_CNT_SRV_FAILED];
      if (failed != last_failed_) due = true, last_failed_ = failed;
    } catch (const std::exception& e) {
      std::cerr << "grpcwall proxy: reading counters: " << e.what() << "\n";
    }
    Fd owners(bpf_obj_get(MapPin(pin_dir_, "gw_srv_hold_owners").c_str()));
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (owners && bpf_obj_get_info_by_fd(owners.get(), &info, &len) == 0)
      for (uint32_t i = 0; i < info.max_entries && !due; i++) {
        gw_hold_owner h{};
        // a tenth of the limit: the iterator sums a connection's holds
        // (a caller that completes a frame and cuts the next restarts
        // `since`, not its sum)
        if (bpf_map_lookup_elem(owners.get(), &i, &h) == 0 && h.owner && now > h.since &&
            now - h.since > GW_HOLD_TIMEOUT_NS / 10)
          due = true;
      }
    if (!due) return;
    if (no_reset_ < 0) no_reset_ = !ResetUnavailable(pin_dir_).empty();  // asked once: the kernel does not change
    if (no_reset_) return;  // attach said what that costs
    try {
      if (int n = ResetPredating(pin_dir_))
        std::cerr << "grpcwall proxy: reset " << n << " connection(s) failed closed or stalled inside a header frame\n";
    } catch (const std::exception& e) {
      std::cerr << "grpcwall proxy: resetting lingering connections: " << e.what() << "\n";
    }
  }

  void Shutdown() {
    for (uint32_t i = 0; i < GW_POOL_SLOTS; i++) {
      try {
        SetCell(m_, i, GW_FB_COOKIE, 0);
      } catch (...) {
      }
    }
    stats_.pid = 0;
    PublishStats();
  }

 private:
  void OpenPair(uint32_t i) {
    Slot& s = *slots_[i];
    if (s.mine) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.mine.get(), nullptr);
    s.mine = Fd();
    s.peer = Fd();
    // A listener of its own on an ephemeral loopback port, closed once the
    // pair is made; whatever else connected to it is refused: no other local
    // process can become (or stall) a pool socket.
    Fd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (!listener || bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        listen(listener.get(), 8) != 0 || getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &al) != 0)
      throw SysError("opening a pool listener on 127.0.0.1", errno);
    Fd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int big = 8 << 20;
    setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (!c || connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
      throw SysError("connecting a pool socket", errno);
    sockaddr_in mine{};
    socklen_t ml = sizeof(mine);
    getsockname(c.get(), reinterpret_cast<sockaddr*>(&mine), &ml);
    Fd p;
    for (int tries = 0; tries < 16 && !p; tries++) {
      sockaddr_in from{};
      socklen_t fl = sizeof(from);
      Fd got(accept4(listener.get(), reinterpret_cast<sockaddr*>(&from), &fl, SOCK_CLOEXEC));
      if (!got) throw SysError("accepting a pool socket", errno);
      if (from.sin_port == mine.sin_port && from.sin_addr.s_addr == mine.sin_addr.s_addr) p = std::move(got);
    }
    if (!p) throw Error(kSystem, "pool socket: another local process kept connecting to the helper's listener");
    uint64_t cookie = 0;
    socklen_t cl = sizeof(cookie);
    if (getsockopt(c.get(), SOL_SOCKET, SO_COOKIE, &cookie, &cl) != 0) throw SysError("SO_COOKIE", errno);
    gw_conn conn{};
    conn.flags = GW_CONN_POOL;
    conn.pool_slot = i;
    int fd = c.get();
    if (bpf_map_update_elem(m_.conns.get(), &fd, &conn, BPF_ANY) != 0)
      throw SysError("marking a pool socket in gw_conns", errno);
    uint64_t fd64 = uint64_t(fd);  // gw_sockhash values are 8 bytes
    if (bpf_map_update_elem(m_.sockhash.get(), &cookie, &fd64, BPF_ANY) != 0)
      throw SysError("putting a pool socket in gw_sockhash", errno);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = i;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw SysError("epoll_ctl", errno);
    s.mine = std::move(c);
    s.peer = std::move(p);
    SetCell(m_, i, GW_FB_COOKIE, cookie);
  }

  // Slots whose connection failed while diverted (the kernel set them to
  // RECYCLE) or closed (its cookie left gw_sockhash, which drops a socket
  // at close; the kernel sets BUSY only after the cookie is written, and a
  // BUSY slot is not claimed again, so the cookie read is the slot's): new
  // pool sockets, so nothing left in the old ones can reach the next
  // connection, then free for the kernel to claim.
  void Recycle() {
    for (uint32_t i = 0; i < GW_POOL_SLOTS; i++) {
      gw_pool_slot ps{};
      if (bpf_map_lookup_elem(m_.pool.get(), &i, &ps) != 0) continue;
      uint64_t in_map = 0;
      bool closed = ps.busy == GW_POOL_BUSY &&
                    bpf_map_lookup_elem(m_.sockhash.get(), &ps.conn_cookie, &in_map) != 0 && errno == ENOENT;
      if (ps.busy != GW_POOL_RECYCLE && !closed) continue;
      std::cerr << "grpcwall proxy: slot " << i << " recycled (connection " << ps.conn_cookie
                << (closed ? " closed" : " failed") << ")\n";
      OpenPair(i);
      SetFree(i);  // RECYCLE: no claim can land in between (claims take FREE only)
    }
  }

  // Only in RECYCLE (or at start, with no helper serving): no other writer.
  void SetFree(uint32_t i) {
    gw_pool_slot ps{};
    if (bpf_map_lookup_elem(m_.pool.get(), &i, &ps) != 0) throw SysError("reading gw_pool", errno);
    ps.busy = GW_POOL_FREE;
    if (bpf_map_update_elem(m_.pool.get(), &i, &ps, BPF_ANY) != 0) throw SysError("freeing a gw_pool slot", errno);
    Slot& s = *slots_[i];
    s.epoch = ps.epoch;  // bytes read before the next claim belong to no one
    s.failed = true;
  }

  void PublishStats() {
    uint32_t zero = 0;
    bpf_map_update_elem(m_.stats.get(), &zero, &stats_, BPF_ANY);
  }

  // the kernel's gw_decide, over the same maps: the pair's method map is
  // looked up per block (a policy apply takes effect on the next RPC)
  // The connection's identity and service under the live policy, as the
  // kernel's gw_refresh: resolved again whenever the generation moved, so a
  // policy apply takes effect on the next header block here too.
  bool Refresh(Slot& s) {
    gw_config cfg = ReadConfig(live_);
    uint64_t gen = cfg.generation;  // the slot follows from it (GW_SLOT_OF)
    if (gen != s.gen) {
      const uint32_t slot = GW_SLOT_OF(gen);
      const gw_conn_origin& o = s.info.origin;
      // as the kernel's gw_refresh: identities deeper than what was recorded
      s.stale = o.ncgroups < std::min(o.level, cfg.ident_depth);
      s.ident = 0;
      for (uint32_t i = 0; i < o.ncgroups && i < GW_CGROUP_DEPTH && gen; i++) {  // deepest first
        gw_ident_key k{};
        k.slot = slot;
        k.path_hash = o.cgroups[o.ncgroups - 1 - i];
        gw_ident_val v{};
        if (bpf_map_lookup_elem(live_.idents.get(), &k, &v) == 0) {
          s.ident = v.ident;
          break;
        }
      }
      gw_svc_key sk{};
      sk.prefixlen = GW_SVC_PREFIX_FIXED + 128;
      sk.slot = uint8_t(slot);
      sk.port = o.dport;
      std::memcpy(sk.addr, o.daddr, sizeof(sk.addr));
      gw_svc_val sv{};
      s.service = gen && bpf_map_lookup_elem(live_.services.get(), &sk, &sv) == 0 ? sv.service : 0;
      s.gen = gen;
    }
    return s.stale || (s.ident && s.service);
  }

  FbVerdict Decide(Slot& s, const FbBlock& b, bool policed) {
    FbVerdict d;
    if (!policed) {
      d.verdict = GW_VERDICT_ALLOW;
      return d;
    }
    if (s.stale) return d.reason = GW_REASON_PREDATES, d;  // deny: cannot tell the identity
    const gw_hp_block& k = *b.blk;
    int r = gw_hp_path_reason(&k);
    if (r >= 0) return d.reason = uint8_t(r), d;
    gw_pair_key pk{};
    pk.slot = GW_SLOT_OF(s.gen);
    pk.ident = s.ident;
    pk.service = s.service;
    uint32_t inner_id = 0;
    if (bpf_map_lookup_elem(live_.policy.get(), &pk, &inner_id) != 0) return d.reason = GW_REASON_NO_RULE, d;
    if (inner_id != s.inner_id || !s.inner) {
      s.inner = Fd(bpf_map_get_fd_by_id(inner_id));
      s.inner_id = s.inner ? inner_id : 0;
    }
    if (!s.inner) return d.reason = GW_REASON_NO_RULE, d;
    // as the kernel: the most specific entry found is the whole decision
    gw_method_val best{};
    bool have = false;
    for (uint64_t key : {k.h_exact, k.h_svc, s.cfg.hash_any, s.cfg.hash_default})
      if ((have = bpf_map_lookup_elem(s.inner.get(), &key, &best) == 0)) break;
    if (have && best.verdict != GW_VERDICT_DENY && best.kind != GW_MATCH_EXACT) {
      // as the kernel: an enforcing deny entry the path is in another case
      // wins over what a wildcard lets pass
      for (uint64_t key : {GW_FOLD_KEY(k.h_exact_fold), GW_FOLD_KEY(k.h_svc_fold)}) {
        gw_method_val fold{};
        if (bpf_map_lookup_elem(s.inner.get(), &key, &fold) == 0) {
          best = fold;
          break;
        }
      }
    }
    if (!have) return d.reason = GW_REASON_NO_RULE, d;
    d.rule = best.rule;
    if (best.local && best.rule) {  // a shared table: which of the pair's rules
      gw_pair_rules pr{};
      const bool have = live_.pair_rules && bpf_map_lookup_elem(live_.pair_rules.get(), &pk, &pr) == 0;
      d.rule = have && best.rule <= pr.n ? pr.rule[best.rule - 1] : 0;
    }
    if (best.format != GW_TABLE_FORMAT) return d.reason = GW_REASON_FORMAT, d;
    d.verdict = best.verdict;
    return d;
  }

  void Emit(const Slot& s, const FbBlock& b, const FbVerdict& v) {
    gw_event e{};
    e.ts_ns = MonoNs();
    e.generation = s.gen;
    e.cookie = s.info.conn_cookie;
    std::memcpy(e.saddr, s.info.origin.saddr, sizeof(e.saddr));
    std::memcpy(e.daddr, s.info.origin.daddr, sizeof(e.daddr));
    e.sport = s.info.origin.sport;
    e.dport = ntohs(s.info.origin.dport);
    e.ident = s.ident;
    e.service = s.service;
    e.rule = v.rule;
    e.verdict = v.verdict;
    e.reason = v.reason;
    e.pid = s.info.origin.pid;
    e.conn_pid = s.info.origin.pid;
    std::memcpy(e.comm, s.info.origin.comm, sizeof(e.comm));
    e.stream_id = b.stream;
    const gw_hp_block& k = *b.blk;
    if (k.path_how == GW_PATH_LIT_RAW || k.path_how == GW_PATH_LIT_HUFF) {
      e.path_len = std::min<uint16_t>(k.path_len, GW_PATH_MAX);
      std::memcpy(e.path, k.path, e.path_len);
    } else if (k.path_how == GW_PATH_IDX_DYN) {
      uint64_t h = k.h_exact;
      char text[GW_PATH_MAX];
      if (bpf_map_lookup_elem(m_.paths.get(), &h, text) == 0) {
        e.path_len = std::min<uint16_t>(k.path_len, GW_PATH_MAX);
        std::memcpy(e.path, text, e.path_len);
      }
    }
    if (bpf_map_update_elem(m_.events.get(), nullptr, &e, BPF_ANY) != 0)
      std::cerr << "grpcwall proxy: event queue full, event lost\n";
  }

  void Serve(uint32_t i, std::vector<uint8_t>* buf, std::vector<uint8_t>* out) {
    Slot& s = *slots_[i];
    ssize_t n = read(s.mine.get(), buf->data(), buf->size());
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      std::cerr << "grpcwall proxy: pool socket " << i << " broke (" << (n == 0 ? "closed" : strerror(errno))
                << "), opening a new one\n";
      OpenPair(i);
      return;
    }
    gw_pool_slot ps{};
    if (bpf_map_lookup_elem(m_.pool.get(), &i, &ps) != 0) throw SysError("reading gw_pool", errno);
    if (ps.epoch != s.epoch) {  // a new diversion: start from the kernel's model
      s.epoch = ps.epoch;
      s.info = ps;
      s.resent = 0;
      s.failed = false;
      s.cfg = ReadConfig(live_);
      s.gen = 0;
      s.stream.Reset(ps.model, gw_hp_keys{s.cfg.key0, s.cfg.key1});
      s.stream.Passthrough(ps.passthrough);
      s.stream.decide = [this, &s](const FbBlock& b) {
        bool policed = Refresh(s);
        FbVerdict v = Decide(s, b, policed);
        // (a regranted block fails the connection: its own event, no audit one)
        if (policed && v.verdict != GW_VERDICT_ALLOW && !(b.regranted && v.verdict == GW_VERDICT_AUDIT)) Emit(s, b, v);
        return v;
      };
      std::cerr << "grpcwall proxy: slot " << i << " takes connection " << ps.conn_cookie << " ("
                << (ps.reason == GW_REASON_BOUND ? "header block over the kernel bound" : "CONTINUATION") << ")\n";
    }
    if (s.failed || ps.busy != GW_POOL_BUSY) return;  // failing, or no one's: nothing more goes on
    stats_.bytes += n;
    out->clear();
    uint64_t b0 = s.stream.blocks, bb0 = s.stream.big_blocks, a0 = s.stream.allowed, d0 = s.stream.denied,
             au0 = s.stream.audited;
    bool ok = s.stream.Feed(buf->data(), size_t(n), out);
    stats_.blocks += s.stream.blocks - b0;
    stats_.big_blocks += s.stream.big_blocks - bb0;
    if (s.ident && s.service) {
      stats_.allowed += s.stream.allowed - a0;
      stats_.denied += s.stream.denied - d0;
      stats_.audited += s.stream.audited - au0;
    }
    size_t done = 0;
    while (done < out->size()) {
      ssize_t w = write(s.mine.get(), out->data() + done, out->size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {  // the diverted connection is gone
        std::cerr << "grpcwall proxy: slot " << i << ": connection gone (" << strerror(errno) << ")\n";
        ok = false;
        OpenPair(i);
        break;
      }
      done += size_t(w);
    }
    s.resent += done;
    if (!ok) {
      s.failed = true;
      stats_.failed++;
      SetCell(m_, i, GW_FB_FAILED, s.epoch);
      FbBlock b{0, true, true, &s.stream.last_block()};
      FbVerdict v;
      v.reason = s.stream.reason() ? s.stream.reason() : uint8_t(GW_REASON_FALLBACK);
      if (s.stream.reason()) Emit(s, b, v);
      std::cerr << "grpcwall proxy: slot " << i << ": connection failed closed (reason " << int(v.reason) << ")\n";
    } else if (s.stream.AtBoundary()) {
      // model first, then the mark the kernel compares with its count
      gw_h2_model m = s.stream.Model();
      if (bpf_map_update_elem(m_.model.get(), &i, &m, BPF_ANY) != 0) throw SysError("writing gw_fb_model", errno);
      SetCell(m_, i, GW_FB_HANDBACK, GW_FB_PACK(s.epoch, s.resent));
    }
    PublishStats();
  }

  std::string pin_dir_;
  uint64_t last_linger_ = 0, last_failed_ = 0;
  int no_reset_ = -1;  // the kernel cannot reset connections (1), can (0), not asked yet (-1)
  Fd lock_;  // held for the helper's life: see TakeHelperLock
  LiveMaps live_;
  FbMaps m_;
  Fd epoll_;
  std::unique_ptr<Slot> slots_[GW_POOL_SLOTS];
  gw_fb_stats stats_{};
};

void Proxy(const ProxyOptions& o) {
  RequireRoot("proxy");
  if (!PinDirAttached(o.pin_dir))
    throw Error(kNotAttached, "nothing attached at " + o.pin_dir + ": run 'grpcwall attach --pin-dir " + o.pin_dir + "' first");
  int ready[2] = {-1, -1};
  if (o.daemon) {
    if (pipe2(ready, O_CLOEXEC) != 0) throw SysError("pipe", errno);
    std::cout.flush();
    std::cerr.flush();
    pid_t pid = fork();
    if (pid < 0) throw SysError("fork", errno);
    if (pid > 0) {  // the parent returns once the helper is serving
      close(ready[1]);
      char c = 0;
      ssize_t r = read(ready[0], &c, 1);
      close(ready[0]);
      if (r != 1 || c != 'y') throw Error(kSystem, "the fallback helper did not start: see " + o.log);
      std::cout << "fallback helper running (pid " << pid << "), log " << o.log << "\n";
      return;
    }
    close(ready[0]);
    setsid();
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0) dup2(devnull, 0);
    int log = open(o.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log >= 0) {
      dup2(log, 1);
      dup2(log, 2);
    }
  }
  signal(SIGINT, [](int) { g_stop = 1; });
  signal(SIGTERM, [](int) { g_stop = 1; });
  signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<Helper> helper;
  try {
    // under the pin dir lock, from opening the maps to holding the helper
    // lock: a detach either finds this helper, or has removed the pin dir
    // before it starts (then it exits), never a helper serving maps that
    // no command can find
    Fd pin_lock = TryLockPinDir(o.pin_dir);
    if (!pin_lock || !PinDirAttached(o.pin_dir))
      throw Error(kNotAttached, o.pin_dir + " was detached while the helper started");
    if (HasStaging(o.pin_dir))  // its maps may be the old ones the live programs no longer use
      throw Error(kSystem, "an upgrade of " + o.pin_dir + " died half way: run 'grpcwall attach' with this "
                               "version, which finishes it (and starts a helper)");
    helper = std::make_unique<Helper>(o.pin_dir);
    helper->Setup();
  } catch (const std::exception& e) {
    std::cerr << "grpcwall proxy: " << e.what() << std::endl;
    if (o.daemon) {
      const Error* g = dynamic_cast<const Error*>(&e);
      _exit(g ? g->code() : kSystem);
    }
    throw;
  }
  std::cerr << "grpcwall proxy: serving " << GW_POOL_SLOTS << " slots for " << o.pin_dir << " (pid " << getpid()
            << ")" << std::endl;
  if (o.daemon) {
    ssize_t w = write(ready[1], "y", 1);
    (void)w;
    close(ready[1]);
  }
  try {
    helper->Run();
  } catch (const std::exception& e) {
    std::cerr << "grpcwall proxy: " << e.what() << std::endl;
    helper->Shutdown();
    if (o.daemon) _exit(kSystem);
    throw;
  }
  helper->Shutdown();
  std::cerr << "grpcwall proxy: stopped" << std::endl;
  if (o.daemon) _exit(0);
}

}  // namespace

std::string DefaultProxyLog(const std::string& pin_dir) {
  std::string n = pin_dir;
  for (auto& c : n)
    if (c == '/') c = '_';
  return "/run/grpcwall/" + n.substr(1) + ".log";
}

uint32_t BusyPoolSlots(const std::string& pin_dir) {
  Fd pool(bpf_obj_get(MapPin(pin_dir, "gw_pool").c_str()));
  uint32_t busy = 0;
  for (uint32_t i = 0; pool && i < GW_POOL_SLOTS; i++) {
    gw_pool_slot ps{};
    if (bpf_map_lookup_elem(pool.get(), &i, &ps) == 0 && ps.busy != GW_POOL_FREE) busy++;
  }
  return busy;
}

uint64_t TrackedConns(const std::string& pin_dir) {
  Fd sockhash(bpf_obj_get(MapPin(pin_dir, "gw_sockhash").c_str()));
  Fd ret(bpf_obj_get(MapPin(pin_dir, "gw_fb_ret").c_str()));
  std::set<uint64_t> pool;  // the helper's own sockets are in gw_sockhash too
  for (uint32_t i = 0; ret && i < GW_POOL_SLOTS; i++) {
    uint32_t k = i * GW_FB_RET_CELLS + GW_FB_COOKIE;
    uint64_t v = 0;
    if (bpf_map_lookup_elem(ret.get(), &k, &v) == 0 && v) pool.insert(v);
  }
  uint64_t n = 0, key = 0;
  bool first = true;
  while (sockhash) {
    uint64_t next = 0;
    if (bpf_map_get_next_key(sockhash.get(), first ? nullptr : &key, &next) != 0) break;
    first = false;
    key = next;
    if (!pool.count(key)) n++;
  }
  return n;
}

gw_fb_stats ReadFallbackStats(const std::string& pin_dir) {
  gw_fb_stats s{};
  Fd stats(bpf_obj_get(MapPin(pin_dir, "gw_fb_stats").c_str()));
  uint32_t zero = 0;
  if (stats) bpf_map_lookup_elem(stats.get(), &zero, &s);
  return s;
}

pid_t RunningProxy(const std::string& pin_dir) { return HelperLockHolder(pin_dir); }

void StartProxy(const std::string& pin_dir) {
  // exec `grpcwall proxy --daemon` (it returns once the helper serves), so
  // the helper shows as what it is in ps and holds none of attach's state
  mkdir("/run/grpcwall", 0750);
  std::string log = DefaultProxyLog(pin_dir);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) throw SysError("finding the grpcwall binary (/proc/self/exe)", errno);
  self[n] = 0;
  std::cout.flush();
  pid_t pid = fork();
  if (pid < 0) throw SysError("fork", errno);
  if (pid == 0) {
    execl(self, "grpcwall", "proxy", "--pin-dir", pin_dir.c_str(), "--daemon", "--log", log.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    throw Error(kSystem, "'grpcwall proxy --daemon' exited with " +
                             (WIFEXITED(st) ? "status " + std::to_string(WEXITSTATUS(st))
                                            : "signal " + std::to_string(WTERMSIG(st))) +
                             " (its log: " + log + ")");
}

bool StopProxy(const std::string& pin_dir) {
  for (int attempt = 0; attempt < 3; attempt++) {
    pid_t pid = HelperLockHolder(pin_dir);
    if (!pid) return false;
    Fd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) continue;  // it ended meanwhile
    // the pidfd is the process that had the pid when it was opened; if the
    // pid still holds the lock now, that process is the helper (a pid is
    // never reused while its process lives)
    if (HelperLockHolder(pin_dir) != pid) continue;
    auto signal_it = [&](int sig) { return syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) == 0; };
    if (!signal_it(SIGTERM)) continue;
    if (!WaitGone(pidfd.get(), 2000) && signal_it(SIGKILL)) WaitGone(pidfd.get(), 2000);
    // the pidfd polls readable once the helper exits, which may be before
    // its parent reaps it: wait a moment for that too, so whoever looks for
    // the pid right after detach does not find a zombie
    for (int i = 0; i < 500 && kill(pid, 0) == 0; i++) usleep(10000);
    return true;
  }
  return false;
}

void RegisterProxy(CLI::App& app) {
  auto o = std::make_shared<ProxyOptions>();
  auto* sub = app.add_subcommand(
      "proxy",
      "Run the userspace fallback for header blocks the kernel cannot see whole (HEADERS followed by\n"
      "CONTINUATION, or over the in-kernel bound of 16384 bytes). 'grpcwall attach' starts it unless\n"
      "--no-fallback; run it yourself to restart it. Without it such connections fail closed.\n"
      "It takes a connection only for such a block and hands it back to the kernel once drained.\n"
      "One runs per pin dir: it holds a write lock (fcntl) on the pin dir's gw_fb_stats for its life,\n"
      "and attach, detach and status know it by that lock, whatever its pid or binary name.");
  AddPinDir(sub, &o->pin_dir);
  sub->add_flag("--daemon", o->daemon, "detach and log to --log (returns once serving)");
  sub->add_option("--log", o->log, "log file with --daemon (default /run/grpcwall/<pin dir with / as _>.log)");
  sub->callback([o] {
    ProxyOptions p = *o;
    if (p.log.empty()) {
      mkdir("/run/grpcwall", 0750);
      p.log = DefaultProxyLog(p.pin_dir);
    }
    Proxy(p);
  });
}

}  // namespace gw
