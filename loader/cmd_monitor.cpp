// grpcwall monitor: one line per verdict event from the ring buffer.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <signal.h>

#include <cstring>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "error.h"
#include "live.h"
#include "system.h"

namespace gw {
namespace {

struct MonitorOptions {
  std::string pin_dir;
  bool json = false;
  int count = 0;
  int timeout = 0;
};

volatile sig_atomic_t g_stop = 0;  // the signal that asked to stop

const char* kReasons[GW_REASON_MAX] = {
    "policy",      "no rule for this identity and service", "bad :path", ":path too long", "not HTTP/2",
    "protocol error", "header block over the kernel bound", "header block continues in CONTINUATION",
    "HPACK table model lost", "out of memory", "connection predates the policy (reset, or its payload held back by the egress guard)", "fallback helper gone or gave up",
    "bytes reached the socket past the walker (a send before the socket was policed, fast-open data, or a failed write)",
    "urgent data (MSG_OOB)", "sockhash full: the connection cannot be policed (attach --max-connections)",
    "the kernel flushed a held partial frame", "an upper layer protocol (TCP_ULP, kTLS) on a policed socket",
    "TCP to a service from a raw socket",
    "method table written by another grpcwall version (apply the policy again with this one)",
    "every walk scratch slot of the CPU held by a send preempted mid-walk (64)",
    "granted after it was denied on this connection: the server's table holds the rewritten :path (the connection is closed; the client reconnects)",
    "server side: a HEADERS frame cut across received buffers could not be held back (every hold slot busy, over 64 KiB to hold, a caller of no identity, or decided bytes held across a policy change)",
    "server side: MPTCP to a protected server (an MPTCP subflow cannot be walked): refused at its listener; the caller falls back to TCP",
    "server side: the protected servers hold their most walked connections (attach --max-connections): refused at the listener",
    "connected in TCP_REPAIR mode: a connection resumed with no handshake, where the walker cannot know its place in the stream",
    "server side: a HEADERS frame cut across received buffers could not be held back: the caller's identity holds its share of the hold slots (attach --hold-slots-per-identity)",
};

struct Ctx {
  const MonitorOptions* o;
  const LiveMaps* live;
  int seen = 0;
  double mono_to_real = 0;
};

std::string Name(const LiveMaps& live, uint64_t gen, uint32_t kind, uint16_t id) {
  if (!id) return "-";
  gw_config cfg = ReadConfig(live);
  uint32_t slot;
  if (gen == cfg.generation || gen + 1 == cfg.generation) slot = GW_SLOT_OF(gen);  // both slots still hold them
  else return "#" + std::to_string(id);
  gw_name_val v{};
  return ReadName(live, slot, kind, id, &v) ? std::string(v.text) : "#" + std::to_string(id);
}

// "a.b.c.d:port" for IPv4 (v4-mapped), "[v6]:port" for IPv6
std::string Endpoint(const uint32_t a[4], uint16_t port) {
  char buf[INET6_ADDRSTRLEN];
  if (a[0] == 0 && a[1] == 0 && a[2] == htonl(0xffff)) {
    inet_ntop(AF_INET, &a[3], buf, sizeof(buf));
    return std::string(buf) + ":" + std::to_string(port);
  }
  inet_ntop(AF_INET6, a, buf, sizeof(buf));
  return "[" + std::string(buf) + "]:" + std::to_string(port);
}

int OnEvent(void* p, void* data, size_t size) {
  auto* ctx = static_cast<Ctx*>(p);
  if (size < sizeof(gw_event)) return 0;
  gw_event e;
  std::memcpy(&e, data, sizeof(e));
  double real = ctx->mono_to_real + e.ts_ns / 1e9;
  time_t secs = static_cast<time_t>(real);
  char ts[64];
  struct tm tm {};
  gmtime_r(&secs, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  char tsf[80];
  snprintf(tsf, sizeof(tsf), "%s.%06dZ", ts, static_cast<int>((real - secs) * 1e6));
  // path and comm are the policed workload's bytes: escaped before printing
  std::string path = EscapeBytes(std::string(e.path, std::min<size_t>(e.path_len, sizeof(e.path))));
  std::string ident = Name(*ctx->live, e.generation, GW_NAMEKIND_IDENT, e.ident);
  std::string svc = Name(*ctx->live, e.generation, GW_NAMEKIND_SERVICE, e.service);
  std::string comm = EscapeBytes(std::string(e.comm, strnlen(e.comm, sizeof(e.comm))));
  const char* reason = e.reason < GW_REASON_MAX ? kReasons[e.reason] : "?";
  if (e.reason == GW_REASON_POLICY && e.rule == 0) reason = "no rule allows it";
  if (ctx->o->json) {
    nlohmann::json j{{"time", tsf},           {"verdict", VerdictName(e.verdict)},
                     {"identity", ident},     {"service", svc},
                     {"method", path},        {"rule", e.rule},
                     {"reason", reason},      {"src", Endpoint(e.saddr, e.sport)},
                     {"dst", Endpoint(e.daddr, e.dport)},
                     {"pid", e.pid},          {"conn_pid", e.conn_pid},
                     {"comm", comm},          {"stream", e.stream_id},
                     {"generation", e.generation}, {"cookie", e.cookie},
                     {"side", e.side ? "server" : "client"}};
    if (e.side) j["caller_by"] = e.side == 2 ? "cgroup" : "address";
    std::cout << j.dump() << std::endl;
  } else {
    std::string v = VerdictName(e.verdict);
    for (auto& ch : v) ch = static_cast<char>(toupper(ch));
    std::cout << tsf << " " << v << " " << ident << " -> " << svc << " " << (path.empty() ? "-" : path) << " rule "
              << e.rule << " (" << reason << ") " << Endpoint(e.saddr, e.sport) << " -> " << Endpoint(e.daddr, e.dport) << " pid " << e.pid << " (" << comm << ") stream " << e.stream_id << (e.side == 2 ? " [server side, caller by cgroup]" : e.side ? " [server side, caller by address]" : "") << std::endl;
  }
  ctx->seen++;
  // stop consuming once --count is reached: later events stay in the ring
  return (ctx->o->count > 0 && ctx->seen >= ctx->o->count) ? -ECANCELED : 0;
}

void Monitor(const MonitorOptions& o) {
  RequireRoot("monitor");
  LiveMaps live = LiveMaps::Open(o.pin_dir);
  Fd events = OpenPinned(MapPin(o.pin_dir, "gw_events"));
  Ctx ctx{&o, &live};
  struct timespec mono {}, real {};
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  ctx.mono_to_real = (real.tv_sec + real.tv_nsec / 1e9) - (mono.tv_sec + mono.tv_nsec / 1e9);

  Fd fb_events(bpf_obj_get(MapPin(o.pin_dir, "gw_fb_events").c_str()));  // the fallback helper's
  ring_buffer* rb = ring_buffer__new(events.get(), OnEvent, &ctx, nullptr);
  if (!rb) throw SysError("opening the event ring buffer", errno);
  signal(SIGINT, [](int sig) { g_stop = sig; });
  signal(SIGTERM, [](int sig) { g_stop = sig; });
  struct timespec start {};
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (!g_stop && (o.count == 0 || ctx.seen < o.count)) {
    int n = ring_buffer__poll(rb, 200);
    if (n == -ECANCELED) break;
    gw_event fe{};
    bool stop = false;
    while (fb_events && !stop && (o.count == 0 || ctx.seen < o.count) &&
           bpf_map_lookup_and_delete_elem(fb_events.get(), nullptr, &fe) == 0)
      stop = OnEvent(&ctx, &fe, sizeof(fe)) != 0;
    if (stop) break;
    if (n < 0 && n != -EINTR) {
      ring_buffer__free(rb);
      throw SysError("reading events", -n);
    }
    if (o.timeout > 0) {
      struct timespec now {};
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec - start.tv_sec >= o.timeout) break;
    }
  }
  ring_buffer__free(rb);
  // stopped by a signal before --count was reached: not a timeout, and not
  // a success either; the exit code says which signal, as a shell would
  if (g_stop && o.count > 0 && ctx.seen < o.count)
    throw Error(g_stop == SIGINT ? kSigint : kSigterm, std::string(g_stop == SIGINT ? "interrupted" : "terminated") +
                                                          " after " + std::to_string(ctx.seen) + " of " +
                                                          std::to_string(o.count) + " events");
  if (o.count > 0 && ctx.seen < o.count)
    throw Error(kSystem, "timed out after " + std::to_string(o.timeout) + "s with " + std::to_string(ctx.seen) +
                             " of " + std::to_string(o.count) + " events");
}

}  // namespace

void RegisterMonitor(CLI::App& app) {
  auto o = std::make_shared<MonitorOptions>();
  auto* sub = app.add_subcommand(
      "monitor",
      "Print one line per verdict event (deny, audit, and connections failed closed) as they happen:\n"
      "time, verdict, identity -> service, method, rule, reason, addresses, pid and comm.\n"
      "Events are consumed: run one monitor per pin dir. Ctrl-C (SIGINT) or SIGTERM ends it: exit 0,\n"
      "or, with --count not yet reached, 130 (SIGINT) or 143 (SIGTERM).");
  AddPinDir(sub, &o->pin_dir);
  sub->add_flag("--json", o->json, "one JSON object per line");
  sub->add_option("--count,-c", o->count, "exit 0 after N events")->check(CLI::NonNegativeNumber);
  sub->add_option("--timeout", o->timeout, "exit after this many seconds (with --count: exit 2 if fewer arrived)")
      ->check(CLI::NonNegativeNumber);
  sub->callback([o] { Monitor(*o); });
}

}  // namespace gw
