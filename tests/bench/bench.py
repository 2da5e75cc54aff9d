#!/usr/bin/env python3
"""grpcwall benchmarks: what enforcement costs, against no policy, against the
floor the sk_msg architecture allows, and against a userspace L7 proxy
(HAProxy). `sudo make bench` / `sudo make bench-quick`.

Client (h2load, gRPC-framed unary POSTs) and servers live in their own network
namespaces joined by a veth pair. Two servers, two parts, each measured in ONE
run with its configurations interleaved (A B C A B C ...), medians over rounds:

Lean server (issue 10): nghttpd answering every call with a gRPC OK (a 5-byte
empty message and a grpc-status: 0 trailer), so grpcwall's cost is not hidden
by the server's. Loads 4 connections x 16 streams, 1 x 1, and "4new": 4 clients
that each open a new connection per request (tests/bench/connload.c: connect,
one unary call, close), where the per-connection programs (sockops) count.
  lean-baseline   nothing attached
  lean-floor      a sockhash holding the client's sockets and an sk_msg
                  program that only returns SK_PASS (tests/bench/floor.bpf.c):
                  the tcp_bpf path plus one empty program run per write
  lean-grpcwall   grpcwall attached, the called method allowed
  lean-floor-server the server side's floor: nghttpd's accepted sockets in a
                  sockhash whose sk_skb stream verdict only returns SK_PASS
                  (floor.bpf.c): the sk_psock receive path plus one empty
                  program run per received buffer
  lean-server-side grpcwall attached on the server side only (issue 11): the
                  service names nghttpd's cgroup, the client is known by its
                  address; every received buffer is walked by the sk_skb verdict
HEADERS-block cost per byte: grpcwall attached, one kept connection making
calls one after another (connload keep), the request's header block made
longer by PADS literal headers of 27 bytes (not indexed, never a repeat
block): BPF ns per call against block bytes, fitted by least squares (the
slope is the walker's cost per block byte, the intercept what a call costs
besides). Pads 0, 32, 128 (blocks of 86, 950, 3542 bytes).
Per configuration: req/s, ratio to lean-baseline, CPU per request (cpu.stat
usage_usec of the client and server cgroups, and the whole machine's busy time
from /proc/stat) and BPF ns per request (run_time_ns deltas of the attached
programs over requests, kernel.bpf_stats_enabled=1), all taken over a window
inside h2load's measuring period (after the warm-up, before the end).

Heavy server: a multi-threaded C++ gRPC server (tests/bench/server.cpp), 8x8:
  baseline        no grpcwall
  grpcwall        attached, the called method allowed
  grpcwall-large  10,000 identities x 100 methods loaded, same call path
  server-side     grpcwall attached on the server side only: the service
                  names the server's cgroup, the client is known by address
  haproxy         HAProxy as an h2c proxy in front of the server, path ACL
with ns per program run from bpf_stats, the time of `policy apply` for the
large policy, kernel memory per tracked connection, and throughput at 1, 100
and 1000 connections.

Prints tables, writes tests/bench/results/<UTC date>.json and a PNG plot.
Everything it creates (namespaces, cgroups, pins, processes) is removed on
exit, also when it fails.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

LEAN_CONFIGS = ["lean-baseline", "lean-floor", "lean-grpcwall", "lean-floor-server", "lean-server-side"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS_C, NS_S = "gwbench-c", "gwbench-s"
IP_C, IP_S = "10.250.240.1", "10.250.240.2"
PIN = "/sys/fs/bpf/grpcwall-bench"
FLOOR_PIN = "/sys/fs/bpf/grpcwall-bench-floor"  # the floor's programs and sockhash (bpftool)
PORT, HAPROXY_PORT, LEAN_PORT = 50051, 50061, 50052
METHOD = "/cloudcity.DoorManager/GetName"
ALLOWED = [METHOD, "/cloudcity.DoorManager/GetLocation", "/cloudcity.DoorManager/RequestMaintenance"]


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def cgroup_root():
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if typ == "cgroup2":
                return mnt
    sys.exit("bench: no cgroup v2 mount")


class Bench:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="gwbench.")
        self.cg = os.path.join(cgroup_root(), "grpcwall-bench")
        # the servers' cgroup, for their CPU time: outside self.cg, where grpcwall attaches
        self.cg_srv = os.path.join(cgroup_root(), "grpcwall-bench-server")
        self.procs = []
        self.attached = False
        self.floor_attached = False

    # ---------------- set-up and teardown ----------------
    def setup(self):
        self.teardown()
        os.makedirs(self.cg + "/client", exist_ok=True)
        os.makedirs(self.cg + "/ids", exist_ok=True)
        sh("ip", "netns", "add", NS_C)
        sh("ip", "netns", "add", NS_S)
        sh("ip", "link", "add", "gwb0", "netns", NS_C, "type", "veth", "peer", "name", "gwb1", "netns", NS_S)
        sh("ip", "-n", NS_C, "addr", "add", IP_C + "/24", "dev", "gwb0")
        sh("ip", "-n", NS_S, "addr", "add", IP_S + "/24", "dev", "gwb1")
        for ns, dev in ((NS_C, "gwb0"), (NS_S, "gwb1")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        os.makedirs(self.cg_srv, exist_ok=True)
        # in the servers' cgroup: the server-side configurations protect it there
        srv = subprocess.Popen(["ip", "netns", "exec", NS_S, self.a.server, f"0.0.0.0:{PORT}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=self.into_cgroup(self.cg_srv))
        self.procs.append(srv)
        self.wait_port(PORT)
        with open(os.path.join(self.tmp, "req.bin"), "wb") as f:
            f.write(b"\x00\x00\x00\x00\x02\x08\x01")  # gRPC frame: DoorRequest{door_id: 1}
        self.write_policies()
        self.start_lean_server()
        self.load_floor()

    def start_lean_server(self):
        """nghttpd over h2c: a POST to the method path gets the docroot file (a gRPC
        frame holding an empty message) and the trailer grpc-status: 0."""
        docroot = os.path.join(self.tmp, "docroot")
        os.makedirs(os.path.join(docroot, os.path.dirname(METHOD.lstrip("/"))), exist_ok=True)
        with open(os.path.join(docroot, METHOD.lstrip("/")), "wb") as f:
            f.write(b"\x00\x00\x00\x00\x00")  # gRPC frame: uncompressed, empty message
        mime = os.path.join(self.tmp, "mime.types")
        with open(mime, "w") as f:  # nghttpd types by what follows the last '.' of the path
            f.write("application/grpc " + METHOD.rsplit(".", 1)[1] + "\n")
        log = open(os.path.join(self.tmp, "nghttpd.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", NS_S, "nghttpd", "--no-tls", "-a", IP_S, "-d", docroot,
                              "--mime-types-file", mime, "--trailer", "grpc-status: 0", str(LEAN_PORT)],
                             stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.into_cgroup(self.cg_srv))
        self.procs.append(p)
        self.wait_port(LEAN_PORT)
        self.lean_server = sh("nghttpd", "--version").stdout.strip()

    def load_floor(self):
        """Compile tests/bench/floor.bpf.c, load it under FLOOR_PIN and attach its sk_msg
        program to its sockhash; the sockops program is attached per measurement."""
        obj = os.path.join(self.tmp, "floor.bpf.o")
        multiarch = sh("gcc", "-dumpmachine").stdout.strip()
        sh(os.environ.get("CLANG", "clang"), "-g", "-O2", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3",
           f"-I/usr/include/{multiarch}", f"-DFLOOR_PORT={LEAN_PORT}",
           "-c", os.path.join(ROOT, "tests", "bench", "floor.bpf.c"), "-o", obj)
        sh("bpftool", "prog", "loadall", obj, FLOOR_PIN, "pinmaps", FLOOR_PIN + "/maps")
        sh("bpftool", "prog", "attach", "pinned", FLOOR_PIN + "/floor_sk_msg", "msg_verdict",
           "pinned", FLOOR_PIN + "/maps/floor_sockhash")
        sh("bpftool", "prog", "attach", "pinned", FLOOR_PIN + "/floor_sk_skb", "stream_verdict",
           "pinned", FLOOR_PIN + "/maps/floor_srv_sockhash")

    # (cgroup, sockops program) of each floor: the client's, the server's
    def floor_at(self, server):
        return (self.cg_srv, "floor_sockops_srv") if server else (self.cg + "/client", "floor_sockops")

    def attach_floor(self, server=False):
        cg, prog = self.floor_at(server)
        sh("bpftool", "cgroup", "attach", cg, "sock_ops", "pinned", f"{FLOOR_PIN}/{prog}")
        self.floor_attached = "server" if server else "client"

    def detach_floor(self):
        if self.floor_attached:
            cg, prog = self.floor_at(self.floor_attached == "server")
            sh("bpftool", "cgroup", "detach", cg, "sock_ops", "pinned", f"{FLOOR_PIN}/{prog}")
            self.floor_attached = False

    def floor_prog_ids(self, server=False):
        names = {"sockops": "floor_sockops_srv", "sk_skb": "floor_sk_skb"} if server else \
            {"sockops": "floor_sockops", "sk_msg": "floor_sk_msg"}
        return {k: json.loads(sh("bpftool", "prog", "show", "pinned", f"{FLOOR_PIN}/{v}", "--json").stdout)["id"]
                for k, v in names.items()}

    @staticmethod
    def into_cgroup(cg):
        def f():
            with open(f"{cg}/cgroup.procs", "w") as out:
                out.write(str(os.getpid()))
        return f

    def teardown(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []
        subprocess.run([self.a.grpcwall, "detach", "--pin-dir", PIN], capture_output=True)
        if os.path.exists(FLOOR_PIN):  # the floor: bpftool pins only, none of grpcwall's
            for server in (False, True):
                cg, prog = self.floor_at(server)
                subprocess.run(["bpftool", "cgroup", "detach", cg, "sock_ops", "pinned", f"{FLOOR_PIN}/{prog}"],
                               capture_output=True)
            subprocess.run(["bpftool", "prog", "detach", "pinned", FLOOR_PIN + "/floor_sk_msg", "msg_verdict",
                            "pinned", FLOOR_PIN + "/maps/floor_sockhash"], capture_output=True)
            subprocess.run(["bpftool", "prog", "detach", "pinned", FLOOR_PIN + "/floor_sk_skb", "stream_verdict",
                            "pinned", FLOOR_PIN + "/maps/floor_srv_sockhash"], capture_output=True)
            shutil.rmtree(FLOOR_PIN, ignore_errors=True)
        self.floor_attached = False
        try:  # the fallback helper's log (attach starts the helper; it idles here)
            os.remove("/run/grpcwall/" + PIN.lstrip("/").replace("/", "_") + ".log")
        except FileNotFoundError:
            pass
        for ns in (NS_C, NS_S):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for cg in (self.cg, self.cg_srv):
            if not os.path.isdir(cg):
                continue
            for dirpath, dirnames, _ in os.walk(cg, topdown=False):
                for _ in range(50):  # a killed process leaves its cgroup a moment later
                    try:
                        os.rmdir(dirpath)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"], capture_output=True)

    def wait_port(self, port):
        for _ in range(100):
            out = sh("ip", "netns", "exec", NS_S, "ss", "-ltn", f"sport = :{port}").stdout
            if "LISTEN" in out:
                return
            time.sleep(0.1)
        log = os.path.join(self.tmp, {HAPROXY_PORT: "haproxy.log", LEAN_PORT: "nghttpd.log"}.get(port, "-"))
        detail = open(log).read() if os.path.exists(log) else ""
        sys.exit(f"bench: nothing listens on {port}\n{detail}")

    def write_policies(self):
        def one_rule(name, ident, ident_def, service, service_def):
            """a policy file of one rule: ident may call the ALLOWED methods of service"""
            path = os.path.join(self.tmp, name)
            with open(path, "w") as f:
                f.write(f"identities:\n  {ident}: {{ {ident_def} }}\n"
                        f"services:\n  {service}: {{ {service_def} }}\n"
                        f"rules:\n  - from: {ident}\n    to: {service}\n    allow:\n"
                        + "".join(f"      - {m}\n" for m in ALLOWED))
            return path
        client = f"cgroup: {self.cg}/client"
        small = one_rule("small.yaml", "bench-client", client, "door-manager", f"port: {PORT}, cidrs: [{IP_S}/32]")
        # the same rule, for the lean server's port
        self.lean_policy = one_rule("lean.yaml", "bench-client", client, "lean-door",
                                    f"port: {LEAN_PORT}, cidrs: [{IP_S}/32]")
        # the same rule, enforced where nghttpd, and where the C++ server, accepts
        remote = f"cidrs: [{IP_C}/32]"
        self.lean_server_policy = one_rule("lean-server.yaml", "bench-remote", remote, "lean-door",
                                           f"port: {LEAN_PORT}, cgroup: {self.cg_srv}")
        self.server_side_policy = one_rule("server-side.yaml", "bench-remote", remote, "door-manager",
                                           f"port: {PORT}, cgroup: {self.cg_srv}")
        n_ids, n_methods = self.a.large_identities, self.a.large_methods
        t0 = time.monotonic()
        for i in range(n_ids):
            os.makedirs(f"{self.cg}/ids/i{i}", exist_ok=True)
        self.cgroup_create_s = time.monotonic() - t0
        methods = ALLOWED + [f"/bench.Load/Method{j}" for j in range(n_methods - len(ALLOWED))]
        large = os.path.join(self.tmp, "large.yaml")
        with open(large, "w") as f:
            f.write("identities:\n")
            f.write(f"  bench-client: {{ cgroup: {self.cg}/client }}\n")
            for i in range(n_ids - 1):
                f.write(f"  id{i}: {{ cgroup: {self.cg}/ids/i{i} }}\n")
            f.write(f"services:\n  door-manager: {{ port: {PORT}, cidrs: [{IP_S}/32] }}\n")
            f.write("rules:\n")
            f.write("  - from: bench-client\n    to: door-manager\n    allow: &methods\n")
            f.write("".join(f"      - {m}\n" for m in methods))
            for i in range(n_ids - 1):
                f.write(f"  - {{ from: id{i}, to: door-manager, allow: *methods }}\n")
        self.small, self.large = small, large
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    maxconn 4000
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend grpc
    bind {IP_S}:{HAPROXY_PORT} proto h2
    acl allowed path {' '.join(ALLOWED)}
    http-request deny deny_status 403 unless allowed
    default_backend door
backend door
    server s1 127.0.0.1:{PORT} proto h2
""")
        self.haproxy_cfg = cfg

    # ---------------- configurations ----------------
    def attach(self, policy, cgroup=None):
        t0 = time.monotonic()
        sh(self.a.grpcwall, "attach", "--cgroup", cgroup or self.cg, "--pin-dir", PIN, policy)
        self.attached = True
        return time.monotonic() - t0

    def apply(self, policy):
        t0 = time.monotonic()
        sh(self.a.grpcwall, "policy", "apply", "--pin-dir", PIN, policy)
        return time.monotonic() - t0

    def detach(self):
        if self.attached:
            sh(self.a.grpcwall, "detach", "--pin-dir", PIN)
            self.attached = False

    def start_haproxy(self):
        log = open(os.path.join(self.tmp, "haproxy.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", NS_S, "haproxy", "-db", "-f", self.haproxy_cfg],
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.wait_port(HAPROXY_PORT)
        return p

    def stop(self, p):
        p.terminate()
        p.wait(5)
        self.procs.remove(p)

    def prog_stats(self):
        """{name: (run_time_ns, run_cnt)} of the grpcwall programs attached now."""
        if not self.attached:
            return {}
        st = json.loads(sh(self.a.grpcwall, "status", "--pin-dir", PIN, "--json").stdout)
        out = {}
        for name, pid in st["programs"].items():
            info = json.loads(sh("bpftool", "prog", "show", "id", str(pid), "--json").stdout)
            out[name] = (info.get("run_time_ns", 0), info.get("run_cnt", 0))
        return out

    # ---------------- load ----------------
    def h2load_start(self, port, conns, streams, duration, warmup, log=None):
        """h2load in the client namespace and cgroup, in the background."""
        cmd = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-D", str(duration),
               "--warm-up-time", str(warmup), "-d", os.path.join(self.tmp, "req.bin"),
               "-H", "content-type: application/grpc", "-H", "te: trailers",
               f"http://{IP_S}:{port}{METHOD}"]
        if log:
            cmd[1:1] = ["--log-file", log]

        return self.client_start(cmd)

    def client_start(self, cmd):
        """A load client in the client namespace and cgroup, in the background."""
        def in_client_cgroup():
            self.into_cgroup(self.cg + "/client")()
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000 connections need > 1024

        p = subprocess.Popen(["ip", "netns", "exec", NS_C] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=in_client_cgroup)
        self.procs.append(p)
        return p

    def client_wait(self, p, timeout):
        try:
            return p.communicate(timeout=timeout)
        finally:
            self.procs.remove(p)

    def connload_start(self, port, workers, duration, warmup):
        """tests/bench/connload.c: `workers` clients, each a new connection per call."""
        return self.client_start([self.a.connload, IP_S, str(port), METHOD, str(workers), str(duration), str(warmup)])

    def connload_finish(self, p, timeout):
        out, err = self.client_wait(p, timeout)
        m = re.search(r"calls (\d+) failed (\d+) seconds ([\d.]+) block (\d+)", out)
        if not m or p.returncode:
            sys.exit(f"bench: connload failed:\n{out}\n{err}")
        return {"rps": int(m.group(1)) / float(m.group(3)), "succeeded": int(m.group(1)), "failed": int(m.group(2)),
                "block_bytes": int(m.group(4))}

    def h2load_finish(self, p, timeout):
        """Waits for h2load; its summary as {rps, succeeded, failed, mean_us}."""
        out, err = self.client_wait(p, timeout)
        m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
        req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
        if not m or not req:
            sys.exit(f"bench: h2load failed:\n{out}\n{err}")
        res = {"rps": float(m.group(1)), "succeeded": int(req.group(4)), "failed": int(req.group(5)) + int(req.group(6))}
        if mean:
            res["mean_us"] = round(float(mean.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[mean.group(2)], 1)
        return res

    def h2load(self, port, conns, streams, duration, warmup):
        log = os.path.join(self.tmp, "h2load.log")
        if os.path.exists(log):
            os.unlink(log)
        p = self.h2load_start(port, conns, streams, duration, warmup, log=log)
        res = self.h2load_finish(p, duration + warmup + 120)
        lat = []
        with open(log) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]))
        lat.sort()

        def pct(p):
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0

        return {"rps": res["rps"], "succeeded": res["succeeded"], "failed": res["failed"],
                "p50_us": pct(50), "p99_us": pct(99), "p999_us": pct(99.9)}

    def measure(self, name, port):
        before = self.prog_stats()
        res = self.h2load(port, self.a.conns, self.a.streams, self.a.duration, self.a.warmup)
        after = self.prog_stats()
        res["bpf_ns_per_run"] = {}
        for prog, (t1, c1) in after.items():
            t0, c0 = before.get(prog, (0, 0))
            if c1 > c0:
                res["bpf_ns_per_run"][prog] = round((t1 - t0) / (c1 - c0), 1)
                res.setdefault("bpf_runs", {})[prog] = c1 - c0
        print(f"  {name:15s} {res['rps']:10.0f} req/s  p50 {res['p50_us']:6d} us  p99 {res['p99_us']:6d} us"
              f"  p99.9 {res['p999_us']:6d} us  bpf {res['bpf_ns_per_run']}", flush=True)
        return res

    # ---------------- the lean server: baseline, floor, grpcwall ----------------
    def snapshot(self, prog_fds):
        """Counters at one instant: the client and server cgroups' CPU (usec), the
        machine's busy CPU (usec, /proc/stat) and {program: (run_time_ns, run_cnt)}.
        Cheap (file reads only): it runs inside the measuring window."""
        progs = {}
        for name, fd in prog_fds.items():
            with open(f"/proc/self/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
            progs[name] = (int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0)))
        cg_usec = 0
        for cg in (self.cg + "/client", self.cg_srv):
            with open(cg + "/cpu.stat") as f:
                cg_usec += int(f.readline().split()[1])  # usage_usec
        with open("/proc/stat") as f:
            # cpu  user nice system idle iowait irq softirq ...
            v = [int(x) for x in f.readline().split()[1:8]]
        busy_usec = (v[0] + v[1] + v[2] + v[5] + v[6]) * 1e6 / os.sysconf("SC_CLK_TCK")
        return {"t": time.monotonic(), "cg_usec": cg_usec, "busy_usec": busy_usec, "progs": progs}

    def measure_lean(self, name, conns, streams, pads=None):
        a = self.a
        if name in ("lean-grpcwall", "lean-server-side"):
            ids = json.loads(sh(self.a.grpcwall, "status", "--pin-dir", PIN, "--json").stdout)["programs"]
        elif name in ("lean-floor", "lean-floor-server"):
            ids = self.floor_prog_ids(server=name == "lean-floor-server")
        else:
            ids = {}
        fds = {name: prog_fd_by_id(pid) for name, pid in ids.items()}
        try:
            if pads is not None:  # one kept connection, calls one after another, a longer block
                p = self.client_start([a.connload, IP_S, str(LEAN_PORT), METHOD, "1", str(a.lean_duration),
                                       str(a.lean_warmup), "keep", str(pads)])
            elif streams:
                p = self.h2load_start(LEAN_PORT, conns, streams, a.lean_duration, a.lean_warmup)
            else:  # one connection per request, `conns` clients at a time
                p = self.connload_start(LEAN_PORT, conns, a.lean_duration, a.lean_warmup)
            # the window: inside h2load's measuring period, clear of connecting, warm-up and the end
            margin = min(0.25, a.lean_duration / 4)
            time.sleep(a.lean_warmup + margin)
            s0 = self.snapshot(fds)
            time.sleep(a.lean_duration - 2 * margin)
            s1 = self.snapshot(fds)
        finally:
            for fd in fds.values():
                os.close(fd)
        if streams and pads is None:
            res = self.h2load_finish(p, a.lean_duration + a.lean_warmup + 120)
        else:
            res = self.connload_finish(p, a.lean_duration + a.lean_warmup + 120)
        window = s1["t"] - s0["t"]
        reqs = res["rps"] * window
        res["window_s"] = round(window, 3)
        res["cpu_us_per_req"] = round((s1["cg_usec"] - s0["cg_usec"]) / reqs, 3) if reqs else None
        res["machine_cpu_us_per_req"] = round((s1["busy_usec"] - s0["busy_usec"]) / reqs, 3) if reqs else None
        res["bpf_ns_per_req"], res["bpf_runs_per_req"], res["bpf_ns_per_run"] = None, {}, {}
        if ids:
            ns = 0
            for prog, (t1, c1) in s1["progs"].items():
                t0, c0 = s0["progs"].get(prog, (0, 0))
                ns += t1 - t0
                res["bpf_runs_per_req"][prog] = round((c1 - c0) / reqs, 3) if reqs else None
                if c1 > c0:
                    res["bpf_ns_per_run"][prog] = round((t1 - t0) / (c1 - c0), 1)
            res["bpf_ns_per_req"] = round(ns / reqs, 1) if reqs else None
        bpf = f"{res['bpf_ns_per_req']:7.1f}" if res["bpf_ns_per_req"] is not None else "      -"
        label = f"keep+{pads}" if pads is not None else load_label(conns, streams)
        print(f"  {label:5s} {name:17s} {res['rps']:10.0f} req/s  cpu {res['cpu_us_per_req']:6.2f} us/req"
              f" (machine {res['machine_cpu_us_per_req']:6.2f})  bpf {bpf} ns/req  runs/req {res['bpf_runs_per_req']}"
              f"  ns/run {res['bpf_ns_per_run']}",
              flush=True)
        return res

    def run_lean(self):
        a = self.a
        samples = {load: {c: [] for c in LEAN_CONFIGS} for load in a.lean_loads}
        headers = {pads: [] for pads in a.header_pads}
        for r in range(a.lean_rounds):
            print(f"lean server, round {r + 1}/{a.lean_rounds}", flush=True)
            for conns, streams in a.lean_loads:
                for cfg in LEAN_CONFIGS:
                    if cfg == "lean-floor":
                        self.attach_floor()
                    elif cfg == "lean-floor-server":
                        self.attach_floor(server=True)
                    elif cfg == "lean-grpcwall":
                        self.attach(self.lean_policy)
                    elif cfg == "lean-server-side":
                        self.attach(self.lean_server_policy, cgroup=self.cg_srv)
                    try:
                        samples[(conns, streams)][cfg].append(self.measure_lean(cfg, conns, streams))
                    finally:
                        self.detach_floor()
                        self.detach()
            for pads in a.header_pads:
                self.attach(self.lean_policy)
                try:
                    headers[pads].append(self.measure_lean("lean-grpcwall", 1, 1, pads))
                finally:
                    self.detach()
        samples["headers"] = headers
        return samples

    # ---------------- the run ----------------
    def run(self):
        a = self.a
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
        lean = self.run_lean()
        if a.lean_only:
            self.report_lean(lean)
            return None
        configs = ["baseline", "grpcwall", "grpcwall-large", "server-side", "haproxy"]
        samples = {c: [] for c in configs}
        apply_times = []
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}", flush=True)
            self.detach()
            samples["baseline"].append(self.measure("baseline", PORT))
            self.attach(self.small)
            samples["grpcwall"].append(self.measure("grpcwall", PORT))
            apply_times.append(self.apply(self.large))
            print(f"  policy apply {a.large_identities} x {a.large_methods}: {apply_times[-1]:.2f} s", flush=True)
            samples["grpcwall-large"].append(self.measure("grpcwall-large", PORT))
            self.detach()
            self.attach(self.server_side_policy, cgroup=self.cg_srv)
            samples["server-side"].append(self.measure("server-side", PORT))
            self.detach()
            hp = self.start_haproxy()
            samples["haproxy"].append(self.measure("haproxy", HAPROXY_PORT))
            self.stop(hp)

        # kernel memory per tracked connection
        self.attach(self.small)
        conns = json.loads(sh("bpftool", "map", "show", "pinned", f"{PIN}/gw_conns", "--json").stdout)
        sockhash = json.loads(sh("bpftool", "map", "show", "pinned", f"{PIN}/gw_sockhash", "--json").stdout)
        memory = {"sk_storage_value_bytes": conns["bytes_value"],
                  "sockhash_entry_bytes": sockhash["bytes_key"] + sockhash["bytes_value"],
                  "sockhash_memlock_bytes": int(sockhash.get("bytes_memlock", 0)),
                  "sockhash_max_entries": sockhash["max_entries"]}

        # scale: connections, baseline vs grpcwall, interleaved
        scale = []
        for c in a.scale:
            row = {"connections": c}
            for cfg in ("baseline", "grpcwall"):
                if cfg == "baseline":
                    self.detach()
                else:
                    self.attach(self.small)
                res = self.h2load(PORT, c, 1, a.scale_duration, 1)
                row[cfg] = {"rps": res["rps"], "p99_us": res["p99_us"], "failed": res["failed"]}
            row["ratio"] = round(row["grpcwall"]["rps"] / row["baseline"]["rps"], 4) if row["baseline"]["rps"] else None
            print(f"  scale c={c:5d}: baseline {row['baseline']['rps']:9.0f} req/s, grpcwall {row['grpcwall']['rps']:9.0f}"
                  f" req/s (x{row['ratio']})", flush=True)
            scale.append(row)
        self.detach()
        return self.report(configs, samples, apply_times, memory, scale, lean)

    def report_headers(self, headers):
        """HEADERS-block cost per byte: least squares of BPF ns per call on block bytes."""
        def med(xs):
            xs = [x for x in xs if x is not None]
            return statistics.median(xs) if xs else None
        rows = []
        for pads, s in headers.items():
            rows.append({"pads": pads, "block_bytes": s[0]["block_bytes"] if s else None,
                         "rps": round(med([x["rps"] for x in s]), 1) if s else None,
                         "bpf_ns_per_req": round(med([x["bpf_ns_per_req"] for x in s]), 1) if s else None,
                         "sk_msg_ns_per_run": round(med([x["bpf_ns_per_run"].get("sk_msg") for x in s]), 1) if s else None,
                         "failed": sum(x["failed"] for x in s)})
        pts = [(r["block_bytes"], r["bpf_ns_per_req"]) for r in rows if r["bpf_ns_per_req"] is not None]
        slope = icept = None
        if len(pts) >= 2 and len({x for x, _ in pts}) >= 2:
            mx, my = statistics.mean(x for x, _ in pts), statistics.mean(y for _, y in pts)
            slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
            icept = my - slope * mx
        print()
        print("HEADERS-block cost (grpcwall, one kept connection, calls one after another, 27-byte literal headers added)")
        print(f"{'pads':>5s} {'block B':>8s} {'req/s':>9s} {'BPF ns/req':>10s} {'sk_msg ns/run':>13s}")
        for r in rows:
            print(f"{r['pads']:5d} {r['block_bytes']:8d} {r['rps']:9.0f} {r['bpf_ns_per_req']:10.1f} {r['sk_msg_ns_per_run']:13.1f}")
        if slope is not None:
            print(f"fit: {slope:.2f} ns per block byte ({slope * 27:.0f} ns per 27-byte header), {icept:.0f} ns per call besides")
        return {"what": "BPF ns per call against HPACK block bytes; one kept connection; each pad a 27-byte literal"
                        " header without indexing (x-pad-NN: 16 bytes)",
                "rows": rows, "ns_per_block_byte": round(slope, 3) if slope is not None else None,
                "ns_per_call_besides": round(icept, 1) if icept is not None else None}

    def report_lean(self, samples):
        a = self.a
        headers = samples.pop("headers", {})
        def med(xs):
            xs = [x for x in xs if x is not None]
            return statistics.median(xs) if xs else None
        def rnd(x, n):
            return round(x, n) if x is not None else None
        loads = []
        for (conns, streams), by_cfg in samples.items():
            base = by_cfg["lean-baseline"]
            base_rps = med([x["rps"] for x in base])
            base_cpu = med([x["cpu_us_per_req"] for x in base])
            rows = []
            for cfg in LEAN_CONFIGS:
                s = by_cfg[cfg]
                rps, cpu = med([x["rps"] for x in s]), med([x["cpu_us_per_req"] for x in s])
                progs = sorted({p for x in s for p in x["bpf_runs_per_req"]})
                rows.append({
                    "config": cfg, "rounds": len(s),
                    "rps": round(rps, 1),
                    "ratio_to_baseline": rnd(rps / base_rps, 4) if base_rps else None,
                    # the same ratio round by round (interleaved rounds pair up), and its median:
                    # what the configuration costs when the machine's own speed drifts between rounds
                    "ratio_per_round": [rnd(x["rps"] / b["rps"], 4) for x, b in zip(s, base) if b["rps"]],
                    "ratio_round_median": rnd(med([x["rps"] / b["rps"] for x, b in zip(s, base) if b["rps"]]), 4),
                    "cpu_us_per_req": rnd(cpu, 3),
                    "cpu_ratio_to_baseline": rnd(cpu / base_cpu, 4) if cpu and base_cpu else None,
                    "machine_cpu_us_per_req": rnd(med([x["machine_cpu_us_per_req"] for x in s]), 3),
                    "bpf_ns_per_req": rnd(med([x["bpf_ns_per_req"] for x in s]), 1),
                    "bpf_runs_per_req": {p: rnd(med([x["bpf_runs_per_req"].get(p) for x in s]), 3) for p in progs},
                    "bpf_ns_per_run": {p: rnd(med([x["bpf_ns_per_run"].get(p) for x in s]), 1) for p in progs
                                       if any(p in x["bpf_ns_per_run"] for x in s)},
                    "mean_us": rnd(med([x.get("mean_us") for x in s]), 1),
                    "failed": sum(x["failed"] for x in s),
                    "samples_rps": [x["rps"] for x in s],
                })
            loads.append({"connections": conns, "streams_per_connection": streams,
                          "one_connection_per_request": streams == 0, "configurations": rows})
        print()
        print(f"lean server ({self.lean_server}), medians of {a.lean_rounds} round(s), {a.lean_duration} s each;"
              " CPU = client+server cgroups (machine-wide in brackets)")
        print("x base: median req/s over the baseline's; rounds: the median of each round's own ratio")
        print(f"{'load':5s} {'config':17s} {'req/s':>9s} {'x base':>7s} {'rounds':>7s} {'CPU us/req':>18s} {'x base':>7s}"
              f" {'BPF ns/req':>10s}  BPF runs/req")
        for l in loads:
            for r in l["configurations"]:
                cpu = f"{r['cpu_us_per_req']:.2f} ({r['machine_cpu_us_per_req']:.2f})"
                bpf = f"{r['bpf_ns_per_req']:10.1f}" if r["bpf_ns_per_req"] is not None else f"{'-':>10s}"
                runs = ", ".join(f"{k} {v}" for k, v in r["bpf_runs_per_req"].items()) or "-"
                print(f"{load_label(l['connections'], l['streams_per_connection']):5s} {r['config']:17s} {r['rps']:9.0f}"
                      f" {r['ratio_to_baseline']:7.3f} {r['ratio_round_median']:7.3f} {cpu:>18s} {r['cpu_ratio_to_baseline']:7.3f} {bpf}  {runs}")
        header_cost = self.report_headers(headers) if headers else None
        return {"server": self.lean_server, "port": LEAN_PORT, "method": METHOD, "rounds": a.lean_rounds,
                "header_block_cost": header_cost,
                "duration_s": a.lean_duration, "warmup_s": a.lean_warmup,
                "cpu": "usage_usec of the client and server cgroups (cpu_us_per_req); user+nice+system+irq+softirq"
                       " of /proc/stat (machine_cpu_us_per_req); over a window inside h2load's measuring period",
                "loads": loads}

    def report(self, configs, samples, apply_times, memory, scale, lean_samples):
        a = self.a
        def med(xs):
            if not xs:
                return 0
            m = statistics.median(xs)
            return int(round(m)) if all(isinstance(x, int) for x in xs) else m
        rows = []
        base = med([s["rps"] for s in samples["baseline"]])
        base_p99 = med([s["p99_us"] for s in samples["baseline"]])
        for c in configs:
            s = samples[c]
            progs = sorted({p for x in s for p in x.get("bpf_ns_per_run", {})})
            row = {"config": c, "rounds": len(s),
                   "rps": round(med([x["rps"] for x in s]), 1),
                   "p50_us": med([x["p50_us"] for x in s]),
                   "p99_us": med([x["p99_us"] for x in s]),
                   "p999_us": med([x["p999_us"] for x in s]),
                   "ratio_to_baseline": round(med([x["rps"] for x in s]) / base, 4) if base else None,
                   "added_p99_us": med([x["p99_us"] for x in s]) - base_p99,
                   "failed": sum(x["failed"] for x in s),
                   "bpf_ns_per_run": {p: med([x["bpf_ns_per_run"][p] for x in s if p in x.get("bpf_ns_per_run", {})])
                                      for p in progs},
                   "samples_rps": [x["rps"] for x in s]}
            rows.append(row)
        now = datetime.datetime.now(datetime.timezone.utc)
        result = {
            "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "rounds": a.rounds,
            "load": {"tool": "h2load", "connections": a.conns, "streams_per_connection": a.streams,
                     "duration_s": a.duration, "warmup_s": a.warmup, "method": METHOD},
            "large_policy": {"identities": a.large_identities, "methods": a.large_methods,
                             "apply_s_median": round(med(apply_times), 3), "apply_s": [round(x, 3) for x in apply_times]},
            "configurations": rows,
            "memory_per_connection": memory,
            "scale": scale,
            "quick": a.quick,
        }
        result["lean"] = self.report_lean(lean_samples)
        print()
        print(f"C++ gRPC server, {a.conns}x{a.streams}, medians of {a.rounds} round(s), {a.duration} s each")
        print()
        print(f"{'config':15s} {'req/s':>10s} {'x base':>7s} {'p50 us':>7s} {'p99 us':>7s} {'p99.9 us':>8s} {'+p99 us':>8s}  bpf ns/run")
        for r in rows:
            bpf = ", ".join(f"{k} {v}" for k, v in r["bpf_ns_per_run"].items()) or "-"
            print(f"{r['config']:15s} {r['rps']:10.0f} {r['ratio_to_baseline']:7.3f} {r['p50_us']:7d} {r['p99_us']:7d}"
                  f" {r['p999_us']:8d} {r['added_p99_us']:8d}  {bpf}")
        print(f"policy apply, {a.large_identities} identities x {a.large_methods} methods: "
              f"{result['large_policy']['apply_s_median']} s (median)")
        print(f"kernel memory per tracked connection: {memory['sk_storage_value_bytes']} B sk_storage value"
              f" + {memory['sockhash_entry_bytes']} B sockhash entry")
        outdir = a.out or os.path.join(ROOT, "tests", "bench", "results")
        os.makedirs(outdir, exist_ok=True)
        stem = os.path.join(outdir, now.strftime("%Y-%m-%dT%H%M%SZ") + ("-quick" if a.quick else ""))
        with open(stem + ".json", "w") as f:
            json.dump(result, f, indent=2)
        plot(result, stem + ".png", self.tmp)
        print(f"wrote {stem}.json and {stem}.png")
        return result


def load_label(conns, streams):
    """4x16: connections x streams; 4new: 4 clients, a new connection per request"""
    return f"{conns}x{streams}" if streams else f"{conns}new"


def prog_fd_by_id(prog_id):
    """An fd for a loaded BPF program (bpf(BPF_PROG_GET_FD_BY_ID)): its
    /proc/self/fdinfo shows run_time_ns and run_cnt without running bpftool."""
    nr = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
    if nr is None:
        sys.exit(f"bench: bpf syscall number unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(struct.pack("=I", prog_id), 128)  # union bpf_attr: prog_id first
    fd = libc.syscall(nr, 13, attr, ctypes.c_uint(128))  # 13: BPF_PROG_GET_FD_BY_ID
    if fd < 0:
        err = ctypes.get_errno()
        sys.exit(f"bench: no fd for BPF program {prog_id}: {os.strerror(err)}")
    return fd


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def plot(result, png, tmp):
    if not shutil.which("gnuplot"):
        print("bench: gnuplot missing, no plot", file=sys.stderr)
        return
    data = os.path.join(tmp, "plot.dat")
    with open(data, "w") as f:
        for r in result["configurations"]:
            f.write(f"{r['config']} {r['rps']} {r['p99_us']}\n")
    lean = os.path.join(tmp, "lean.dat")
    with open(lean, "w") as f:
        for l in result["lean"]["loads"]:
            for r in l["configurations"]:
                f.write(f"{load_label(l['connections'], l['streams_per_connection'])}-{r['config'].replace('lean-', '')}"
                        f" {r['ratio_to_baseline'] or 0} {r['cpu_ratio_to_baseline'] or 0}\n")
    script = f"""set terminal pngcairo size 1000,800 font ",10"
set output '{png}'
set multiplot layout 2,2 title "grpcwall, {result['date']}, {result['cpus']} CPUs, kernel {result['kernel']}"
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -20
set bmargin 4
set title "throughput (req/s, median)"
plot '{data}' using 0:2:xtic(1) with boxes notitle
set title "p99 latency (us, median)"
plot '{data}' using 0:3:xtic(1) with boxes notitle lc rgb "#c04040"
set title "lean server: throughput x lean-baseline (median)"
plot '{lean}' using 0:2:xtic(1) with boxes notitle lc rgb "#4080c0"
set title "lean server: CPU per request x lean-baseline (median)"
plot '{lean}' using 0:3:xtic(1) with boxes notitle lc rgb "#40a060"
unset multiplot
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode:
        # pngcairo may be absent in gnuplot-nox: fall back to the png terminal
        script = script.replace("pngcairo", "png")
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grpcwall", required=True)
    ap.add_argument("--server", required=True, help="the C++ bench server binary")
    ap.add_argument("--connload", required=True, help="tests/bench/connload.c built (one connection per request)")
    ap.add_argument("--quick", action="store_true", help="short version: about three minutes")
    ap.add_argument("--smoke", action="store_true", help="seconds-long: checks the harness only (tests)")
    ap.add_argument("--out", help="results directory (default tests/bench/results)")
    ap.add_argument("--lean-only", action="store_true",
                    help="only the lean-server part (for profiling the datapath); writes no results")
    ap.add_argument("--lean-loads", dest="lean_loads_spec", help="loads of the lean part, e.g. 4x16,1x1,4new")
    ap.add_argument("--header-pads", dest="header_pads_spec", default="0,32,128",
                    help="HEADERS-block cost: 27-byte headers added per call, e.g. 0,32,128 ('' for none)")
    a = ap.parse_args()
    # connections x streams; streams 0: one connection per request, `connections` clients
    a.lean_loads = [(4, 16), (1, 1), (4, 0)]
    try:
        a.header_pads = [int(x) for x in a.header_pads_spec.split(",") if x.strip()]
    except ValueError:
        sys.exit(f"bench: --header-pads: '{a.header_pads_spec}' is not a list of numbers (0,32,128)")
    if any(p < 0 or p > 256 for p in a.header_pads):
        sys.exit("bench: --header-pads: each 0-256 (a 16 KiB frame holds the block)")
    if a.lean_loads_spec:
        a.lean_loads = []
        for spec in a.lean_loads_spec.split(","):
            m = re.fullmatch(r"(\d+)(?:x(\d+)|(new))", spec.strip())
            if not m:
                sys.exit(f"bench: --lean-loads: '{spec}' is not CxS (4x16) or Cnew (4new)")
            a.lean_loads.append((int(m.group(1)), int(m.group(2)) if m.group(2) else 0))
    if a.smoke:
        a.quick = True
        a.rounds, a.duration, a.warmup, a.conns, a.streams = 1, 1, 1, 2, 2
        a.large_identities, a.large_methods, a.scale, a.scale_duration = 50, 10, [1, 10], 1
        a.lean_rounds, a.lean_duration, a.lean_warmup = 1, 1, 1
    elif a.quick:
        a.rounds, a.duration, a.warmup, a.conns, a.streams = 1, 4, 1, 8, 8
        a.large_identities, a.large_methods, a.scale, a.scale_duration = 10000, 100, [1, 100, 1000], 2
        a.lean_rounds, a.lean_duration, a.lean_warmup = 3, 3, 1
    else:
        a.rounds, a.duration, a.warmup, a.conns, a.streams = 3, 10, 2, 8, 8
        a.large_identities, a.large_methods, a.scale, a.scale_duration = 10000, 100, [1, 100, 1000], 8
        a.lean_rounds, a.lean_duration, a.lean_warmup = 5, 10, 2
    if os.geteuid() != 0:
        sys.exit("bench: run as root (sudo make bench)")
    b = Bench(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        b.setup()
        b.run()
    finally:
        b.teardown()
        shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
