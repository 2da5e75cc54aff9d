#!/usr/bin/env bats
# IPv6 destinations are policed exactly like IPv4 (issue 8, item 4): a
# service defined by port only, or by an IPv6 prefix, with the server
# listening on [::].

load helpers

setup() {
  gw_setup
  start_grpc_server 50051 --addr "[::]:50051"
}
teardown() { gw_teardown; }

attack6() { crafted "$SERVER_IP6" 50051 "$@"; }

# policy6 FILE: GetName for public-terminal, to the server's IPv6 address only
policy6() {
  cat > "$1" <<YAML
identities:
  public-terminal: { cgroup: $CG/terminal }
services:
  door-manager: { port: 50051, cidrs: ["$SERVER_IP6/128"] }
rules:
  - { from: public-terminal, to: door-manager, allow: [/cloudcity.DoorManager/GetName] }
YAML
}

@test "IPv6: a service defined by port only polices connections to the server's IPv6 address" {
  cat > "$WORK/p.yaml" <<YAML
identities:
  public-terminal: { cgroup: $CG/terminal }
services:
  door-manager: { port: 50051 }
rules:
  - { from: public-terminal, to: door-manager, allow: [/cloudcity.DoorManager/GetName] }
YAML
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  run attack6 "$CG/terminal" plain GetName SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName 0" ]
  [ "$(echo "$output" | sed -n 2p)" = "SetAccessCode 12" ]
  [ "$(echo "$output" | sed -n 3p)" = "GetName 0" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(counter conns_opened)" -eq 1 ]
  ev=$(events 1)
  echo "$ev"
  [ "$(echo "$ev" | json "d['dst']")" = "[$SERVER_IP6]:50051" ]
  [ "$(echo "$ev" | json "d['src']")" = "[$CLIENT_IP6]:$(echo "$ev" | json "d['src'].rsplit(':', 1)[1]")" ]
  [ "$(echo "$ev" | json "d['identity']")" = "public-terminal" ]
}

@test "IPv6: service cidrs take IPv6 prefixes; other IPv6 destinations and IPv4 are apart" {
  policy6 "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  run "$GRPCWALL" policy show --pin-dir "$PIN"
  [[ "$output" == *"$SERVER_IP6/128"* ]]
  run attack6 "$CG/terminal" plain SetAccessCode
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode 12" ]
  # the IPv4 address is not in the service: not policed
  run crafted "$SERVER_IP" 50051 "$CG/terminal" plain SetAccessCode
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode 0" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 1 ]
  [ "$(counter conns_opened)" -eq 1 ]
}

@test "IPv6: a predating connection in a network namespace no thread is in gets no payload byte to the server" {
  policy6 "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" >/dev/null
  # connects before any policy, then leaves for a namespace of its own
  away_client "$CG/terminal" "$SERVER_IP6"
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$(counter conns_reset)" -eq 0 ]
  away_send
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  ! grep -q '^answered$' "$WORK/z.out" || false
  [ "$(counter guard_drops)" -ge 1 ]
  ev=$(events 1)
  echo "$ev"
  [[ "$(echo "$ev" | json "d['reason']")" == *"predates"* ]]
  [ "$(echo "$ev" | json "d['dst']")" = "[$SERVER_IP6]:50051" ]
  [ "$(echo "$ev" | json "d['identity']")" = "public-terminal" ]
}
