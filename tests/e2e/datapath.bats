#!/usr/bin/env bats
# In-kernel method enforcement with real gRPC clients: each test has its
# own namespaces, cgroups and pin dir; client and server are apart.

load helpers

setup() {
  gw_setup
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  start_grpc_server 50051
}
teardown() { gw_teardown; }

@test "python grpcio: allowed methods succeed many times on one channel (indexed :path)" {
  run py_client "$CG/terminal" 50051 'GetName*25' 'GetLocation*25'
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | grep -c '^GetName OK$')" -eq 25 ]
  [ "$(echo "$output" | grep -c '^GetLocation OK$')" -eq 25 ]
  [ "$(handlers 50051 GetName)" -eq 25 ]
  [ "$(counter allowed)" -eq 50 ]
  [ "$(counter denied)" -eq 0 ]
  [ "$(counter conns_opened)" -eq 1 ]   # one channel, one policed connection
  [ "$(counter parse_errors)" -eq 0 ]
}

@test "python grpcio: a denied method fails alone; its handler never runs; the channel goes on" {
  run py_client "$CG/terminal" 50051 GetName SetAccessCode GetName SetAccessCode GetName
  [ "$status" -eq 0 ]
  echo "$output"
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode UNIMPLEMENTED 'Method not found!'" ]
  [ "$(echo "$output" | grep -c '^GetName OK$')" -eq 3 ]
  [ "$(echo "$output" | grep -c '^SetAccessCode OK')" -eq 0 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 3 ]
  [ "$(counter denied)" -eq 2 ]
  [ "$(counter conns_failed)" -eq 0 ]
  run events 2
  [ "$status" -eq 0 ]
  first=$(echo "$output" | head -1)
  [ "$(echo "$first" | json "d['verdict']")" = "deny" ]
  [ "$(echo "$first" | json "d['identity']")" = "public-terminal" ]
  [ "$(echo "$first" | json "d['service']")" = "door-manager" ]
  [ "$(echo "$first" | json "d['method']")" = "/cloudcity.DoorManager/SetAccessCode" ]
  [ "$(echo "$first" | json "d['dst']")" = "$SERVER_IP:50051" ]
  # the second deny is an indexed reference to the rewritten entry: named too
  [ "$(echo "$output" | sed -n 2p | json "d['method']")" = "/cloudcity.DoorManager/SetAccessCode" ]
}

@test "service wildcard, deny over allow, and audit mode" {
  run py_client "$CG/sensor" 50051 GetLocation RequestMaintenance SetAccessCode GetName
  [ "$(echo "$output" | grep -c ' OK$')" -eq 3 ]
  [[ "$output" == *"SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  rule=$(events 1 | json "d['rule']")
  [ "$rule" -eq 2 ]   # the deny entry of the sensor's rule

  # a dry-run deny on top of an enforcing allow: reported, and let through
  write_policy "$WORK/audit.yaml" \
    "  - from: door-sensor" "    to: door-manager" "    allow: [\"/cloudcity.DoorManager/*\"]" \
    "  - from: door-sensor" "    to: door-manager" \
    "    deny: [/cloudcity.DoorManager/SetAccessCode]" "    audit: true"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/audit.yaml"
  run py_client "$CG/sensor" 50051 SetAccessCode GetName
  [ "$(echo "$output" | grep -c ' OK$')" -eq 2 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  ev=$(events 1)
  [ "$(echo "$ev" | json "d['verdict']")" = "audit" ]
  [ "$(echo "$ev" | json "d['method']")" = "/cloudcity.DoorManager/SetAccessCode" ]
  [ "$(echo "$ev" | json "d['rule']")" -eq 2 ]
  [ "$(counter audited)" -eq 1 ]
  run "$GRPCWALL" policy show --pin-dir "$PIN" --json
  [ "$(echo "$output" | json "d['rules'][1]['counters']['audited']")" -eq 1 ]
  [ "$(echo "$output" | json "d['rules'][0]['counters']['allowed']")" -eq 1 ]
}

@test "identities under one aliased allow list share one method table in the kernel, each counted under its own rule" {
  write_policy "$WORK/shared.yaml" \
    "  - { from: public-terminal, to: door-manager, allow: &m [/cloudcity.DoorManager/GetName] }" \
    "  - { from: door-sensor, to: door-manager, allow: *m }"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/shared.yaml"
  slot=$("$GRPCWALL" policy show --pin-dir "$PIN" --json | json "d['slot']")
  # what bpftool shows: the live slot's two pairs hold the same inner map
  bpftool map dump pinned "$PIN/gw_policy" -j > "$WORK/outer.json"
  tables=$($PY - "$WORK/outer.json" "$slot" <<'PY'
import json, sys
slot, seen = int(sys.argv[2]), []
for e in json.load(open(sys.argv[1])):
    f = e.get("formatted")
    if f:
        k, v = f["key"], f["value"]
        ks, val = k["slot"], v
    else:
        kb = bytes(int(x, 16) for x in e["key"])
        ks, val = int.from_bytes(kb[:4], "little"), int.from_bytes(bytes(int(x, 16) for x in e["value"]), "little")
    if ks == slot:
        seen.append(val)
print(len(seen), len(set(seen)))
PY
)
  echo "live pairs, distinct tables: $tables"
  [ "$tables" = "2 1" ]
  run py_client "$CG/terminal" 50051 GetName GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | grep -c 'GetName OK')" -eq 2 ]
  [[ "$output" == *"SetAccessCode UNIMPLEMENTED"* ]]
  run py_client "$CG/sensor" 50051 GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | grep -c 'GetName OK')" -eq 1 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  # each identity's calls under its own rule, from the one table
  run "$GRPCWALL" policy show --pin-dir "$PIN" --json
  [ "$(echo "$output" | json "d['rules'][0]['counters']['allowed']")" -eq 2 ]
  [ "$(echo "$output" | json "d['rules'][1]['counters']['allowed']")" -eq 1 ]
  [ "$(echo "$output" | json "[m['rule'] for g in d['grants'] for m in g['methods'] if m['match'].endswith('GetName')]")" = "[1, 2]" ]
}

@test "a dry-run (audit) rule never grants: what it would deny, with nothing enforcing allowing it, stays denied" {
  # public-terminal may call GetName and GetLocation; an audit rule that
  # would deny SetAccessCode and all of Admin must not let them through
  write_policy "$WORK/audit.yaml" \
    "  - from: public-terminal" "    to: door-manager" "    allow: [/cloudcity.DoorManager/GetName]" \
    "  - from: public-terminal" "    to: door-manager" "    audit: true" \
    "    deny: [/cloudcity.DoorManager/SetAccessCode, \"/cloudcity.Admin/*\"]"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/audit.yaml"
  run py_client "$CG/terminal" 50051 SetAccessCode GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode UNIMPLEMENTED 'Method not found!'" ]
  [ "$(echo "$output" | sed -n 2p)" = "GetName OK" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter denied)" -eq 2 ]
  [ "$(counter audited)" -eq 0 ]
  [ "$(events 1 | json "d['verdict']")" = "deny" ]
  # and the compiled table says so
  run "$GRPCWALL" policy show --pin-dir "$PIN" --json
  [ "$(echo "$output" | json "[m['verdict'] for m in d['grants'][0]['methods'] if m['match'] == '/cloudcity.DoorManager/SetAccessCode'][0]")" = "deny" ]
}

@test "policy apply on a live channel revokes and grants on the next call" {
  # terminal: GetName allowed, GetLocation not; then the reverse
  write_policy "$WORK/swap.yaml" \
    "  - from: public-terminal" "    to: door-manager" \
    "    allow: [/cloudcity.DoorManager/GetLocation]"
  # (a 60 s deadline: C-core writes grpc-timeout to 3 figures, so a 5 s one
  # reads 4990m instead of 5S when 10 ms pass between the call and its
  # write, as on a loaded machine, and the blocks then differ)
  py_client "$CG/terminal" 50051 --timeout 60 GetName GetName GetName GetName GetName "WAIT:$WORK/go" GetName GetLocation \
    GetLocation > "$WORK/client.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do [ "$(wc -l < "$WORK/client.out")" -ge 5 ] && break; sleep 0.1; done
  # grpcio's GetName blocks settle into one that repeats byte for byte: allowed
  # unparsed, and held for the call after the apply, which the new generation
  # must decide afresh
  repeats=$(counter repeat_blocks)
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/swap.yaml"
  touch "$WORK/go"
  wait "${PIDS[-1]}"
  cat "$WORK/client.out"
  [ "$(sed -n 1,5p "$WORK/client.out" | sort -u)" = "GetName OK" ]
  [[ "$(sed -n 6p "$WORK/client.out")" == "GetName UNIMPLEMENTED"* ]]   # revoked: an indexed :path, now denied
  [ "$(sed -n 7,8p "$WORK/client.out")" = "$(printf 'GetLocation OK\nGetLocation OK')" ]  # granted
  [ "$(counter conns_opened)" -eq 1 ]   # all on one connection
  [ "$(handlers 50051 GetName)" -eq 5 ]
  [ "$(handlers 50051 GetLocation)" -eq 2 ]
  echo "repeats before the apply: $repeats"
  [ "$repeats" -ge 1 ]
}

# across_apply OUT LINES POLICY GATE CMD...: CMD in the background (output
# to OUT) until it printed LINES lines, then POLICY applied and GATE made
# (CMD waits for it with a WAIT:GATE call), then CMD to its end
across_apply() {
  local out=$1 lines=$2 policy=$3 gate=$4 i
  shift 4
  "$@" > "$out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do [ "$(wc -l < "$out")" -ge "$lines" ] && break; sleep 0.1; done
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$policy"
  touch "$gate"
  wait "${PIDS[-1]}"
  cat "$out"
}

@test "a grant after a deny on a live channel: one call fails UNAVAILABLE, the channel reconnects by itself and succeeds" {
  # grpcio enters SetAccessCode's :path in the table; denied, it went to the
  # server rewritten, and the client refers to it by index from then on
  write_policy "$WORK/grant.yaml" \
    "  - from: public-terminal" "    to: door-manager" \
    "    allow: [/cloudcity.DoorManager/GetName, /cloudcity.DoorManager/SetAccessCode]"
  across_apply "$WORK/client.out" 2 "$WORK/grant.yaml" "$WORK/go" \
    py_client "$CG/terminal" 50051 SetAccessCode SetAccessCode "WAIT:$WORK/go" SetAccessCode SetAccessCode GetName
  [[ "$(sed -n 1p "$WORK/client.out")" == "SetAccessCode UNIMPLEMENTED"* ]]
  [[ "$(sed -n 2p "$WORK/client.out")" == "SetAccessCode UNIMPLEMENTED"* ]]
  [[ "$(sed -n 3p "$WORK/client.out")" == "SetAccessCode UNAVAILABLE"* ]]   # never a stale deny
  [ "$(sed -n 4,5p "$WORK/client.out")" = "$(printf 'SetAccessCode OK\nGetName OK')" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  [ "$(counter conns_opened)" -eq 2 ]   # the channel reconnected by itself
  [ "$(events 3 | tail -1 | json "d['reason']")" = \
    "granted after it was denied on this connection: the server's table holds the rewritten :path (the connection is closed; the client reconnects)" ]
  # the raw client (python-hpack, indexes :path too) on its one connection: closed
  rm -f "$WORK/go2"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  across_apply "$WORK/raw.out" 1 "$WORK/grant.yaml" "$WORK/go2" \
    in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    SetAccessCode "WAIT:$WORK/go2" SetAccessCode
  [ "$(sed -n 1p "$WORK/raw.out")" = "SetAccessCode 12" ]
  [[ "$(sed -n 2p "$WORK/raw.out")" == "error"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  # a policy without the terminal's identity: its connections are no longer
  # policed, and the rewritten entry is not passed on as a stale deny either
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  write_policy "$WORK/noterm.yaml" "  - from: door-sensor" "    to: door-manager" "    allow: [\"*\"]"
  sed -i '/public-terminal/d' "$WORK/noterm.yaml"
  across_apply "$WORK/c3.out" 1 "$WORK/noterm.yaml" "$WORK/go3" \
    py_client "$CG/terminal" 50051 SetAccessCode "WAIT:$WORK/go3" SetAccessCode SetAccessCode
  [[ "$(sed -n 1p "$WORK/c3.out")" == "SetAccessCode UNIMPLEMENTED"* ]]
  [[ "$(sed -n 2p "$WORK/c3.out")" == "SetAccessCode UNAVAILABLE"* ]]
  [ "$(sed -n 3p "$WORK/c3.out")" = "SetAccessCode OK" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 2 ]
}

@test "processes without an identity, and other ports, are untouched" {
  start_grpc_server 50052
  run py_client "$CG/nobody" 50051 SetAccessCode GetName
  [ "$output" = "$(printf 'SetAccessCode OK\nGetName OK')" ]
  run py_client "$CG/terminal" 50052 SetAccessCode
  [ "$output" = "SetAccessCode OK" ]
  [ "$(counter conns_opened)" -eq 0 ]
  [ "$(counter header_blocks)" -eq 0 ]
  # the egress guard looked at the service connection without an identity
  # (once) and held nothing back
  [ "$(counter guard_drops)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 0 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  [ "$(handlers 50052 SetAccessCode)" -eq 1 ]
}

@test "an accepted connection whose peer has a service's address and port is left alone (not taken for a policed client)" {
  # a server in the terminal's cgroup (an identity); its client, on the
  # service's host, connects from the service's address and port (a source
  # port that is a service port: one connection in ~28,000 by chance)
  write_policy "$WORK/p2.yaml"
  sed -i 's/port: 50051/port: 50070/' "$WORK/p2.yaml"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p2.yaml"
  in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" serve 0.0.0.0 50071 > "$WORK/echo.log" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 50); do ip netns exec "$CLIENT_NS" ss -ltn | grep -q ':50071 ' && break; sleep 0.1; done
  run env ECHO_SPORT=50070 ip netns exec "$SERVER_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" client "$CLIENT_IP" 50071 0
  echo "$output"
  [ "$output" = "echo ok" ]
  [ "$(counter guard_drops)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 0 ]
}

@test "a non-HTTP/2 client on a policed port is refused and reported" {
  start_bg "$WORK/echo.log" $PY "$ROOT/tests/e2e/tcp_echo.py" serve 0.0.0.0 50053
  wait_port 50053
  write_policy "$WORK/p2.yaml"
  sed -i 's/port: 50051/port: 50053/' "$WORK/p2.yaml"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p2.yaml"
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" client "$SERVER_IP" 50053 0 http1
  echo "$output"
  [[ "$output" == "error Permission denied" ]]
  ev=$(events 1)
  [ "$(echo "$ev" | json "d['reason']")" = "not HTTP/2" ]
  [ "$(echo "$ev" | json "d['identity']")" = "public-terminal" ]
  [ "$(counter conns_failed)" -eq 1 ]
  # an HTTP/2 client on the same port and identity is fine
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" client "$SERVER_IP" 50053 0 h2
  [ "$output" = "echo ok" ]
}

@test "grpc-js: Huffman literal :path every call; deny alone, channel goes on" {
  [ -d "$ROOT/tests/grpc/node/node_modules/@grpc/grpc-js" ] || need_skip "npm dependencies missing: run scripts/install-deps.sh"
  run node_client "$CG/terminal" 50051 'GetName*10' SetAccessCode GetLocation SetAccessCode GetName
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | grep -c '^GetName OK$')" -eq 11 ]
  [ "$(echo "$output" | grep -c '^GetLocation OK$')" -eq 1 ]
  [ "$(echo "$output" | grep -c "^SetAccessCode UNIMPLEMENTED")" -eq 2 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter allowed)" -eq 12 ]
  [ "$(counter denied)" -eq 2 ]
  [ "$(counter conns_opened)" -eq 1 ]
  [ "$(events 1 | json "d['method']")" = "/cloudcity.DoorManager/SetAccessCode" ]
  # wildcard for a Huffman path
  run node_client "$CG/sensor" 50051 RequestMaintenance SetAccessCode
  [ "$output" = "$(printf "RequestMaintenance OK\nSetAccessCode UNIMPLEMENTED 'Method not found!'")" ]
}

@test "h2load: allowed POSTs reach the handler, denied ones never do" {
  run h2load_calls "$CG/terminal" 50051 GetName 40
  echo "$output"
  [[ "$output" == *"40 succeeded"* ]]
  [ "$(handlers 50051 GetName)" -eq 40 ]
  run h2load_calls "$CG/terminal" 50051 SetAccessCode 15
  echo "$output"
  # what h2load sees of a denial on the client side: the C-core server's
  # Trailers-Only UNIMPLEMENTED, an HTTP 200 (it reads no grpc-status)
  [[ "$output" == *"status codes: 15 2xx"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter allowed)" -eq 40 ]
  [ "$(counter denied)" -eq 15 ]
  [ "$(counter conns_failed)" -eq 0 ]
}

@test "connections that predate attach are reset and come back under policy" {
  "$GRPCWALL" detach --pin-dir "$PIN"
  predating_client "$WORK/client.out" SetAccessCode GetName SetAccessCode   # unpoliced: grpcwall is not there yet
  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [[ "$output" == *"reset 1 connection(s) that predate attach"* ]]
  touch "$WORK/go"
  wait "${PIDS[-1]}"
  cat "$WORK/client.out"
  # the call in flight on the reset connection fails; SetAccessCode never ran
  [[ "$(sed -n 2p "$WORK/client.out")" == "SetAccessCode UNAVAILABLE"* ]]
  [ "$(sed -n 3p "$WORK/client.out")" = "GetName OK" ]
  [[ "$(sed -n 4p "$WORK/client.out")" == "SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_reset)" -eq 1 ]
  [ "$(counter conns_opened)" -eq 1 ]   # the reconnection is policed
  # an unpoliced connection of a process without identity is left alone
  py_client "$CG/nobody" 50051 GetName "WAIT:$WORK/go2" GetName > "$WORK/nobody.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do [ "$(wc -l < "$WORK/nobody.out")" -ge 1 ] && break; sleep 0.1; done
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  touch "$WORK/go2"
  wait "${PIDS[-1]}"
  [ "$(cat "$WORK/nobody.out")" = "$(printf 'GetName OK\nGetName OK')" ]
  [ "$(counter conns_reset)" -eq 1 ]
}

@test "more live :path entries than the table model's ring: older ones are decided from the spill" {
  # python-hpack enters every :path in the table; 12 more methods push the
  # records of GetName and SetAccessCode out of the 8-record ring while
  # their entries stay live, and the calls after refer to them by index
  fill=()
  for i in $(seq 1 12); do fill+=("Filler$i"); done
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    GetName SetAccessCode "${fill[@]}" GetName SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | sed -n '15,17p')" = "$(printf 'GetName 0\nSetAccessCode 12\nGetName 0')" ]
  [ "$(handlers 50051 GetName)" -eq 3 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter allowed)" -eq 3 ]
  [ "$(counter denied)" -eq 14 ]
  [ "$(counter parse_errors)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 0 ]
  # the denial of the indexed SetAccessCode names it (its record, from the spill)
  [ "$(events 14 | tail -1 | json "d['method']")" = "/cloudcity.DoorManager/SetAccessCode" ]
}

# scratch_busy FIRST LAST: mark gw_scratch slots FIRST..LAST busy on every CPU,
# as runs preempted in the middle of a walk would hold them
scratch_busy() {
  local busy value i size
  # (the value's size as this build made the map: struct gw_scratch)
  size=$(bpftool map show pinned "$PIN/gw_scratch" | grep -o 'value [0-9]*B' | grep -o '[0-9]*')
  busy="01 00 00 00$(printf ' 00%.0s' $(seq 5 "$size"))"
  for i in $(seq "$1" "$2"); do
    bpftool map update pinned "$PIN/gw_scratch" key $i 0 0 0 value $busy
  done
}

@test "the walk's scratch: a slot a preempted run holds is passed over; with every slot held a write fails closed, reported" {
  scratch_busy 0 0
  run py_client "$CG/terminal" 50051 GetName SetAccessCode GetName
  [ "$(echo "$output" | grep -c '^GetName OK$')" -eq 2 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter scratch_next)" -ge 3 ]
  [ "$(counter conns_failed)" -eq 0 ]
  scratch_busy 1 63
  run py_client "$CG/terminal" 50051 GetName
  [ "$(echo "$output" | grep -c '^GetName OK$')" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 2 ]
  [ "$(counter conns_failed)" -eq 1 ]
  [ "$(events 2 | tail -1 | json "d['reason']")" = "every walk scratch slot of the CPU held by a send preempted mid-walk (64)" ]
}

@test "frames split across writes, one byte per send(), are decided in the kernel" {
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 --split 1 \
    GetName SetAccessCode GetName
  echo "$output"
  [ "$output" = "$(printf 'GetName 0\nSetAccessCode 12\nGetName 0')" ]   # 12: UNIMPLEMENTED
  [ "$(handlers 50051 GetName)" -eq 2 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter header_blocks)" -eq 3 ]
  [ "$(counter denied)" -eq 1 ]
  # and in 7-byte pieces, which cut frame headers and HPACK fields anywhere
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 --split 7 \
    SetAccessCode GetName
  [ "$output" = "$(printf 'SetAccessCode 12\nGetName 0')" ]
  [ "$(counter parse_errors)" -eq 0 ]
}

