#!/usr/bin/env bats
# The userspace fallback (`grpcwall proxy`, started by attach): header
# blocks the kernel cannot see whole (HEADERS + CONTINUATION, or over the
# 16 KiB in-kernel bound) are decided in userspace on the same connection,
# which then returns to the kernel path.

load helpers

setup() {
  gw_setup
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" > "$WORK/attach.out"
  start_grpc_server 50051 --max-metadata $((1 << 20))
}
teardown() { gw_teardown; }

fb() { "$GRPCWALL" status --pin-dir "$PIN" --json | json "d['fallback']['$1']"; }

@test "attach starts the helper; status shows it; detach stops it" {
  grep -q "fallback helper running (pid" "$WORK/attach.out"
  pid=$(fb pid)
  [ "$pid" -gt 0 ]
  [ "$(cat /proc/$pid/comm)" = grpcwall ]
  [ "$(fb running)" = True ]
  # no listener stays open for other local processes to connect to
  [ "$(ss -ltnp | grep -c "pid=$pid,")" -eq 0 ]
  # a second helper for the same pin dir is refused
  run "$GRPCWALL" proxy --pin-dir "$PIN"
  [ "$status" -eq 2 ]
  [[ "$output" == *"already runs"* ]]
  "$GRPCWALL" detach --pin-dir "$PIN"
  run kill -0 "$pid"    # (a bare `! cmd` never fails a bats test)
  [ "$status" -ne 0 ]
}

@test "python h2, 40 KiB metadata in HEADERS + CONTINUATION: allowed succeeds, denied fails alone, small calls go back to the kernel" {
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    --metadata-bytes 40000 'GetName^' 'SetAccessCode^' 'GetName^' GetName GetLocation GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]   # UNIMPLEMENTED: :path made unroutable
  [ "$(echo "$output" | sed -n 3p)" = "GetName 0" ]
  [ "$(echo "$output" | grep -c ' 0$')" -eq 5 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 4 ]
  # the big blocks took the fallback, and were decided there
  [ "$(fb big_blocks)" -eq 3 ]
  [ "$(fb denied)" -eq 1 ]
  [ "$(counter conns_failed)" -eq 0 ]
  # ... and the connection came back to the kernel, which decided later calls
  [ "$(counter fallback_resumed)" -ge 1 ]
  [ "$(counter allowed)" -ge 1 ]
  [ "$(( $(counter allowed) + $(fb allowed) ))" -eq 5 ]
  ev=$(events 1)
  [ "$(echo "$ev" | json "d['method']")" = "/cloudcity.DoorManager/SetAccessCode" ]
  [ "$(echo "$ev" | json "d['identity']")" = "public-terminal" ]
  [ "$(echo "$ev" | json "d['verdict']")" = "deny" ]
}

@test "python grpcio, metadata over the kernel bound: allowed succeeds, denied fails, later small calls in the kernel" {
  run py_client "$CG/terminal" 50051 --metadata-bytes 20000 'GetName^' 'SetAccessCode^' 'GetName*5' 'SetAccessCode' 'GetLocation'
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName OK" ]
  [[ "$(echo "$output" | sed -n 2p)" == "SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(echo "$output" | grep -c '^GetName OK$')" -eq 6 ]
  [[ "$(echo "$output" | sed -n 8p)" == "SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(echo "$output" | sed -n 9p)" = "GetLocation OK" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 6 ]
  [ "$(fb big_blocks)" -ge 2 ]
  [ "$(counter fallback_blocks)" -ge 1 ]
  [ "$(counter fallback_resumed)" -ge 1 ]
  [ "$(counter allowed)" -ge 1 ]   # some of the small calls were decided in the kernel
  [ "$(counter conns_failed)" -eq 0 ]
}

@test "helper killed while a connection is diverted: the connection fails, the denied method never runs" {
  pid=$(fb pid)
  in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    --metadata-bytes 40000 --hold "$WORK/go" 'SetAccessCode^' GetName > "$WORK/client.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do [ "$(counter fallback_blocks)" -ge 1 ] && break; sleep 0.1; done
  [ "$(counter fallback_blocks)" -eq 1 ]
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  touch "$WORK/go"
  wait "${PIDS[-1]}" || true
  cat "$WORK/client.out"
  [[ "$(cat "$WORK/client.out")" == *"error"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 1 ]
  ev=$(events 1)
  [ "$(echo "$ev" | json "d['reason']")" = "fallback helper gone or gave up" ]
  # restarted on its own, it serves new connections
  "$GRPCWALL" proxy --pin-dir "$PIN" --daemon --log "$WORK/proxy.log"
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    --metadata-bytes 40000 'GetName^'
  [ "$output" = "GetName 0" ]
}

@test "attach --no-fallback: a continued header block fails its connection closed" {
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" --no-fallback | grep -q "fallback helper stopped"
  [ "$(fb running)" = False ]
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    --metadata-bytes 40000 GetName
  [[ "$output" == "error "* ]]
  [ "$(handlers 50051 GetName)" -eq 0 ]
  [ "$(events 1 | json "d['reason']")" = "header block continues in CONTINUATION" ]
}

@test "pool slots of connections that close while diverted are recycled: more such connections than slots all succeed" {
  local i ok=0
  for i in $(seq 1 40); do
    out=$(in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
      --metadata-bytes 40000 --abrupt 'GetName^' 'SetAccessCode^' 2>&1)
    [ "$(echo "$out" | sed -n 1p)" = "GetName 0" ] && [ "$(echo "$out" | sed -n 2p)" = "SetAccessCode 12" ] && ok=$((ok + 1))
  done
  echo "ok: $ok of 40"
  [ "$ok" -eq 40 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  # every slot back once the helper has recycled them
  for i in $(seq 1 30); do [ "$(fb slots_busy)" -eq 0 ] && break; sleep 0.1; done
  [ "$(fb slots_busy)" -eq 0 ]
}

@test "a socket connected again while its connection is in the helper gives the pool slot back at once; the new connection is walked in the kernel" {
  crafted "$SERVER_IP" 50051 "$CG/terminal" reconnect-diverted GetName 8 > "$WORK/client.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 50); do grep -q "^GetName" "$WORK/client.out" && break; sleep 0.1; done
  cat "$WORK/client.out"
  [ "$(sed -n 1,2p "$WORK/client.out" | tr '\n' ' ')" = "reconnected GetName 0 " ]
  [ "$(counter fallback_blocks)" -eq 1 ]
  [ "$(counter conns_opened)" -eq 2 ]
  # while the socket is still open (its cookie in the sockhash again)
  for i in $(seq 1 30); do [ "$(fb slots_busy)" -eq 0 ] && break; sleep 0.1; done
  [ "$(fb slots_busy)" -eq 0 ]
  kill -0 "${PIDS[-1]}"
}

@test "writes of 7 bytes with 30 KB metadata: a held message that ends in a continued block goes whole to the helper" {
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    --split 7 --metadata-bytes 30000 'GetName^' 'SetAccessCode^' GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]
  [ "$(echo "$output" | sed -n 3p)" = "GetName 0" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 0 ]
  [ "$(fb denied)" -ge 1 ]
}

@test "a policy apply while a connection is in the helper: the next block is decided against the new policy" {
  # terminal may call GetName; its big call is held half sent in the helper
  in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
    --metadata-bytes 40000 --hold "$WORK/go" 'GetName^' 'GetName^' > "$WORK/client.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do [ "$(counter fallback_blocks)" -ge 1 ] && break; sleep 0.1; done
  [ "$(counter fallback_blocks)" -eq 1 ]
  # revoke GetName for the terminal (GetLocation only), then two more applies
  # so the slot the connection was diverted under holds another generation
  write_policy "$WORK/revoke.yaml" \
    "  - from: public-terminal" "    to: door-manager" "    allow: [/cloudcity.DoorManager/GetLocation]"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/revoke.yaml"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/revoke.yaml"
  touch "$WORK/go"
  wait "${PIDS[-1]}" || true
  cat "$WORK/client.out"
  [ "$(sed -n 1p "$WORK/client.out")" = "GetName 12" ]
  [ "$(sed -n 2p "$WORK/client.out")" = "GetName 12" ]
  [ "$(handlers 50051 GetName)" -eq 0 ]
  [ "$(fb denied)" -ge 1 ]
  ev=$(events 1)
  [ "$(echo "$ev" | json "d['identity']")" = "public-terminal" ]
  [ "$(echo "$ev" | json "d['generation']")" -eq 4 ]
}
