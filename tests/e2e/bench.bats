#!/usr/bin/env bats
# The bench harness itself works: a seconds-long run produces a well-formed
# results file and plot. Never asserts a number is reached (this machine is
# shared and noisy): `sudo make bench` measures.

load helpers

setup() {
  [ "$(id -u)" -eq 0 ] || need_skip "the bench needs root"
  ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
  [ -x "$ROOT/build/bench_server" ] || need_skip "build/bench_server not built (make build/bench_server)"
  [ -x "$ROOT/build/connload" ] || need_skip "build/connload not built (make build/connload)"
  command -v nghttpd >/dev/null || need_skip "nghttpd missing (nghttp2-server: scripts/install-deps.sh)"
}

teardown() {
  # bench.py removes its namespaces, cgroups and pins itself; make sure
  "$ROOT/build/grpcwall" detach --pin-dir /sys/fs/bpf/grpcwall-bench >/dev/null 2>&1 || true
  ip netns del gwbench-c 2>/dev/null || true
  ip netns del gwbench-s 2>/dev/null || true
  rm -rf /sys/fs/bpf/grpcwall-bench-floor
}

@test "bench harness: a smoke run writes a well-formed results JSON and a PNG plot" {
  run timeout 300 /usr/bin/python3 "$ROOT/tests/bench/bench.py" --smoke --grpcwall "$ROOT/build/grpcwall" \
    --server "$ROOT/build/bench_server" --connload "$ROOT/build/connload" --out "$BATS_TEST_TMPDIR/results"
  echo "$output"
  [ "$status" -eq 0 ]
  json=$(ls "$BATS_TEST_TMPDIR"/results/*.json)
  png=${json%.json}.png
  [ "$(head -c 4 "$png" | od -An -c | tr -d ' ')" = "211PNG" ]
  /usr/bin/python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("date", "kernel", "cpus", "rounds", "load", "large_policy", "configurations", "memory_per_connection", "scale"):
    assert k in r, k
names = [c["config"] for c in r["configurations"]]
assert names == ["baseline", "grpcwall", "grpcwall-large", "server-side", "haproxy"], names
for c in r["configurations"]:
    for k in ("rps", "p50_us", "p99_us", "p999_us", "ratio_to_baseline", "bpf_ns_per_run", "rounds"):
        assert k in c, (c["config"], k)
    assert c["rps"] > 0 and c["p50_us"] <= c["p99_us"] <= c["p999_us"], c
    assert c["failed"] == 0, c   # the called method is allowed everywhere
# grpcwall's programs ran (bpf_stats) where it was attached, and only there
assert set(r["configurations"][1]["bpf_ns_per_run"]) >= {"sk_msg"}, r["configurations"][1]
assert r["configurations"][0]["bpf_ns_per_run"] == {} and r["configurations"][4]["bpf_ns_per_run"] == {}
# the server side walked the C++ server's received calls: sk_skb ran, no sk_msg
assert "sk_skb" in r["configurations"][3]["bpf_ns_per_run"], r["configurations"][3]
assert "sk_msg" not in r["configurations"][3]["bpf_ns_per_run"], r["configurations"][3]
assert 0 < r["memory_per_connection"]["sk_storage_value_bytes"] <= 1024  # issue 10: at most 1 KiB
assert [s["connections"] for s in r["scale"]] == [1, 10]
# the lean server: baseline, floor and grpcwall side by side at 4x16, 1x1 and
# one connection per request
lean = r["lean"]
assert lean["server"].startswith("nghttpd"), lean["server"]
assert [(l["connections"], l["streams_per_connection"]) for l in lean["loads"]] == [(4, 16), (1, 1), (4, 0)]
assert [l["one_connection_per_request"] for l in lean["loads"]] == [False, False, True]
for l in lean["loads"]:
    rows = {c["config"]: c for c in l["configurations"]}
    assert list(rows) == ["lean-baseline", "lean-floor", "lean-grpcwall", "lean-floor-server",
                          "lean-server-side"], list(rows)
    for c in rows.values():
        assert c["rps"] > 0 and c["ratio_to_baseline"] > 0, c
        assert c["cpu_us_per_req"] > 0 and c["machine_cpu_us_per_req"] > 0 and c["cpu_ratio_to_baseline"] > 0, c
        assert c["failed"] == 0, c   # nghttpd answered every call (the method is allowed)
    assert rows["lean-baseline"]["ratio_to_baseline"] == 1.0
    assert rows["lean-baseline"]["ratio_round_median"] == 1.0
    for c in l["configurations"]:
        rr = sorted(c["ratio_per_round"])
        assert rr[0] <= c["ratio_round_median"] <= rr[-1], c
    # BPF time only where programs are attached, and the sk_msg program ran on the calls
    assert rows["lean-baseline"]["bpf_ns_per_req"] is None and rows["lean-baseline"]["bpf_runs_per_req"] == {}
    for cfg in ("lean-floor", "lean-grpcwall"):
        assert rows[cfg]["bpf_ns_per_req"] > 0, rows[cfg]
        assert rows[cfg]["bpf_runs_per_req"]["sk_msg"] > 0, rows[cfg]
    # on the server side (and its floor) the sk_skb verdict ran on the calls, no sk_msg
    for cfg in ("lean-floor-server", "lean-server-side"):
        assert rows[cfg]["bpf_runs_per_req"]["sk_skb"] > 0, rows[cfg]
        assert not rows[cfg]["bpf_runs_per_req"].get("sk_msg"), rows[cfg]
    if l["one_connection_per_request"]:  # sockops ran for every new connection
        for cfg in ("lean-floor", "lean-grpcwall"):
            assert rows[cfg]["bpf_runs_per_req"]["sockops"] >= 1, rows[cfg]
# HEADERS-block cost: longer blocks on one kept connection, a fitted cost per byte
hc = lean["header_block_cost"]
assert [x["pads"] for x in hc["rows"]] == [0, 32, 128], hc
b0 = hc["rows"][0]["block_bytes"]
assert 80 <= b0 <= 100 and [x["block_bytes"] - b0 for x in hc["rows"]] == [0, 32 * 27, 128 * 27], hc
for x in hc["rows"]:
    assert x["rps"] > 0 and x["failed"] == 0 and x["bpf_ns_per_req"] > 0 and x["sk_msg_ns_per_run"] > 0, x
assert hc["ns_per_block_byte"] is not None, hc
print("results well-formed")
PY
  # and it left nothing behind
  [ ! -e /sys/fs/bpf/grpcwall-bench ]
  [ -z "$(ip netns list | grep gwbench)" ]
  [ ! -e /sys/fs/bpf/grpcwall-bench-floor ]
  cgroot=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
  [ ! -e "$cgroot/grpcwall-bench" ] && [ ! -e "$cgroot/grpcwall-bench-server" ]
}
