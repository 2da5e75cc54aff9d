#!/usr/bin/env bash
# Cloud City on one machine: a DoorManager server in namespace cc-server
# (10.250.0.2), a public terminal and a door sensor in namespace cc-client
# (10.250.0.1), each workload in its own cgroup (cloudcity/terminal,
# cloudcity/sensor under the cgroup v2 root): exactly policies/cloudcity.yaml.
#   scripts/cloudcity.sh demo     the walkthrough (make demo)
# Everything it creates is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G=$ROOT/build/grpcwall
PY=/usr/bin/python3
PIN=/sys/fs/bpf/grpcwall-demo
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
CC=$CGROOT/cloudcity
export GW_PYGEN=$ROOT/build/py
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf "$ %s\n" "$*"; "$@" || { echo "cloudcity.sh: failed: $*" >&2; exit 1; }; }

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  "$G" detach --pin-dir "$PIN" >/dev/null 2>&1
  ip netns del cc-client 2>/dev/null
  ip netns del cc-server 2>/dev/null
  for d in terminal sensor door-manager; do [ -d "$CC/$d" ] && { xargs -r kill -9 < "$CC/$d/cgroup.procs"; rmdir "$CC/$d"; }; done
  rmdir "$CC" 2>/dev/null
}

setup() {
  [ "$(id -u)" -eq 0 ] || { echo "cloudcity.sh: run as root (sudo make demo)" >&2; exit 2; }
  trap cleanup EXIT INT TERM
  cleanup
  mkdir -p "$CC/terminal" "$CC/sensor" "$CC/door-manager"
  ip netns add cc-client; ip netns add cc-server
  ip link add cc-veth0 netns cc-client type veth peer name cc-veth1 netns cc-server
  ip -n cc-client addr add 10.250.0.1/24 dev cc-veth0
  ip -n cc-server addr add 10.250.0.2/24 dev cc-veth1
  for ns in cc-client cc-server; do ip -n $ns link set lo up; done
  ip -n cc-client link set cc-veth0 up; ip -n cc-server link set cc-veth1 up
  ip netns exec cc-server $PY "$ROOT/tests/grpc/server.py" --addr 0.0.0.0:50051 > /tmp/cloudcity-server.log 2>&1 3>&- &
  PIDS+=($!)
  for _ in $(seq 1 100); do ip netns exec cc-server ss -ltn 'sport = :50051' | grep -q LISTEN && break; sleep 0.1; done
}

# as WORKLOAD CMD...: run CMD in cloudcity/WORKLOAD, in the client namespace
as() {
  local w=$1; shift
  timeout 30 sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec cc-client "$@"' "$CC/$w" "$@"
}

demo() {
  setup
  say "The policy: who may call which DoorManager method"
  run "$G" policy check "$ROOT/policies/cloudcity.yaml"
  say "Attach: load, pin, attach at the cgroup v2 root, apply, exit"
  run "$G" attach --pin-dir "$PIN" "$ROOT/policies/cloudcity.yaml"
  run "$G" status --pin-dir "$PIN"
  "$G" monitor --pin-dir "$PIN" > /tmp/cloudcity-monitor.log 2>&1 &
  PIDS+=($!)
  say "The public terminal: GetName, SetAccessCode, GetName on one channel"
  as terminal $PY "$ROOT/tests/grpc/client.py" 10.250.0.2:50051 GetName SetAccessCode GetName
  say "The door sensor: every method but SetAccessCode"
  as sensor $PY "$ROOT/tests/grpc/client.py" 10.250.0.2:50051 GetLocation SetAccessCode RequestMaintenance
  say "What the server's handlers saw"
  cat /tmp/cloudcity-server.log
  sleep 0.5
  say "grpcwall monitor"
  cat /tmp/cloudcity-monitor.log
  say "Counters"
  run "$G" status --pin-dir "$PIN"
  say "The maps, as bpftool shows them"
  run bpftool map dump pinned "$PIN/gw_config"
  run "$G" policy show --pin-dir "$PIN"
  say "Detach: nothing is left"
  run "$G" detach --pin-dir "$PIN"

  say "Server side: protect the door manager at its own endpoint, from every caller"
  # a second server, in cloudcity/door-manager; callers in a namespace with nothing attached
  sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec cc-server "$@"' "$CC/door-manager" \
    $PY "$ROOT/tests/grpc/server.py" --addr 0.0.0.0:50052 > /tmp/cloudcity-server2.log 2>&1 3>&- &
  PIDS+=($!)
  for _ in $(seq 1 100); do ip netns exec cc-server ss -ltn 'sport = :50052' | grep -q LISTEN && break; sleep 0.1; done
  run "$G" policy check "$ROOT/policies/cloudcity-server.yaml"
  run "$G" attach --cgroup "$CC" --pin-dir "$PIN" "$ROOT/policies/cloudcity-server.yaml"
  say "The terminal (10.250.0.1, no grpcwall on its side): GetName, SetAccessCode, GetName"
  run ip netns exec cc-client $PY "$ROOT/tests/grpc/client.py" 10.250.0.2:50052 GetName SetAccessCode GetName
  say "Another caller (10.250.0.3): only the health service"
  ip -n cc-client addr add 10.250.0.3/24 dev cc-veth0
  ip -n cc-client route replace 10.250.0.2/32 dev cc-veth0 src 10.250.0.3
  run ip netns exec cc-client $PY "$ROOT/tests/grpc/client.py" 10.250.0.2:50052 GetName
  say "What the protected server's handlers saw"
  cat /tmp/cloudcity-server2.log
  run "$G" monitor --pin-dir "$PIN" --count 2 --timeout 5
  run "$G" status --pin-dir "$PIN"
  run "$G" detach --pin-dir "$PIN"
}

case "${1:-demo}" in
  demo) demo ;;
  *) echo "usage: $0 demo" >&2; exit 1 ;;
esac
