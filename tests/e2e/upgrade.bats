#!/usr/bin/env bats
# Attach over the pins of another grpcwall version (a package upgrade's
# reload): the maps of another layout are replaced by new ones with no
# moment without enforcement. "Another version" is this one built with one
# more denial per server connection (make build/other/grpcwall): its
# gw_srv_conns values are 8 bytes longer, as after a real layout change.

load helpers

OTHER="$ROOT/build/other/grpcwall"

setup() {
  gw_setup
  [ -x "$OTHER" ] || need_skip "build/other/grpcwall missing: make build/other/grpcwall"
  mkdir -p "$CG/doormgr"
}
teardown() {
  # whichever version's pins are there: this one's detach removes both
  gw_teardown
}

# value bytes of a pinned map
value_bytes() { bpftool map show pinned "$PIN/$1" | grep -o 'value [0-9]*B' | grep -o '[0-9]*'; }

# the client-side policy plus the server side's: callers by address
both_sides_policy() {
  write_policy "$1"
  sed -i "s#^services:#services:\n  door-manager-local: { port: 50052, cgroup: $CG/doormgr }#" "$1"
  sed -i "s#^identities:#identities:\n  remote-terminal: { cidrs: [$CLIENT_IP/32] }#" "$1"
  printf '%s\n' "  - { from: remote-terminal, to: door-manager-local, allow: [/cloudcity.DoorManager/GetName] }" >> "$1"
}

@test "attach over another version's maps replaces them with no moment unenforced: denied calls made all through never reach a handler; the old connections are reset and reconnect under policy" {
  both_sides_policy "$WORK/p.yaml"
  "$OTHER" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  [ "$(value_bytes gw_srv_conns)" -eq 1176 ]
  start_grpc_server 50051
  in_cgroup "$CG/doormgr" "$SERVER_NS" $PY "$ROOT/tests/grpc/server.py" --addr "0.0.0.0:50052" \
    > "$WORK/server-50052.log" 2>&1 3>&- &
  PIDS+=($!)
  wait_port 50052
  # callers all through the upgrade: a policed workload on one channel, the
  # same with a new connection per call, a remote caller known by address
  calls=()
  for i in $(seq 1 200); do calls+=(GetName SetAccessCode SLEEP:0.05); done   # ~12 s
  in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" --timeout 2 "$SERVER_IP:50051" \
    "${calls[@]}" > "$WORK/channel.log" 2>&1 3>&- &
  chan=$!
  PIDS+=($chan)
  ( for i in $(seq 1 40); do
      in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" --timeout 2 "$SERVER_IP:50051" \
        SetAccessCode GetName
    done > "$WORK/fresh.log" 2>&1 3>&- ) &
  fresh=$!
  PIDS+=($fresh)
  ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" --timeout 2 "$SERVER_IP:50052" \
    "${calls[@]}" > "$WORK/remote.log" 2>&1 3>&- &
  remote=$!
  PIDS+=($remote)
  sleep 1.5
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"were another grpcwall version's (gw_srv_conns (value bytes 1176 pinned, 1168 here)"* ]]
  [[ "$output" =~ reset\ [0-9]+\ connection\(s\)\ the\ old\ programs\ walked\ on\ receive ]]
  [[ "$output" =~ reset\ [0-9]+\ connection\(s\)\ that\ predate\ attach ]]
  [[ "$output" == *"policy generation 2 from $WORK/p.yaml"* ]]
  wait "$chan" "$fresh" "$remote"
  cat "$WORK/channel.log" "$WORK/fresh.log" "$WORK/remote.log"
  # not one denied call reached a handler, before, during or after
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  # the new maps, the programs on them, nothing half done
  [ "$(value_bytes gw_srv_conns)" -eq 1168 ]
  [ ! -e "$PIN/upgrading" ]
  run "$GRPCWALL" status --pin-dir "$PIN" --json
  echo "$output"
  [ "$(json "d['policy']['generation']" <<<"$output")" -eq 2 ]
  # the channels were reset once and went on: the last calls decided by the new programs
  [ "$(tail -2 "$WORK/channel.log" | tr '\n' ' ')" = "GetName OK SetAccessCode UNIMPLEMENTED 'Method not found!' " ]
  [ "$(tail -2 "$WORK/remote.log" | cut -d' ' -f1-2 | tr '\n' ' ')" = "GetName OK SetAccessCode PERMISSION_DENIED " ]
  [ "$(counter conns_reset)" -ge 1 ]   # the client side's, by the new programs (the old maps counted the other)
  # new connections after it: decided, counted by the new maps
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" "$SERVER_IP:50051" GetName SetAccessCode
  [ "$output" = "$(printf '%s\n' "GetName OK" "SetAccessCode UNIMPLEMENTED 'Method not found!'")" ]
  [ "$(counter denied)" -ge 1 ]
  # this version's detach removes all of it
  "$GRPCWALL" detach --pin-dir "$PIN"
  [ ! -e "$PIN" ]
  [ -z "$(bpftool cgroup show "$CG")" ]
}

@test "attach over another version's maps without a policy file changes nothing and says why; a half-built set a failed run left is removed" {
  write_policy "$WORK/p.yaml"
  "$OTHER" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  start_grpc_server 50051
  before=$(ls "$PIN" | tr '\n' ' ')
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"are another grpcwall version's (gw_srv_conns (value bytes 1176 pinned, 1168 here)"* ]]
  [[ "$output" == *"Nothing was changed: attach again with the policy file"* ]]
  [ "$(ls "$PIN" | tr '\n' ' ')" = "$before" ]
  [ "$(value_bytes gw_srv_conns)" -eq 1176 ]
  # the old version still enforces
  run in_cgroup "$CG/terminal" "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" "$SERVER_IP:50051" SetAccessCode
  [ "$output" = "SetAccessCode UNIMPLEMENTED 'Method not found!'" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  # what a run that failed half way leaves (a map pinned in upgrading/) goes
  # with the next attach, and with detach
  mkdir "$PIN/upgrading"
  bpftool map create "$PIN/upgrading/gw_config" type array key 4 value 4 entries 1 name leftover
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [ ! -e "$PIN/upgrading" ]
  mkdir "$PIN/upgrading"
  bpftool map create "$PIN/upgrading/gw_config" type array key 4 value 4 entries 1 name leftover
  run "$GRPCWALL" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  [ ! -e "$PIN" ]
}

# protected_setup: both sides' policy attached by the other version, the
# plain server on 50051 and the protected one on 50052
protected_setup() {
  both_sides_policy "$WORK/p.yaml"
  "$OTHER" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  start_grpc_server 50051
  in_cgroup "$CG/doormgr" "$SERVER_NS" $PY "$ROOT/tests/grpc/server.py" --addr "0.0.0.0:50052" \
    > "$WORK/server-50052.log" 2>&1 3>&- &
  PIDS+=($!)
  wait_port 50052
}

ingress_guards() { bpftool cgroup show "$CG" | grep -c " cgroup_inet_ingress .*gw_guard_in" || true; }

# attach_again SAYS: this version's attach with the policy succeeds, says
# SAYS, and leaves the new layout, nothing staged, one ingress guard
attach_again() {
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 0 ] || return 1
  [[ "$output" == *"$1"* ]] || return 1
  [ ! -e "$PIN/upgrading" ] || return 1
  [ "$(value_bytes gw_srv_conns)" -eq 1168 ] || return 1
  [ "$(ingress_guards)" -eq 1 ]
}

@test "an upgrade that dies before the switch leaves the old programs enforcing and no guard of its own; the next attach removes what it built and upgrades" {
  protected_setup
  run env GRPCWALL_UPGRADE_STOP_AT=staged "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$status" -eq 9 ]
  [ -d "$PIN/upgrading" ]
  [ "$(ingress_guards)" -eq 1 ]
  [ "$(value_bytes gw_srv_conns)" -eq 1176 ]
  # the old programs decide, and the protected server's callers get through
  run ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" --timeout 5 "$SERVER_IP:50052" GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | cut -d' ' -f1-2 | tr '\n' ' ')" = "GetName OK SetAccessCode PERMISSION_DENIED " ]
  attach_again "were another grpcwall version's"
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
}

@test "an upgrade that dies after the switch: the next attach, or detach, finishes it; denied calls made all through never reach a handler" {
  protected_setup
  # a remote caller with a new connection per call, all through
  ( for i in $(seq 1 40); do
      ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" --timeout 2 "$SERVER_IP:50052" SetAccessCode GetName
    done > "$WORK/fresh.log" 2>&1 3>&- ) &
  fresh=$!
  PIDS+=($fresh)
  sleep 1
  # dead after the switch and the new ingress guard, before the pins moved
  run env GRPCWALL_UPGRADE_STOP_AT=resets "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$status" -eq 9 ]
  [ -e "$PIN/upgrading/switched" ]
  # the pinned maps may not be the live programs' yet: apply refuses
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *"died half way"*"nothing was applied"* ]]
  sleep 1
  attach_again "finished moving the pins of an upgrade a run left half done"
  wait "$fresh"
  cat "$WORK/fresh.log"
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  [ "$(tail -2 "$WORK/fresh.log" | cut -d' ' -f1-2 | tr '\n' ' ')" = "SetAccessCode PERMISSION_DENIED GetName OK " ]
  # the same, dying right after the switch, and detach in place of attach
  "$GRPCWALL" detach --pin-dir "$PIN" >/dev/null
  "$OTHER" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  run env GRPCWALL_UPGRADE_STOP_AT=switched "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$status" -eq 9 ]
  run "$GRPCWALL" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"finished moving the pins of an upgrade a run left half done"* ]]
  [ ! -e "$PIN" ]
  [ -z "$(bpftool cgroup show "$CG")" ]
}

@test "an upgrade that dies between the ingress and the egress guard's switch: the protected server is decided by the new programs meanwhile; the next attach finishes it" {
  protected_setup
  run env GRPCWALL_UPGRADE_STOP_AT=guard_in "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$status" -eq 9 ]
  [ "$(ingress_guards)" -eq 1 ]   # the ingress guard's link runs the new program already
  run ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" --timeout 5 "$SERVER_IP:50052" SetAccessCode
  [ "$(echo "$output" | cut -d' ' -f1-2)" = "SetAccessCode PERMISSION_DENIED" ]
  attach_again "finished moving the pins of an upgrade a run left half done"
  [ "$(bpftool cgroup show "$CG" | awk '/gw_guard_in/ { print $1 }')" = "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']['guard_in']")" ]
  run ip netns exec "$CLIENT_NS" $PY "$ROOT/tests/grpc/client.py" --timeout 5 "$SERVER_IP:50052" GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | cut -d' ' -f1-2 | tr '\n' ' ')" = "GetName OK SetAccessCode PERMISSION_DENIED " ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
}
