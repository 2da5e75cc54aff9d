#!/usr/bin/env python3
"""grpcwall benchmarks: what enforcement costs, against no policy and against
a userspace L7 proxy (HAProxy). `sudo make bench` / `sudo make bench-quick`.

Client (h2load, gRPC-framed unary POSTs) and server (C++ gRPC, no work per
call) live in their own network namespaces joined by a veth pair. The
configurations are measured in ONE run, interleaved (A B C D A B C D ...),
and medians over the rounds are reported:
  baseline        no grpcwall
  grpcwall        attached, the called method allowed
  grpcwall-large  10,000 identities x 100 methods loaded, same call path
  haproxy         HAProxy as an h2c proxy in front of the server, path ACL
With kernel.bpf_stats_enabled=1, run_time_ns / run_cnt of each grpcwall
program gives ns per invocation. Also: time of `policy apply` for the large
policy, kernel memory per tracked connection, throughput at 1, 100 and 1000
connections. Prints a table, writes tests/bench/results/<UTC date>.json and
a PNG plot. Everything it creates is removed on exit.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS_C, NS_S = "gwbench-c", "gwbench-s"
IP_C, IP_S = "10.250.240.1", "10.250.240.2"
PIN = "/sys/fs/bpf/grpcwall-bench"
PORT, HAPROXY_PORT = 50051, 50061
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
        self.procs = []
        self.attached = False

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
        srv = subprocess.Popen(["ip", "netns", "exec", NS_S, self.a.server, f"0.0.0.0:{PORT}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(srv)
        self.wait_port(PORT)
        with open(os.path.join(self.tmp, "req.bin"), "wb") as f:
            f.write(b"\x00\x00\x00\x00\x02\x08\x01")  # gRPC frame: DoorRequest{door_id: 1}
        self.write_policies()

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
        if os.path.isdir(self.cg):
            for dirpath, dirnames, _ in os.walk(self.cg, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"], capture_output=True)

    def wait_port(self, port):
        for _ in range(100):
            out = sh("ip", "netns", "exec", NS_S, "ss", "-ltn", f"sport = :{port}").stdout
            if "LISTEN" in out:
                return
            time.sleep(0.1)
        log = os.path.join(self.tmp, "haproxy.log")
        detail = open(log).read() if port == HAPROXY_PORT and os.path.exists(log) else ""
        sys.exit(f"bench: nothing listens on {port}\n{detail}")

    def write_policies(self):
        small = os.path.join(self.tmp, "small.yaml")
        with open(small, "w") as f:
            f.write(f"identities:\n  bench-client: {{ cgroup: {self.cg}/client }}\n"
                    f"services:\n  door-manager: {{ port: {PORT}, cidrs: [{IP_S}/32] }}\n"
                    "rules:\n  - from: bench-client\n    to: door-manager\n    allow:\n"
                    + "".join(f"      - {m}\n" for m in ALLOWED))
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
    def attach(self, policy):
        t0 = time.monotonic()
        sh(self.a.grpcwall, "attach", "--cgroup", self.cg, "--pin-dir", PIN, policy)
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
    def h2load(self, port, conns, streams, duration, warmup):
        log = os.path.join(self.tmp, "h2load.log")
        if os.path.exists(log):
            os.unlink(log)
        cmd = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-D", str(duration),
               "--warm-up-time", str(warmup), "--log-file", log, "-d", os.path.join(self.tmp, "req.bin"),
               "-H", "content-type: application/grpc", "-H", "te: trailers",
               f"http://{IP_S}:{port}{METHOD}"]

        def in_client_cgroup():
            with open(f"{self.cg}/client/cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000 connections need > 1024

        r = subprocess.run(["ip", "netns", "exec", NS_C] + cmd, capture_output=True, text=True,
                           preexec_fn=in_client_cgroup, timeout=duration + warmup + 120)
        out = r.stdout
        m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
        req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        if not m or not req:
            sys.exit(f"bench: h2load failed:\n{out}\n{r.stderr}")
        lat = []
        with open(log) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]))
        lat.sort()

        def pct(p):
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0

        return {"rps": float(m.group(1)), "succeeded": int(req.group(4)), "failed": int(req.group(5)) + int(req.group(6)),
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

    # ---------------- the run ----------------
    def run(self):
        a = self.a
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
        configs = ["baseline", "grpcwall", "grpcwall-large", "haproxy"]
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
        return self.report(configs, samples, apply_times, memory, scale)

    def report(self, configs, samples, apply_times, memory, scale):
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
    script = f"""set terminal pngcairo size 900,420 font ",10"
set output '{png}'
set multiplot layout 1,2 title "grpcwall, {result['date']}, {result['cpus']} CPUs, kernel {result['kernel']}"
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -20
set title "throughput (req/s, median)"
plot '{data}' using 0:2:xtic(1) with boxes notitle
set title "p99 latency (us, median)"
plot '{data}' using 0:3:xtic(1) with boxes notitle lc rgb "#c04040"
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
    ap.add_argument("--quick", action="store_true", help="short version: under two minutes")
    ap.add_argument("--smoke", action="store_true", help="seconds-long: checks the harness only (tests)")
    ap.add_argument("--out", help="results directory (default tests/bench/results)")
    a = ap.parse_args()
    if a.smoke:
        a.quick = True
        a.rounds, a.duration, a.warmup, a.conns, a.streams = 1, 1, 1, 2, 2
        a.large_identities, a.large_methods, a.scale, a.scale_duration = 50, 10, [1, 10], 1
    elif a.quick:
        a.rounds, a.duration, a.warmup, a.conns, a.streams = 1, 4, 1, 8, 8
        a.large_identities, a.large_methods, a.scale, a.scale_duration = 10000, 100, [1, 100, 1000], 2
    else:
        a.rounds, a.duration, a.warmup, a.conns, a.streams = 5, 10, 2, 8, 8
        a.large_identities, a.large_methods, a.scale, a.scale_duration = 10000, 100, [1, 100, 1000], 8
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
