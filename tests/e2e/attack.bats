#!/usr/bin/env bats
# A policed workload attacks the send path (issue 8): a crafted client in
# the public-terminal identity (GetName allowed, SetAccessCode denied) tries
# to get bytes to the server that the walker never saw in order. Each test
# asserts what the operator would check: the denied handler never ran, the
# monitor names the reason, and allowed calls still work.

load helpers

setup() {
  gw_setup
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" $ATTACH_ARGS "$WORK/p.yaml" >/dev/null
  start_grpc_server 50051
}
teardown() { gw_teardown; }

# attack CGROUP MODE ARGS...: the crafted client against the server's port
attack() { crafted "$SERVER_IP" 50051 "$@"; }

# lax_service IDENTITY CGROUP [OPTION...]: IDENTITY (workloads in CGROUP)
# may call GetName on door-lax (port 50052), served by
# tests/e2e/h2_lax_server.py with OPTIONs; the policy is applied live
lax_service() {
  local ident=$1 cg=$2; shift 2
  cat > "$WORK/lax.yaml" <<YAML
identities:
  $ident: { cgroup: $cg }
services:
  door-lax: { port: 50052, cidrs: [$SERVER_IP/32] }
rules:
  - { from: $ident, to: door-lax, allow: [/cloudcity.DoorManager/GetName] }
YAML
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/lax.yaml" >/dev/null
  start_bg "$WORK/server-50052.log" $PY "$ROOT/tests/e2e/h2_lax_server.py" 0.0.0.0 50052 "$@"
  wait_port 50052
}

# has_event REASON_SUBSTRING: a monitor event (JSON) with that reason
has_event() {
  local out
  out=$("$GRPCWALL" monitor --pin-dir "$PIN" --json --count 20 --timeout 3 2>/dev/null || true)
  echo "events: $out"
  echo "$out" | grep -q "$1"
}

@test "control: the crafted client's allowed call succeeds and its denied call is refused" {
  run attack "$CG/terminal" plain GetName SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]
  [ "$(echo "$output" | sed -n 3p)" = "GetName 0" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 2 ]
}

@test "a send() that starts during the handshake never reaches the server" {
  # no address on the server side: the SYN waits for ARP, the send blocks in SYN_SENT
  ip -n "$SERVER_NS" addr del "$SERVER_IP/24" dev "$ID-b"
  attack "$CG/terminal" handshake SetAccessCode > "$WORK/a.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 50); do grep -q connecting "$WORK/a.out" && break; sleep 0.1; done
  sleep 0.5
  ip -n "$SERVER_NS" addr add "$SERVER_IP/24" dev "$ID-b"
  wait "${PIDS[-1]}" || true
  cat "$WORK/a.out"
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  ! grep -q "SetAccessCode 0" "$WORK/a.out" || false
  [ "$(counter guard_drops)" -ge 1 ]
  [ "$(counter conns_failed)" -ge 1 ]
  # failed when it became established (a writer was waiting): never in the sockhash
  [ "$(counter conns_opened)" -eq 0 ]
  has_event "past the walker"
  # the identity's next connection is policed as usual
  run attack "$CG/terminal" plain GetName
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
}

@test "a simultaneous open with a service's address (established without ACTIVE_ESTABLISHED, never walked) gets no payload byte to the peer" {
  # the SYNs are held (neighbours at a MAC nobody has) until both ends are
  # in SYN_SENT; the peer's SYN reaches the client first, so the client
  # goes SYN_RECV and becomes established as a passive open would
  local cmac smac
  cmac=$(ip -n "$CLIENT_NS" -j link show "$ID-a" | json "d[0]['address']")
  smac=$(ip -n "$SERVER_NS" -j link show "$ID-b" | json "d[0]['address']")
  ip -n "$CLIENT_NS" neigh replace "$SERVER_IP" lladdr 02:00:00:00:00:99 dev "$ID-a" nud permanent
  ip -n "$SERVER_NS" neigh replace "$CLIENT_IP" lladdr 02:00:00:00:00:99 dev "$ID-b" nud permanent
  attack "$CG/terminal" simopen 40123 > "$WORK/c.out" 2>&1 &
  PIDS+=($!)
  ip netns exec "$SERVER_NS" timeout 60 $PY "$ROOT/tests/e2e/attack.py" "$SERVER_IP" 50051 simopen-peer 40123 \
    "$CLIENT_IP" > "$WORK/s.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 50); do grep -q connecting "$WORK/c.out" && grep -q connecting "$WORK/s.out" && break; sleep 0.1; done
  ip -n "$SERVER_NS" neigh replace "$CLIENT_IP" lladdr "$cmac" dev "$ID-b" nud permanent
  sleep 1.5   # the peer's SYN retransmitted (1 s): the client goes SYN_RECV
  ip -n "$CLIENT_NS" neigh replace "$SERVER_IP" lladdr "$smac" dev "$ID-a" nud permanent
  wait "${PIDS[-1]}" || true
  wait "${PIDS[-2]}" || true
  cat "$WORK/c.out" "$WORK/s.out"
  grep -q established "$WORK/c.out"
  grep -q established "$WORK/s.out"
  [ "$(grep received "$WORK/s.out")" = "received 0" ]
  [ "$(counter conns_opened)" -eq 0 ]   # never in the sockhash
  [ "$(counter guard_drops)" -ge 1 ]
  has_event "past the walker"
}

@test "TCP fast open: data in the SYN (MSG_FASTOPEN, TCP_FASTOPEN_CONNECT) never reaches the server" {
  ip netns exec "$SERVER_NS" sysctl -qw net.ipv4.tcp_fastopen=0x603
  ip netns exec "$CLIENT_NS" sysctl -qw net.ipv4.tcp_fastopen=0x5
  run attack "$CG/terminal" fastopen SetAccessCode
  echo "$output"
  run attack "$CG/terminal" fastopen-connect SetAccessCode
  echo "$output"
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter guard_drops)" -ge 2 ]
  [ "$(counter conns_failed)" -ge 2 ]
  has_event "fast-open"
  run attack "$CG/terminal" plain GetName
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
}

@test "urgent data (MSG_OOB) fails the connection before the server reads past it" {
  run attack "$CG/terminal" oob GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 1 ]
  [ "$(counter guard_drops)" -ge 1 ]
  has_event "urgent data"
}

@test "a write the kernel sends only in part: what is written in place of the rest is not let through unread" {
  run attack "$CG/terminal" stale GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "first write short" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 1 ]
  has_event "past the walker"
}

@test "a held HEADERS frame the kernel flushes when the message fills up fails closed" {
  start_bg "$WORK/other.log" ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/e2e/tcp_echo.py" serve 127.0.0.1 7000
  for i in $(seq 1 50); do ip netns exec "$CLIENT_NS" ss -ltn "sport = :7000" | grep -q LISTEN && break; sleep 0.1; done
  run attack "$CG/terminal" cork-flush SetAccessCode --other-port 7000
  echo "$output"
  [[ "$output" == *"enospc at "* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 1 ]
  has_event "flushed a held partial frame"
  run attack "$CG/terminal" plain GetName
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
}

@test "short writes of a non-blocking client with a tiny send buffer are followed (benign)" {
  run attack "$CG/terminal" bigwrite GetName GetName GetName --size 60000
  echo "$output"
  [ "$(echo "$output" | grep -c "^GetName 0$")" -eq 3 ]
  [ "$(handlers 50051 GetName)" -eq 3 ]
  [ "$(counter conns_failed)" -eq 0 ]
  [ "$(counter guard_drops)" -eq 0 ]
  # the client saw short writes, and the kernel picked the walk up after them
  [ "$(echo "$output" | grep '^short-writes' | awk '{s+=$2} END {print s}')" -ge 1 ]
  echo "short writes followed: $(counter short_writes)"
  [ "$(counter short_writes)" -ge 1 ]
}

@test "a process 17 levels deep carries its ancestor's identity" {
  local d="$CG/terminal" i
  for i in $(seq 3 17); do d="$d/l$i"; done   # $CG is level 1, terminal 2
  mkdir -p "$d"
  run attack "$d" plain GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
}

@test "identities are cgroup paths: a workload's cgroup made again, or made after the apply, is policed from its first connection" {
  # restart: the identity's cgroup removed and made again (a new cgroup id)
  rmdir "$CG/terminal"
  mkdir "$CG/terminal"
  run attack "$CG/terminal" plain SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode 12" ]
  [ "$(echo "$output" | sed -n 2p)" = "GetName 0" ]
  # an identity whose cgroup does not exist at apply: a warning, then policed once made
  write_policy "$WORK/later.yaml"
  sed -i "s|door-sensor:     { cgroup: $CG/sensor }|door-sensor:     { cgroup: $CG/later/sensor }|" "$WORK/later.yaml"
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/later.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"does not exist yet"* ]]
  mkdir -p "$CG/later/sensor/worker"
  run attack "$CG/later/sensor/worker" plain SetAccessCode RequestMaintenance
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode 12" ]
  [ "$(echo "$output" | sed -n 2p)" = "RequestMaintenance 0" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  # identities grpcwall cannot match are refused with the reason
  cat > "$WORK/root.yaml" <<YAML
identities:
  everyone: { cgroup: / }
services:
  door-manager: { port: 50051 }
rules:
  - { from: everyone, to: door-manager, allow: ["*"] }
YAML
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/root.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"root.yaml:2: identity 'everyone': cgroup / is the cgroup v2 root"* ]]
}

@test "a denied method's name in another case is denied where a wildcard allows the service (a server may route names ignoring case)" {
  # the sensor: DoorManager/* allowed, SetAccessCode denied; the server
  # routes names ignoring case (as ASP.NET Core does under grpc-dotnet)
  cat > "$WORK/fold.yaml" <<YAML
identities:
  door-sensor: { cgroup: $CG/sensor }
services:
  door-fold: { port: 50052, cidrs: [$SERVER_IP/32] }
rules:
  - from: door-sensor
    to: door-fold
    allow: ["/cloudcity.DoorManager/*"]
    deny: [/cloudcity.DoorManager/SetAccessCode, "/cloudcity.Vault/*"]
  - from: door-sensor
    to: door-fold
    allow: [/cloudcity.DoorManager/getName]
YAML
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/fold.yaml" >/dev/null
  start_bg "$WORK/server-50052.log" $PY "$ROOT/tests/e2e/h2_lax_server.py" 0.0.0.0 50052 fold-case
  wait_port 50052
  mkdir -p "$CG/sensor"
  # without grpcwall's fold the server would run SetAccessCode for each
  run crafted "$SERVER_IP" 50052 "$CG/sensor" plain setAccessCode SETACCESSCODE SetAccessCode GetName getname
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "setAccessCode 12" ]
  [ "$(echo "$output" | sed -n 2p)" = "SETACCESSCODE 12" ]
  [ "$(echo "$output" | sed -n 3p)" = "SetAccessCode 12" ]
  # other methods in any case still pass the wildcard (the server routes them)
  [ "$(echo "$output" | sed -n 4p)" = "GetName 0" ]
  [ "$(echo "$output" | sed -n 5p)" = "getname 0" ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50052 GetName)" -eq 2 ]
  run events 3
  echo "$output"
  [ "$(echo "$output" | head -1 | json "d['method']")" = "/cloudcity.DoorManager/setAccessCode" ]
  # the same in the fallback helper (each block continued)
  run in_cgroup "$CG/sensor" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_crafted.py" "$SERVER_IP" 50052 \
    continuation:setAccessCode continuation:getName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "setAccessCode 12" ]
  [ "$(echo "$output" | sed -n 2p)" = "getName 0" ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  [ "$(counter fallback_blocks)" -ge 2 ]
  # policy show names the deny entries matched in any case
  run "$GRPCWALL" policy show --pin-dir "$PIN"
  echo "$output"
  [[ "$output" == *"deny   /cloudcity.DoorManager/SetAccessCode (in any case)"* ]]
  [ "$("$GRPCWALL" policy show --pin-dir "$PIN" --json |
      json "sorted(m['match'] for g in d['grants'] for m in g['methods'] if m['any_case'])")" = \
    "['/cloudcity.DoorManager/SetAccessCode', '/cloudcity.Vault/*']" ]
}

@test "a denied :path never reaches a lax server as a method: percent-decoded, dot segments, :path names in any case" {
  # the server percent-decodes :path, removes dot segments and reads field
  # names in any case ("%2Fcloudcity..." and "/x/../cloudcity..." are
  # /cloudcity... to it, ":PATH" is :path); it routes as grpc-go does
  lax_service door-sensor "$CG/sensor" percent-decode dot-segments names-any-case
  mkdir -p "$CG/sensor"
  hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
  # the server is that lax: unpoliced (outside the attach cgroup), each runs
  local p
  for p in %2Fcloudcity.DoorManager/GetName /x/../cloudcity.DoorManager/GetName; do
    run timeout 60 ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/e2e/attack.py" "$SERVER_IP" 50052 badpath "$(hex "$p")"
    [ "$(echo "$output" | sed -n 1p)" = "badpath 0" ]
  done
  run timeout 60 ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/e2e/attack.py" "$SERVER_IP" 50052 upper-path GetName
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
  [ "$(handlers 50052 GetName)" -eq 3 ]
  # a canonical path with no rule is made "-2Fcloudcity...": no route after
  # decoding (it was "%2F...", which decodes to the method), raw and Huffman
  run crafted "$SERVER_IP" 50052 "$CG/sensor" badpath "$(hex /2Fcloudcity.DoorManager/SetAccessCode)"
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "badpath 12" ]
  run in_cgroup "$CG/sensor" "$CLIENT_NS" $PY "$ROOT/tests/e2e/h2_crafted.py" "$SERVER_IP" 50052 \
    plain:/2Fcloudcity.DoorManager/SetAccessCode plain:GetName plain:%2Fcloudcity.DoorManager/SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "/2Fcloudcity.DoorManager/SetAccessCode 12" ]
  [ "$(echo "$output" | sed -n 2p)" = "GetName 0" ]
  # a path that is not canonical keeps the client's bytes after its first:
  # never rewritten, its connection fails (Huffman above, raw here)
  [[ "$(echo "$output" | sed -n 3p)" == "error "* ]]
  for p in %2Fcloudcity.DoorManager/SetAccessCode /x/../cloudcity.DoorManager/SetAccessCode \
           -x/../cloudcity.DoorManager/SetAccessCode; do
    run crafted "$SERVER_IP" 50052 "$CG/sensor" badpath "$(hex "$p")"
    echo "$p: $output"
    [[ "$(echo "$output" | sed -n 1p)" == "error "* || "$(echo "$output" | sed -n 1p)" == "badpath reset" ]]
  done
  # ":PATH" is a :path: decided and rewritten alone; beside a ":path" it is a
  # second one, and the connection fails
  run crafted "$SERVER_IP" 50052 "$CG/sensor" upper-path SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode 12" ]
  run crafted "$SERVER_IP" 50052 "$CG/sensor" upper-path SetAccessCode GetName
  echo "$output"
  [[ "$(echo "$output" | sed -n 1p)" == "error "* || "$(echo "$output" | sed -n 1p)" == "SetAccessCode reset" ]]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50052 GetName)" -eq 4 ]
  has_event "bad :path"
}

# as_nobody CGROUP CMD...: CMD as uid/gid 65534 in the client namespace,
# started in CGROUP; first it tries to make CGROUP/admin and move itself
# there (what a workload may do where its cgroup is delegated to it)
# (nsenter, not ip netns exec: that one mounts a new /sys, without cgroups)
as_nobody() {
  local cg=$1; shift
  timeout 60 sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" \
    nsenter --net="/run/netns/$CLIENT_NS" setpriv --reuid 65534 --regid 65534 --clear-groups \
    sh -c 'mkdir "$0/admin" 2>/dev/null && echo $$ > "$0/admin/cgroup.procs" && echo moved >&2; exec "$@"' "$cg" "$@"
}

@test "an identity below another's cgroup: policy check warns; apply names a delegated cgroup that holds both, where a process can take the inner identity" {
  write_policy "$WORK/d.yaml" \
    "  - { from: public-terminal, to: door-manager, allow: [/cloudcity.DoorManager/GetName] }" \
    "  - { from: terminal-admin, to: door-manager, allow: [/cloudcity.DoorManager/SetAccessCode] }"
  sed -i "s|^identities:|identities:\n  terminal-admin: { cgroup: $CG/terminal/admin }|" "$WORK/d.yaml"
  run "$GRPCWALL" policy check "$WORK/d.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"$WORK/d.yaml:2: warning: identity 'terminal-admin' (cgroup /$ID/terminal/admin) is below the cgroup of identity 'public-terminal' ($WORK/d.yaml:3)"* ]]
  run "$GRPCWALL" policy check --strict "$WORK/d.yaml"
  [ "$status" -eq 1 ]
  # not delegated: the terminal's process cannot make the admin cgroup,
  # and stays what it is
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/d.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" != *"delegated to uid"* ]]
  run as_nobody "$CG/terminal" $PY "$ROOT/tests/e2e/attack.py" "$SERVER_IP" 50051 plain SetAccessCode GetName
  echo "$output"
  [[ "$output" != *moved* ]]
  [ "$(echo "$output" | grep -v moved | sed -n 1p)" = "SetAccessCode 12" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  # delegated to uid 65534 (as systemd's Delegate= does): apply names the
  # cgroup and both identities; and it is so: the process becomes the admin
  chown 65534 "$CG/terminal" "$CG/terminal/cgroup.procs" "$CG/terminal/cgroup.threads" "$CG/terminal/cgroup.subtree_control"
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/d.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"$WORK/d.yaml:3: identity 'public-terminal': warning: its cgroup and identity 'terminal-admin''s ($WORK/d.yaml:2) are both in $CG/terminal, delegated to uid 65534"* ]]
  run as_nobody "$CG/terminal" $PY "$ROOT/tests/e2e/attack.py" "$SERVER_IP" 50051 plain SetAccessCode
  echo "$output"
  [[ "$output" == *moved* ]]
  [ "$(echo "$output" | grep -v moved | sed -n 1p)" = "SetAccessCode 0" ]
}

@test "a full sockhash fails new policed connections closed, with an event" {
  "$GRPCWALL" detach --pin-dir "$PIN" >/dev/null
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" --max-connections 34 --no-fallback "$WORK/p.yaml" >/dev/null
  run "$GRPCWALL" status --pin-dir "$PIN" --json
  [ "$(echo "$output" | json "d['max_connections']")" -eq 34 ]
  # another size on a live pin dir is refused, naming the size it has
  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" --max-connections 100 --no-fallback
  [ "$status" -eq 1 ]
  [[ "$output" == *"holds 34 connections"* ]]
  local i
  for i in $(seq 1 34); do
    attack "$CG/terminal" hold 20 > "$WORK/hold-$i.out" 2>&1 &
    PIDS+=($!)
  done
  for i in $(seq 1 100); do [ "$(counter conns_tracked)" -ge 34 ] && break; sleep 0.1; done
  [ "$(counter conns_tracked)" -eq 34 ]
  run attack "$CG/terminal" plain SetAccessCode
  echo "$output"
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_tracked)" -eq 34 ]
  [ "$(counter guard_drops)" -ge 1 ]
  has_event "sockhash full"
}

@test "a connection still in SYN_SENT when a policy makes it policed is reset" {
  # the terminal has no identity yet
  cat > "$WORK/none.yaml" <<YAML
identities:
  door-sensor: { cgroup: $CG/sensor }
services:
  door-manager: { port: 50051, cidrs: [$SERVER_IP/32] }
rules:
  - { from: door-sensor, to: door-manager, allow: ["*"] }
YAML
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/none.yaml" >/dev/null
  ip -n "$SERVER_NS" addr del "$SERVER_IP/24" dev "$ID-b"
  attack "$CG/terminal" plain SetAccessCode > "$WORK/a.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 50); do ip netns exec "$CLIENT_NS" ss -tn state syn-sent | grep -q ":50051" && break; sleep 0.1; done
  ip netns exec "$CLIENT_NS" ss -tn state syn-sent | grep -q ":50051"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  ip -n "$SERVER_NS" addr add "$SERVER_IP/24" dev "$ID-b"
  wait "${PIDS[-1]}" || true
  cat "$WORK/a.out"
  [ "$(counter conns_reset)" -eq 1 ]
  grep -q "^error" "$WORK/a.out"
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
}

@test "the monitor escapes what the workload wrote: no forged lines, no terminal control, valid JSON" {
  # :path = "/cloudcity.DoorManager/SetAccessCode\n<forged ALLOW line>" ESC "[2J" 0xff
  local forged="2026-11-25T00:00:00Z ALLOW public-terminal -> door-manager"
  local hex
  hex=$($PY -c 'import sys; print((b"/cloudcity.DoorManager/SetAccessCode\n" + sys.argv[1].encode() + b"\x1b[2J\xff").hex())' "$forged")
  run attack "$CG/terminal" badpath "$hex"
  echo "$output"
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  run "$GRPCWALL" monitor --pin-dir "$PIN" --count 1 --timeout 10
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | wc -l)" -eq 1 ]
  [[ "$output" == *'SetAccessCode\x0a2026-11-25'*'\x1b[2J\xff'* ]]
  ! printf '%s' "$output" | grep -q $'\x1b' || false
  # the same event again, as JSON: valid, and the method says the same
  run attack "$CG/terminal" badpath "$hex"
  run "$GRPCWALL" monitor --pin-dir "$PIN" --json --count 1 --timeout 10
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | json "d['method']")" = '/cloudcity.DoorManager/SetAccessCode\x0a2026-11-25T00:00:00Z ALLOW public-terminal -> door-manager\x1b[2J\xff' ]
}

@test "a raw socket's TCP segment to a service is dropped; to another port it is not grpcwall's business" {
  run attack "$CG/terminal" raw "$CLIENT_IP" SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "raw EPERM" ]
  [ "$(counter guard_drops)" -eq 1 ]
  run crafted "$SERVER_IP" 50052 "$CG/terminal" raw "$CLIENT_IP" GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "raw sent" ]
  [ "$(counter guard_drops)" -eq 1 ]
}

@test "a policy with deeper identities than the live one: connections made before it take the deeper identity at their next call" {
  "$GRPCWALL" detach --pin-dir "$PIN" >/dev/null
  # v1: one identity one level deep, allowed everything
  cat > "$WORK/v1.yaml" <<YAML
identities:
  everyone: { cgroup: $CG }
services:
  door-manager: { port: 50051, cidrs: [$SERVER_IP/32] }
rules:
  - { from: everyone, to: door-manager, allow: ["*"] }
YAML
  # v2: the terminal below it, allowed GetName only
  cat > "$WORK/v2.yaml" <<YAML
identities:
  everyone: { cgroup: $CG }
  public-terminal: { cgroup: $CG/terminal }
services:
  door-manager: { port: 50051, cidrs: [$SERVER_IP/32] }
rules:
  - { from: everyone, to: door-manager, allow: ["*"] }
  - { from: public-terminal, to: door-manager, allow: [/cloudcity.DoorManager/GetName] }
YAML
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" --no-fallback "$WORK/v1.yaml" >/dev/null
  py_client "$CG/terminal" 50051 SetAccessCode "WAIT:$WORK/go" SetAccessCode SetAccessCode > "$WORK/c.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do grep -q "^SetAccessCode" "$WORK/c.out" && break; sleep 0.1; done
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/v2.yaml"
  touch "$WORK/go"
  wait "${PIDS[-1]}" || true
  cat "$WORK/c.out"
  [ "$(sed -n 1p "$WORK/c.out")" = "SetAccessCode OK" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  # the identity is read from the socket's cgroup path at every new
  # generation, to the policy's depth: the channel goes on as the terminal
  [ "$(sed -n 2p "$WORK/c.out" | cut -d' ' -f1-2)" = "SetAccessCode UNIMPLEMENTED" ]
  [ "$(sed -n 3p "$WORK/c.out" | cut -d' ' -f1-2)" = "SetAccessCode UNIMPLEMENTED" ]
  [ "$(counter conns_reset)" -eq 0 ]
  [ "$(counter conns_failed)" -eq 0 ]
  [ "$(events 1 | json "d['identity']")" = "public-terminal" ]
}

@test "the same header block bytes after the table changed under them are decided again, not repeated" {
  # stream 3 and 5: one block naming dynamic entry 62 (GetName), allowed;
  # the second is the repeat the walker allows unparsed. A trailers block then
  # puts SetAccessCode at entry 62 (decided: it names a :path; it goes in
  # rewritten), and the same bytes name it: decided again, denied
  run attack "$CG/terminal" repeat GetName SetAccessCode
  repeat_decided
  echo "repeat blocks: $(counter repeat_blocks), denied: $(counter denied)"
  [ "$(counter repeat_blocks)" -eq 1 ]
  [ "$(counter denied)" -eq 2 ]
}

@test "a call on a stream id below one the server refused without taking it is decided, not passed as trailers" {
  # a server that, like grpc-go, takes a stream id only once it accepts the
  # request: the block on stream 0x7fffffff has a malformed field and is
  # refused (RST_STREAM), so stream 1 opens a new stream there, where the
  # walker has seen the higher id
  lax_service public-terminal "$CG/terminal"
  run crafted "$SERVER_IP" 50052 "$CG/terminal" refused-id GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName reset" ]
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  [ "$(counter denied)" -eq 1 ]
  run events 1
  echo "$output"
  [ "$(echo "$output" | json "d['method']")" = "/cloudcity.DoorManager/SetAccessCode" ]
  [ "$(echo "$output" | json "d['stream']")" -eq 1 ]
  # the same in the fallback helper (the call's block continued)
  run crafted "$SERVER_IP" 50052 "$CG/terminal" refused-id GetName SetAccessCode continuation
  echo "$output"
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  [ "$(counter fallback_blocks)" -ge 1 ]
  # nor with 256 :path fields in its block (a byte-sized count wraps to none;
  # that server routes the last one): more than one fails the connection
  failed=$(counter conns_failed)
  run crafted "$SERVER_IP" 50052 "$CG/terminal" refused-id GetName SetAccessCode paths
  echo "$output"
  [ "$(echo "$output" | sed -n 2p)" != "SetAccessCode 0" ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_failed)" -eq $((failed + 1)) ]
  # the server's handler runs for an allowed call the same way (the control)
  run crafted "$SERVER_IP" 50052 "$CG/terminal" refused-id GetName GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 2p)" = "GetName 0" ]
  [ "$(handlers 50052 GetName)" -eq 1 ]
}

@test "a predating connection whose process lost its main thread (zombie leader, no /proc/PID/ns/net) is still reset" {
  command -v cc >/dev/null || need_skip "no C compiler (cc)"
  cc -O2 -pthread -o "$WORK/zombie_leader" "$ROOT/tests/e2e/zombie_leader.c"
  mkdir "$CG/late"
  in_cgroup "$CG/late" "$CLIENT_NS" "$WORK/zombie_leader" "$SERVER_IP" 50051 SetAccessCode "$WORK/go" \
    > "$WORK/z.out" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do grep -q connected "$WORK/z.out" && break; sleep 0.1; done
  zpid=$(cat "$CG/late/cgroup.procs" | head -1)
  for i in $(seq 1 50); do grep -q '^State:.*Z' "/proc/$zpid/status" && break; sleep 0.1; done
  grep '^State\|^Threads' "/proc/$zpid/status"
  # the case under test: nothing of the process names its network namespace but its thread
  ! readlink "/proc/$zpid/ns/net" || false
  readlink "/proc/$zpid/task/"*/ns/net || true   # the worker thread's still does
  # a policy that makes that connection policed (late: SetAccessCode denied)
  write_policy "$WORK/late.yaml"
  sed -i "s|door-sensor:     { cgroup: $CG/sensor }|door-sensor:     { cgroup: $CG/late }|" "$WORK/late.yaml"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/late.yaml"
  touch "$WORK/go"
  for i in $(seq 1 100); do grep -qE 'reset|answered' "$WORK/z.out" && break; sleep 0.1; done
  cat "$WORK/z.out"
  [ "$(counter conns_reset)" -ge 1 ]
  grep -q '^reset$' "$WORK/z.out"
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
}

@test "a predating connection in a network namespace no thread is in gets no payload byte to the server" {
  mkdir "$CG/away"
  # connects from the client namespace (no identity yet), then leaves it
  away_client "$CG/away" "$SERVER_IP"
  # a policy that gives the connection's cgroup an identity (SetAccessCode denied)
  write_policy "$WORK/away.yaml"
  sed -i "s|door-sensor:     { cgroup: $CG/sensor }|door-sensor:     { cgroup: $CG/away }|" "$WORK/away.yaml"
  grep -q "$CG/away" "$WORK/away.yaml"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/away.yaml"
  # the reset cannot reach it (that is what the guard is for)
  [ "$(counter conns_reset)" -eq 0 ]
  away_send
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  ! grep -q '^answered$' "$WORK/z.out" || false
  echo "guard drops: $(counter guard_drops), failed: $(counter conns_failed)"
  [ "$(counter guard_drops)" -ge 1 ]
  [ "$(counter conns_failed)" -ge 1 ]
  has_event "predates"
}

@test "a call sent from the page cache (sendfile) and rewritten in the file after the send reaches the server as it was decided" {
  cat > "$WORK/race.yaml" <<YAML
identities:
  public-terminal: { cgroup: $CG/terminal }
services:
  door-race: { port: 50052, cidrs: [$SERVER_IP/32] }
rules:
  - { from: public-terminal, to: door-race, allow: [/cloudcity.DoorManager/GetName] }
YAML
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/race.yaml" >/dev/null
  # a server that reads late (tests/e2e/sendfile_race.py): the caller
  # rewrites its file after the send, before the server reads. From a
  # cgroup no identity names (not policed) the server reads the rewrite:
  # the race is real here
  start_bg "$WORK/race-server.log" $PY "$ROOT/tests/e2e/sendfile_race.py" server 50052 0.5
  wait_port 50052
  in_cgroup "$CG/nobody" "$CLIENT_NS" $PY "$ROOT/tests/e2e/sendfile_race.py" client "$SERVER_IP" 50052 \
    /cloudcity.DoorManager/GetName /cloudcity.DoorManager/SetAccessCode
  wait "${PIDS[-1]}"
  cat "$WORK/race-server.log"
  grep -qx "path /cloudcity.DoorManager/SetAccessCode" "$WORK/race-server.log"
  # the policed caller: the server reads the call as the walker decided it
  start_bg "$WORK/race-server.log" $PY "$ROOT/tests/e2e/sendfile_race.py" server 50052 0.5
  wait_port 50052
  in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/e2e/sendfile_race.py" client "$SERVER_IP" 50052 \
    /cloudcity.DoorManager/GetName /cloudcity.DoorManager/SetAccessCode
  wait "${PIDS[-1]}"
  race_read_as_decided
}

@test "a socket connected again (connect(AF_UNSPEC), then connect) starts afresh: the DATA frame its last connection left unfinished covers nothing of the new one" {
  run attack "$CG/terminal" reconnect GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "reconnected" ]
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_opened)" -eq 2 ]
  [ "$(counter denied)" -eq 1 ]
}

@test "a connection resumed with TCP_REPAIR (a new socket takes the server's connection over with no handshake) gets no byte to the server" {
  # nothing the resumed socket could not restore: no timestamps, window
  # scaling or SACK on the client's connections
  ip netns exec "$CLIENT_NS" sysctl -qw net.ipv4.tcp_timestamps=0 net.ipv4.tcp_window_scaling=0 net.ipv4.tcp_sack=0
  # the control: a process of no identity resumes its connection this way
  # and its next call reaches the handler
  run attack "$CG/nobody" repair-resume 40001 GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1,4p | tr '\n' ' ')" = "GetName 0 resumed first byte acknowledged SetAccessCode 0 " ]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  # the policed workload: the resumed connection fails closed at once
  run attack "$CG/terminal" repair-resume 40002 GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1,3p | tr '\n' ' ')" = "GetName 0 resumed first byte held back " ]
  [ "$(echo "$output" | sed -n 4p)" != "SetAccessCode 0" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  [ "$(counter conns_failed)" -eq 1 ]
  has_event "TCP_REPAIR mode"
}

@test "bytes written in repair mode to the socket's own receive queue are taken back from the walk: the call after them is decided" {
  run attack "$CG/terminal" repair-divert GetName SetAccessCode
  echo "$output"
  # the server has every byte of both calls
  [ "$(echo "$output" | sed -n 1,2p | tr '\n' ' ')" = "diverted acknowledged " ]
  [ "$(handlers 50051 GetName)" -eq 1 ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter short_writes)" -eq 1 ]
  [ "$(counter denied)" -eq 1 ]
  [ "$(counter conns_failed)" -eq 0 ]
  has_event "no rule allows it"
}
