#!/usr/bin/env bats
# Soak (issue 8): many short-lived clients, small and big-metadata calls,
# allowed and denied, while `policy apply` runs every second and the
# fallback helper is restarted once. Every allowed call must succeed, no
# denied handler may run, and nothing may leak: pool slots, sockhash
# entries and tracked connections all back to zero at the end.
# `make test` runs it for SOAK_SECONDS=20; `make soak` for longer.

load helpers

setup() {
  gw_setup
  write_policy "$WORK/a.yaml"
  # the same decisions written another way: every apply flips the generation
  write_policy "$WORK/b.yaml" \
    "  - from: door-sensor" "    to: door-manager" "    allow: [\"/cloudcity.DoorManager/*\"]" \
    "    deny: [/cloudcity.DoorManager/SetAccessCode]" \
    "  - from: public-terminal" "    to: door-manager" \
    "    allow: [/cloudcity.DoorManager/GetLocation, /cloudcity.DoorManager/GetName]"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/a.yaml" >/dev/null
  start_grpc_server 50051 --max-metadata $((1 << 20))
}
teardown() { gw_teardown; }

fb() { "$GRPCWALL" status --pin-dir "$PIN" --json | json "d['fallback']['$1']"; }
socks() { bpftool map dump pinned "$PIN/gw_sockhash" 2>/dev/null | grep -c '^key' || true; }

@test "soak: short-lived clients, big and small calls, allowed and denied, applies every second, a helper restart" {
  local secs=${SOAK_SECONDS:-20} end round=0 applies=0 restarted=0 pool
  pool=$(socks)   # the helper's pool sockets
  end=$((SECONDS + secs))
  touch "$WORK/applying" "$WORK/applies"
  (
    # policy apply every second, alternating two equal policies
    i=0
    while [ -e "$WORK/applying" ]; do
      if [ $((i % 2)) -eq 0 ]; then f=b; else f=a; fi
      "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/$f.yaml" >/dev/null 2>>"$WORK/apply.err" && echo >> "$WORK/applies"
      i=$((i + 1))
      sleep 1
    done
  ) &
  PIDS+=($!)
  while [ $SECONDS -lt $end ]; do
    round=$((round + 1))
    # small calls on grpcio channels, and big-metadata calls that go to the
    # helper and close while there, side by side
    py_client "$CG/terminal" 50051 GetName SetAccessCode GetName > "$WORK/py-$round.out" 2>&1 &
    local p1=$!
    in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
      --metadata-bytes 40000 --abrupt 'GetName^' 'SetAccessCode^' > "$WORK/h2-$round.out" 2>&1 &
    local p2=$!
    in_cgroup "$CG/sensor" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_raw.py" "$SERVER_IP" 50051 \
      --metadata-bytes 40000 'RequestMaintenance^' SetAccessCode 'GetLocation^' > "$WORK/s-$round.out" 2>&1 &
    local p3=$!
    wait $p1 $p2 $p3 || true
    if [ $restarted -eq 0 ] && [ $SECONDS -ge $((end - secs / 2)) ]; then
      # restart the helper between rounds: kill it, attach starts a new one
      kill "$(fb pid)"
      for i in $(seq 1 50); do [ "$(fb running)" = False ] && break; sleep 0.1; done
      "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" >/dev/null
      restarted=1
    fi
  done
  rm -f "$WORK/applying"
  wait "${PIDS[-1]}" || true
  applies=$(wc -l < "$WORK/applies")
  echo "rounds $round, applies $applies, helper restarted $restarted"
  [ "$round" -ge 3 ]
  [ "$applies" -ge $((secs / 2)) ]
  [ "$restarted" -eq 1 ]
  [ ! -s "$WORK/apply.err" ]
  # every allowed call succeeded, every denied one was refused
  ok_py=$(cat "$WORK"/py-*.out | grep -c '^GetName OK$')
  ok_h2=$(cat "$WORK"/h2-*.out | grep -c '^GetName 0$')
  ok_s=$(cat "$WORK"/s-*.out | grep -c '^RequestMaintenance 0$\|^GetLocation 0$')
  denied=$(cat "$WORK"/py-*.out "$WORK"/h2-*.out "$WORK"/s-*.out | grep -c '^SetAccessCode \(UNIMPLEMENTED\|12\)')
  echo "allowed ok: py $ok_py h2 $ok_h2 sensor $ok_s; denied $denied"
  [ "$ok_py" -eq $((round * 2)) ]
  [ "$ok_h2" -eq "$round" ]
  [ "$ok_s" -eq $((round * 2)) ]
  [ "$denied" -eq $((round * 3)) ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 0 ]
  # nothing leaked
  for i in $(seq 1 50); do [ "$(counter conns_tracked)" -eq 0 ] && [ "$(fb slots_busy)" -eq 0 ] && break; sleep 0.1; done
  [ "$(counter conns_tracked)" -eq 0 ]
  [ "$(fb slots_busy)" -eq 0 ]
  [ "$(socks)" -eq "$pool" ]
}
