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
  [ "$(value_bytes gw_srv_conns)" -eq 1112 ]
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
  [[ "$output" == *"were another grpcwall version's (gw_srv_conns (value bytes 1112 pinned, 1104 here)"* ]]
  [[ "$output" == *"reset 1 connection(s) the old programs walked on receive"* ]]
  [[ "$output" == *"reset 1 connection(s) that predate attach"* ]]
  [[ "$output" == *"policy generation 2 from $WORK/p.yaml"* ]]
  wait "$chan" "$fresh" "$remote"
  cat "$WORK/channel.log" "$WORK/fresh.log" "$WORK/remote.log"
  # not one denied call reached a handler, before, during or after
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50052 SetAccessCode)" -eq 0 ]
  # the new maps, the programs on them, nothing half done
  [ "$(value_bytes gw_srv_conns)" -eq 1104 ]
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
  [[ "$output" == *"are another grpcwall version's (gw_srv_conns (value bytes 1112 pinned, 1104 here)"* ]]
  [[ "$output" == *"Nothing was changed: attach again with the policy file"* ]]
  [ "$(ls "$PIN" | tr '\n' ' ')" = "$before" ]
  [ "$(value_bytes gw_srv_conns)" -eq 1112 ]
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
