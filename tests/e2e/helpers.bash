# Shared set-up for the end-to-end tests. Every test gets its own network
# namespaces, veth pair, cgroups under a test-owned parent and pin dir, and
# teardown removes all of it even when the test failed.

GRPCWALL=${GRPCWALL:-$BATS_TEST_DIRNAME/../../build/grpcwall}
ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
PY=/usr/bin/python3   # Debian's python, which has python3-grpcio

gw_setup() {
  [ "$(id -u)" -eq 0 ] || need_skip "end-to-end tests need root"
  local n=$((BATS_TEST_NUMBER + ($$ % 200) * 10))
  ID="gwt$$-$BATS_TEST_NUMBER"
  NET=$((n % 250 + 1))
  CLIENT_NS="$ID-c"; SERVER_NS="$ID-s"
  CLIENT_IP="10.250.$NET.1"; SERVER_IP="10.250.$NET.2"
  CLIENT_IP6="fd00:250:$NET::1"; SERVER_IP6="fd00:250:$NET::2"
  CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
  CG="$CGROOT/$ID"
  PIN="/sys/fs/bpf/$ID"
  WORK="$BATS_TEST_TMPDIR"
  PIDS=()
  EXTRA_DIRS=()
  EXTRA_NS=()   # more network namespaces a test made: emptied and deleted
  mkdir -p "$CG/terminal" "$CG/sensor" "$CG/nobody"
  ip netns add "$CLIENT_NS"
  ip netns add "$SERVER_NS"
  ip link add "$ID-a" netns "$CLIENT_NS" type veth peer name "$ID-b" netns "$SERVER_NS"
  ip -n "$CLIENT_NS" addr add "$CLIENT_IP/24" dev "$ID-a"
  ip -n "$SERVER_NS" addr add "$SERVER_IP/24" dev "$ID-b"
  ip -n "$CLIENT_NS" addr add "$CLIENT_IP6/64" dev "$ID-a" nodad
  ip -n "$SERVER_NS" addr add "$SERVER_IP6/64" dev "$ID-b" nodad
  ip -n "$CLIENT_NS" link set "$ID-a" up
  ip -n "$SERVER_NS" link set "$ID-b" up
  ip -n "$CLIENT_NS" link set lo up
  ip -n "$SERVER_NS" link set lo up
}

# need_skip REASON: skip, except under `make test` (GW_STRICT=1), where a
# missing prerequisite is a failure: make test installs and builds them all.
need_skip() {
  if [ -n "${GW_STRICT:-}" ]; then
    echo "prerequisite missing under make test: $1" >&2
    return 1
  fi
  skip "$1"
}

gw_teardown() {
  [ "$(id -u)" -eq 0 ] || return 0
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${PIN:-}" ] && { "$GRPCWALL" detach --pin-dir "$PIN" >/dev/null 2>&1 || rm -rf "$PIN"; }
  [ -n "${CLIENT_NS:-}" ] && ip netns pids "$CLIENT_NS" 2>/dev/null | xargs -r kill -9
  [ -n "${SERVER_NS:-}" ] && ip netns pids "$SERVER_NS" 2>/dev/null | xargs -r kill -9
  for p in "${EXTRA_NS[@]}"; do ip netns pids "$p" 2>/dev/null | xargs -r kill -9; ip netns del "$p" 2>/dev/null; done
  for p in "${EXTRA_DIRS[@]}"; do rm -rf "$p"; done
  [ -n "${PIN:-}" ] && rm -f "/run/grpcwall/$(echo "${PIN#/}" | tr / _).log"
  ip netns del "$CLIENT_NS" 2>/dev/null
  ip netns del "$SERVER_NS" 2>/dev/null
  if [ -n "${CG:-}" ] && [ -d "$CG" ]; then
    local d
    for d in $(find "$CG" -depth -type d); do
      xargs -r kill -9 < "$d/cgroup.procs" 2>/dev/null
    done
    sleep 0.2
    find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
  fi
  return 0
}

# Writes a policy for this test's cgroups and server address to $1.
# $2..: extra rule lines (YAML), default rules otherwise.
write_policy() {
  local out=$1; shift
  cat > "$out" <<YAML
identities:
  public-terminal: { cgroup: $CG/terminal }
  door-sensor:     { cgroup: $CG/sensor }
services:
  door-manager: { port: 50051, cidrs: [$SERVER_IP/32] }
rules:
YAML
  if [ $# -gt 0 ]; then
    printf '%s\n' "$@" >> "$out"
  else
    cat >> "$out" <<YAML
  - from: public-terminal
    to: door-manager
    allow:
      - /cloudcity.DoorManager/GetName
      - /cloudcity.DoorManager/GetLocation
  - from: door-sensor
    to: door-manager
    allow: ["/cloudcity.DoorManager/*"]
    deny: [/cloudcity.DoorManager/SetAccessCode]
YAML
  fi
}

# in_cgroup CGROUP NETNS CMD...: runs CMD in that cgroup and namespace.
in_cgroup() {
  local cg=$1 ns=$2; shift 2
  timeout 60 sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$@"' "$cg" "$ns" "$@"
}

# Starts a background server in the server namespace (own cgroup: untracked).
start_bg() {
  local log=$1; shift
  ip netns exec "$SERVER_NS" "$@" > "$log" 2>&1 3>&- &
  PIDS+=($!)
}

wait_port() {
  local port=$1 i
  for i in $(seq 1 100); do
    ip netns exec "$SERVER_NS" ss -ltn "sport = :$port" | grep -q LISTEN && return 0
    sleep 0.1
  done
  echo "server did not listen on $port" >&2
  return 1
}

json() { $PY -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

counter() { "$GRPCWALL" status --pin-dir "$PIN" --json | json "d['counters']['$1']"; }

# start_grpc_server PORT [ARGS]: the Cloud City server in the server namespace
start_grpc_server() {
  local port=$1; shift
  start_bg "$WORK/server-$port.log" $PY "$ROOT/tests/grpc/server.py" --addr "0.0.0.0:$port" "$@"
  wait_port "$port"
}

# handlers PORT METHOD: how many times the server ran METHOD's handler
# (counted where they are: concurrent handlers' lines can run together)
handlers() { grep -o "handler $2 " "$WORK/server-$1.log" | wc -l; }

# away_client CGROUP IP: a workload in CGROUP that connects to IP:50051 from
# the client namespace (HTTP/2 preface sent), then moves to a network
# namespace of its own (tests/e2e/zombie_leader.c, away): only its socket
# keeps the client namespace. Returns once it is connected and no thread on
# the host is in that namespace (the case the reset of predating connections
# cannot reach). away_send lets it send one SetAccessCode call; what came of
# it (answered, unanswered, reset) is in $WORK/z.out.
away_client() {
  command -v cc >/dev/null || need_skip "no C compiler (cc)"
  cc -O2 -pthread -o "$WORK/zombie_leader" "$ROOT/tests/e2e/zombie_leader.c"
  in_cgroup "$1" "$CLIENT_NS" "$WORK/zombie_leader" "$2" 50051 SetAccessCode "$WORK/go" away > "$WORK/z.out" 2>&1 &
  PIDS+=($!)
  local i ns
  for i in $(seq 1 100); do grep -q connected "$WORK/z.out" && break; sleep 0.1; done
  cat "$WORK/z.out"
  grep -q connected "$WORK/z.out"
  ns=$(ip netns exec "$CLIENT_NS" readlink /proc/self/ns/net)
  echo "client namespace $ns"
  ! for i in /proc/[0-9]*/task/[0-9]*; do readlink "$i/ns/net" 2>/dev/null; done | grep -qxF "$ns" || false
}
away_send() {
  local i
  touch "$WORK/go"
  for i in $(seq 1 100); do grep -qE 'reset|answered' "$WORK/z.out" && break; sleep 0.1; done
  cat "$WORK/z.out"
}

# py_client CGROUP PORT CALLS...: python grpcio client on one channel
py_client() {
  local cg=$1 port=$2; shift 2
  in_cgroup "$cg" "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" "$SERVER_IP:$port" "$@"
}

# predating_client OUT CALLS...: a grpcio client from the terminal cgroup on
# one channel, in the background (PIDS), writing to OUT; its first call,
# GetName, is answered before this returns (made before whatever comes
# next), the CALLS wait for $WORK/go
predating_client() {
  local out=$1 i; shift
  py_client "$CG/terminal" 50051 GetName "WAIT:$WORK/go" "$@" > "$out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do [ "$(wc -l < "$out")" -ge 1 ] && break; sleep 0.1; done
  [ "$(sed -n 1p "$out")" = "GetName OK" ]
}

# crafted HOST PORT CGROUP MODE ARGS...: tests/e2e/attack.py from that cgroup
crafted() {
  local host=$1 port=$2 cg=$3; shift 3
  in_cgroup "$cg" "$CLIENT_NS" $PY "$ROOT/tests/e2e/attack.py" "$host" "$port" "$@"
}

# events N: the next N monitor events as JSON lines (they wait in the ring buffer)
events() { "$GRPCWALL" monitor --pin-dir "$PIN" --json --count "$1" --timeout 10; }

# repeat_decided: $output of tests/e2e/attack.py's `repeat GetName SetAccessCode`
# shows the allowed block's repeat allowed, and the same bytes denied after a
# trailers block moved entry 62 to SetAccessCode (its handler never ran)
# (the denied call's status: 12, UNIMPLEMENTED, or the one given: 7,
# PERMISSION_DENIED, where grpcwall protects the server)
repeat_decided() {
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ] &&
    [ "$(echo "$output" | sed -n 2p)" = "GetName 0" ] &&
    [ "$(echo "$output" | sed -n 4p)" = "SetAccessCode ${1:-12}" ] &&
    [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
}

# race_read_as_decided: after tests/e2e/sendfile_race.py's client (GetName
# sent, the file rewritten into SetAccessCode after the send), the verdict
# decided GetName (allowed, nothing denied) and its server read GetName,
# never SetAccessCode (its log in $WORK/race-server.log)
race_read_as_decided() {
  cat "$WORK/race-server.log"
  [ "$(counter allowed)" -eq 1 ] && [ "$(counter denied)" -eq 0 ] && [ "$(counter conns_failed)" -eq 0 ] &&
    grep -qx "path /cloudcity.DoorManager/GetName" "$WORK/race-server.log" &&
    ! grep -q "SetAccessCode" "$WORK/race-server.log"
}

# node_client CGROUP PORT CALLS...: @grpc/grpc-js client on one channel
node_client() {
  local cg=$1 port=$2; shift 2
  in_cgroup "$cg" "$CLIENT_NS" node "$ROOT/tests/grpc/node/client.js" "$SERVER_IP:$port" "$@"
}

# h2load_calls CGROUP PORT METHOD N: N gRPC-framed unary POSTs on one connection
h2load_calls() {
  local cg=$1 port=$2 method=$3 n=$4
  printf '\x00\x00\x00\x00\x02\x08\x01' > "$WORK/req.bin"   # DoorRequest{door_id: 1}
  in_cgroup "$cg" "$CLIENT_NS" h2load -n "$n" -c 1 -m 1 -d "$WORK/req.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://$SERVER_IP:$port/cloudcity.DoorManager/$method"
}
