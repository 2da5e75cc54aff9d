#!/usr/bin/env bats
# attach/detach, policy apply/show, status, bad input: the loader end to end.

load helpers

setup() { gw_setup; }
teardown() { gw_teardown; }

@test "attach then detach leaves nothing behind" {
  write_policy "$WORK/p.yaml"
  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$status" -eq 0 ]
  [[ "$output" == *"policy generation 1"* ]]
  sockops=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']['sockops']")
  skmsg=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']['sk_msg']")
  [ "$sockops" -gt 0 ]
  [ "$skmsg" -gt 0 ]
  maps=$(bpftool prog show id "$sockops" --json | json "' '.join(map(str, d['map_ids']))")
  bpftool cgroup show "$CG" | grep -q gw_sockops
  # enforcement needs no process: attach has exited (only the fallback
  # helper, `grpcwall proxy`, stays; a bare `! cmd` never fails a bats test)
  [ -z "$(pgrep -f "grpcwall attach")" ]

  run "$GRPCWALL" detach --pin-dir "$PIN"
  [ "$status" -eq 0 ]
  [ ! -e "$PIN" ]
  [ -z "$(bpftool cgroup show "$CG")" ]
  # programs and maps are freed (after an RCU grace period)
  for i in $(seq 1 50); do
    left=""
    bpftool prog show id "$sockops" >/dev/null 2>&1 && left="$left prog:$sockops"
    bpftool prog show id "$skmsg" >/dev/null 2>&1 && left="$left prog:$skmsg"
    for m in $maps; do bpftool map show id "$m" >/dev/null 2>&1 && left="$left map:$m"; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  echo "left behind:$left"
  [ -z "$left" ]
  # detach twice is fine and says so
  run "$GRPCWALL" detach --pin-dir "$PIN"
  [ "$status" -eq 0 ]
  [[ "$output" == *"nothing attached"* ]]
}

@test "policy apply while attached swaps generations; show reads back what is live" {
  write_policy "$WORK/a.yaml"
  write_policy "$WORK/b.yaml" \
    "  - from: public-terminal" "    to: door-manager" "    allow: [/cloudcity.DoorManager/SetAccessCode]"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/a.yaml"
  run "$GRPCWALL" policy show --pin-dir "$PIN" --json
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | json "d['generation']")" -eq 1 ]
  [ "$(echo "$output" | json "d['slot']")" -eq 0 ]
  [ "$(echo "$output" | json "len(d['grants'])")" -eq 2 ]
  echo "$output" | json "[m for g in d['grants'] for m in g['methods']]" | grep -q "GetName"

  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/b.yaml"
  [ "$status" -eq 0 ]
  [[ "$output" == *"generation 2 live"* ]]
  run "$GRPCWALL" policy show --pin-dir "$PIN" --json
  [ "$(echo "$output" | json "d['generation']")" -eq 2 ]
  [ "$(echo "$output" | json "d['slot']")" -eq 1 ]
  [ "$(echo "$output" | json "d['file']")" = "$WORK/b.yaml" ]
  grants=$(echo "$output" | json "[(g['from'], m['match'], m['verdict']) for g in d['grants'] for m in g['methods']]")
  echo "$grants"
  [[ "$grants" == *"('public-terminal', '/cloudcity.DoorManager/SetAccessCode', 'allow')"* ]]
  [[ "$grants" != *"GetName"* ]]
  [[ "$grants" != *"door-sensor"* ]]

  # back to a: slot 0 again, b's tables are gone from it
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/a.yaml"
  run "$GRPCWALL" policy show --pin-dir "$PIN"
  [[ "$output" == *"generation 3 (slot 0)"* ]]
  [[ "$output" == *"allow  /cloudcity.DoorManager/GetName"* ]]
  [[ "$output" != *"SetAccessCode                rule 1"* ]]
  # only the live slot and the one before it hold tables
  outer=$(bpftool map dump pinned "$PIN/gw_policy" --json | json "len(d)")
  [ "$outer" -eq 3 ]   # 2 pairs in slot 0 + 1 pair of b in slot 1
}

@test "bad policy files give FILE:LINE and exit 1, and change nothing live" {
  cat > "$WORK/bad.yaml" <<'YAML'
identities:
  a: { cgroup: x }
services:
  s: { port: 50051 }
rules:
  - from: a
    to: s
    allow:
      - /cloudcity.DoorManager/GetName
      - cloudcity.DoorManager/SetAccessCode
YAML
  run "$GRPCWALL" policy check "$WORK/bad.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == "grpcwall: $WORK/bad.yaml:10: bad allow entry 'cloudcity.DoorManager/SetAccessCode'"* ]]

  write_policy "$WORK/good.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/good.yaml"
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/bad.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"bad.yaml:10:"* ]]
  # a cgroup path grpcwall cannot match is bad input too, with its line
  sed "s#$CG/sensor#$CG/../sensor#" "$WORK/good.yaml" > "$WORK/dotdot.yaml"
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/dotdot.yaml"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"dotdot.yaml:3: identity 'door-sensor': cgroup path $CG/../sensor holds '..'"* ]]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['policy']['generation']")" -eq 1 ]
  # attach with a bad policy attaches nothing new
  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN.x" "$WORK/bad.yaml"
  [ "$status" -eq 1 ]
  [ ! -e "$PIN.x" ]
}

@test "check needs no root; live commands without root say so and exit 2" {
  # a copy that user nobody can read, of the policy and the binary
  NR=$(mktemp -d /tmp/gwnr.XXXXXX); EXTRA_DIRS+=("$NR"); chmod 755 "$NR"
  write_policy "$NR/p.yaml"; chmod 644 "$NR/p.yaml"
  cp "$GRPCWALL" "$NR/grpcwall"; chmod 755 "$NR/grpcwall"
  run setpriv --reuid=65534 --regid=65534 --clear-groups "$NR/grpcwall" policy check "$NR/p.yaml"
  [ "$status" -eq 0 ]
  [[ "$output" == *"OK: 2 identities, 1 services, 2 rules"* ]]
  run setpriv --reuid=65534 --regid=65534 --clear-groups "$NR/grpcwall" policy check --json "$NR/p.yaml"
  [ "$(echo "$output" | json "d['grants'][1]['methods'][0]['verdict']")" = "deny" ]
  run setpriv --reuid=65534 --regid=65534 --clear-groups "$NR/grpcwall" status --pin-dir "$PIN"
  [ "$status" -eq 2 ]
  [[ "$output" == *"run it with sudo"* ]]
  run "$GRPCWALL" status --pin-dir "$PIN"
  [ "$status" -eq 0 ]
  [[ "$output" == *"not attached"* ]]
  run "$GRPCWALL" policy show --pin-dir "$PIN"
  [ "$status" -eq 2 ]
  [[ "$output" == *"not attached"*"grpcwall attach --pin-dir $PIN"* ]]
  run "$GRPCWALL" attach --bogus
  [ "$status" -eq 1 ]
}

@test "only connections of an identity to a policed service are tracked; status counts them" {
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  start_bg "$WORK/srv.log" $PY "$ROOT/tests/e2e/tcp_echo.py" serve 0.0.0.0 50051
  start_bg "$WORK/srv2.log" $PY "$ROOT/tests/e2e/tcp_echo.py" serve 0.0.0.0 50052
  wait_port 50051; wait_port 50052

  # no identity: untouched, untracked
  run in_cgroup "$CG/nobody" "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" client "$SERVER_IP" 50051
  echo "nobody: $output"
  [ "$output" = "echo ok" ]
  # identity, other port: untracked
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" client "$SERVER_IP" 50052
  [ "$output" = "echo ok" ]
  [ "$(counter conns_opened)" -eq 0 ]

  # identity (a cgroup below it counts too) to the policed service: tracked while open
  socks() { bpftool map dump pinned "$PIN/gw_sockhash" 2>/dev/null | grep -c '^key' || true; }
  base=$(socks)   # the fallback helper's pool sockets
  mkdir -p "$CG/sensor/worker"
  in_cgroup "$CG/sensor/worker" "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" client "$SERVER_IP" 50051 3 &
  PIDS+=($!)
  for i in $(seq 1 50); do [ "$(counter conns_tracked)" -eq 1 ] && break; sleep 0.1; done
  [ "$(counter conns_tracked)" -eq 1 ]
  # the sockhash holds that one socket besides the helper's (bpftool dump)
  [ "$(socks)" -eq $((base + 1)) ]
  wait "${PIDS[-1]}"
  for i in $(seq 1 50); do [ "$(counter conns_closed)" -eq 1 ] && break; sleep 0.1; done
  [ "$(counter conns_opened)" -eq 1 ]
  [ "$(counter conns_tracked)" -eq 0 ]
  [ "$(socks)" -eq "$base" ]
  # the identity of the worker's cgroup was worked out once for this
  # generation, kept by cgroup id (the cgroup directory's inode)
  gen=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['policy']['generation']")
  id=$(stat -c %i "$CG/sensor/worker")
  bpftool map dump pinned "$PIN/gw_ident_cache" --json > "$WORK/cache.json"
  [ "$(json "[e['formatted']['value']['generation'] for e in d if e['formatted']['key'] == $id][0]" < "$WORK/cache.json")" -eq "$gen" ]
  # an AF_INET6 socket to the v4-mapped address is the same destination
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" client "::ffff:$SERVER_IP" 50051
  [ "$output" = "echo ok" ]
  [ "$(counter conns_opened)" -eq 2 ]
}

@test "per-connection state is at most 1 KiB; the walk's scratch is per CPU, the :path spill made only when needed" {
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  run bpftool map show pinned "$PIN/gw_conns" --json
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | json "d['type']")" = "sk_storage" ]
  [ "$(echo "$output" | json "d['bytes_value']")" -le 1024 ]
  run bpftool map show pinned "$PIN/gw_scratch" --json
  [ "$(echo "$output" | json "d['type']")" = "percpu_array" ]
  [ "$(echo "$output" | json "d['max_entries']")" -eq 64 ]
  run bpftool map show pinned "$PIN/gw_spill" --json
  [ "$(echo "$output" | json "d['type']")" = "sk_storage" ]
}

@test "the walker verifies as sk_msg and as sk_skb, every program well inside the verifier's limit; attach pins both" {
  obj="$(dirname "$GRPCWALL")/grpcwall.bpf.o"
  proginfo="$(dirname "$GRPCWALL")/proginfo"
  [ -f "$obj" ]
  [ -x "$proginfo" ]
  all="$PIN-loadall"
  EXTRA_DIRS+=("$all")
  run bpftool prog loadall "$obj" "$all"
  [ "$status" -eq 0 ]
  run "$proginfo" "$all"/*
  echo "$output"
  [ "$status" -eq 0 ]
  # the client side's walker and the receive side's are the same code
  echo "$output" | grep -q '^gw_sk_msg 16 '   # BPF_PROG_TYPE_SK_MSG
  echo "$output" | grep -q '^gw_sk_skb 14 '   # BPF_PROG_TYPE_SK_SKB
  # 1,000,000 is the verifier's limit: a program over 900,000 is one
  # compiler or kernel change away from not loading at all
  echo "$output" | awk '{ if ($3 == 0 || $3 > 900000) { print "too close to the limit: " $0; bad = 1 } } END { exit bad }'
  rm -rf "$all"
  # attach pins the client side's walker and the server side's
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  [ "$(bpftool prog show pinned "$PIN/prog_sk_skb" --json | json "d['name']")" = "gw_sk_skb" ]
  [ "$(bpftool prog show pinned "$PIN/prog_sk_msg" --json | json "d['name']")" = "gw_sk_msg" ]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']['sk_skb']")" -gt 0 ]
}

@test "attach again replaces the programs and keeps policy and connections" {
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  old=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']['sockops']")
  link=$(bpftool link show --json | json "[l['id'] for l in d if l.get('prog_id') == $old][0]")
  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  [ "$status" -eq 0 ]
  [[ "$output" == *"policy generation 1 (kept)"* ]]
  new=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']['sockops']")
  [ "$new" -ne "$old" ]
  # the same link now runs the new program: it was swapped, never detached
  [ "$(bpftool link show id "$link" --json | json "d['prog_id']")" -eq "$new" ]
  [ "$(bpftool cgroup show "$CG" | grep -c gw_sockops)" -eq 1 ]
  # attaching the same pin dir at another cgroup is refused
  run "$GRPCWALL" attach --cgroup "$CG/terminal" --pin-dir "$PIN"
  [ "$status" -eq 2 ]
  [[ "$output" == *"attached at another cgroup"* ]]
}
