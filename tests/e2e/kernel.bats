#!/usr/bin/env bats
# What attach does on a kernel without a facility grpcwall uses (README,
# Kernels). This machine's kernel has them all: GRPCWALL_KERNEL_PRETEND
# makes attach's probe report the named ones missing, and only that.

load helpers

setup() {
  gw_setup
  write_policy "$WORK/p.yaml"
  start_grpc_server 50051
}
teardown() { gw_teardown; }

# the monitor events waiting in the ring buffer, as JSON lines
waiting_events() { "$GRPCWALL" monitor --pin-dir "$PIN" --json --count 20 --timeout 3 2>/dev/null || true; }

@test "without bpf_sock_destroy: attach warns, status says so, new connections are policed, a predating one is not reset and none of its RPCs get through" {
  export GRPCWALL_KERNEL_PRETEND=sock_destroy   # (teardown's detach sees it too)
  # a connection made before grpcwall is there: its first call is not policed
  predating_client "$WORK/old.out" SetAccessCode GetName --timeout 3

  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"grpcwall attached at cgroup $CG"* ]]
  [[ "$output" == *"grpcwall: warning: this kernel ($(uname -r)) has no bpf_sock_destroy kfunc (Linux 6.5), so grpcwall cannot reset connections that predate attach"* ]]
  [[ "$output" == *"NOT reset and its RPCs are NOT walked, nor do they pass unchecked"* ]]
  [[ "$output" == *"Restart those clients and servers yourself"* ]]
  [[ "$output" != *"connection(s) that predate attach"* ]]   # no reset ran
  [ ! -e "$PIN/prog_reset" ]
  [ -e "$PIN/prog_guard" ] && [ -e "$PIN/link_sockops" ]

  # status: the feature is missing, and why
  st=$("$GRPCWALL" status --pin-dir "$PIN" --json)
  [ "$(echo "$st" | json "d['features']['reset_predating']")" = "False" ]
  [ "$(echo "$st" | json "'sock_destroy' in d['features']['missing']")" = "True" ]
  [ "$(echo "$st" | json "d['features']['kernel']")" = "$(uname -r)" ]
  [ "$(echo "$st" | json "d['attached']")" = "True" ]
  run "$GRPCWALL" status --pin-dir "$PIN"
  echo "$output"
  [[ "$output" == *"predating connections cannot be reset on this kernel (no sock_destroy (Linux 6.5))"* ]]

  # the predating connection: not reset; what it sends is held back, so
  # the denied call and the allowed one after it both time out unanswered
  touch "$WORK/go"
  wait "${PIDS[-1]}"
  cat "$WORK/old.out"
  [[ "$(sed -n 2p "$WORK/old.out")" == "SetAccessCode DEADLINE_EXCEEDED"* ]]
  [[ "$(sed -n 3p "$WORK/old.out")" == "GetName DEADLINE_EXCEEDED"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 1 ]   # the one before attach
  [ "$(counter conns_reset)" -eq 0 ]
  [ "$(counter guard_drops)" -ge 1 ]
  [ "$(counter conns_failed)" -ge 1 ]
  ev=$(waiting_events)
  echo "$ev"
  echo "$ev" | grep -q predates

  # new connections are policed as on any kernel
  run py_client "$CG/terminal" 50051 GetName SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName OK" ]
  [[ "$(echo "$output" | sed -n 2p)" == "SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(echo "$output" | sed -n 3p)" = "GetName OK" ]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  [ "$(handlers 50051 GetName)" -eq 3 ]
  [ "$(counter denied)" -eq 1 ]

  # a policy apply says the same instead of failing on the missing prog_reset
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"policy generation 2 live"* ]]
  [[ "$output" == *"warning: this kernel ($(uname -r)) has no bpf_sock_destroy kfunc (Linux 6.5)"* ]]
  [[ "$output" != *"prog_reset"* ]]

  # and detach, which resets the connections protected servers accepted
  run "$GRPCWALL" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"this kernel cannot reset connections"* ]]
  [[ "$output" == *"grpcwall detached: $PIN removed"* ]]
  [ ! -e "$PIN" ]
}

@test "a kernel without a required facility: attach exits 2 with the Linux version it needs, and makes no pin dir" {
  GRPCWALL_KERNEL_PRETEND=bpf_loop run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 2 ]
  [ "$output" = "grpcwall: needs Linux 5.17 or later for bpf_loop in cgroup_skb, sk_msg, sk_skb and sock_ops programs (Linux 5.17) (this kernel is $(uname -r)): nothing was attached" ]
  [ ! -e "$PIN" ]
  # several: the newest version they need, each with its own
  GRPCWALL_KERNEL_PRETEND=sockhash,sk_msg_pid_tgid,sock_destroy,bpf_get_current_comm run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 2 ]
  [ "$output" = "grpcwall: needs Linux 5.8 or later for sockhash maps (Linux 4.18) and bpf_get_current_pid_tgid in sk_msg programs (Linux 5.8) (this kernel is $(uname -r)): nothing was attached" ]
  [ ! -e "$PIN" ]
  # an attached pin dir is left as it was
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  before=$(ls "$PIN")
  GRPCWALL_KERNEL_PRETEND=sk_storage run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$status" -eq 2 ]
  [[ "$output" == *"socket local storage maps (Linux 5.2)"* ]]
  [ "$(ls "$PIN")" = "$before" ]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['policy']['generation']")" -eq 1 ]
  # a name that is not a facility is bad input, and lists them
  GRPCWALL_KERNEL_PRETEND=sock_destroyy run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  [ "$status" -eq 1 ]
  [[ "$output" == *"'sock_destroyy' is not a kernel facility grpcwall checks; it checks btf, "*"sock_destroy"* ]]
}

@test "with every facility: the reset is loaded and status says so; attach without it and back" {
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  [ -e "$PIN/prog_reset" ]
  st=$("$GRPCWALL" status --pin-dir "$PIN" --json)
  [ "$(echo "$st" | json "d['features']['reset_predating']")" = "True" ]
  [ "$(echo "$st" | json "d['features']['missing']")" = "[]" ]
  run "$GRPCWALL" status --pin-dir "$PIN"
  [[ "$output" == *"connections that predate attach or a policy are reset"* ]]
  # attach again on the "older" kernel: the reset program goes, and it says so
  GRPCWALL_KERNEL_PRETEND=iter_tcp run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"has no BPF tcp iterator (iter/tcp) (Linux 5.9)"* ]]
  [ ! -e "$PIN/prog_reset" ]
  [ "$(GRPCWALL_KERNEL_PRETEND=iter_tcp "$GRPCWALL" status --pin-dir "$PIN" --json | json "d['features']['reset_predating']")" = "False" ]
  # and back: enforcement never stopped, the reset is there again
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  [ -e "$PIN/prog_reset" ]
  run py_client "$CG/terminal" 50051 GetName SetAccessCode
  [ "$(echo "$output" | sed -n 1p)" = "GetName OK" ]
  [[ "$(echo "$output" | sed -n 2p)" == "SetAccessCode UNIMPLEMENTED"* ]]
}

# calls HELPER in the verified (xlated) program pinned at PIN/NAME
calls() { bpftool prog dump xlated pinned "$PIN/$1" | grep -c "call $2#" || true; }

@test "without the current task in socket programs (before Linux 6.10 and 6.16): attach warns, no program calls those helpers, enforcement is the same and events carry no pid or command" {
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  # the control: with them, sockops and every event call both
  [ "$(calls prog_sockops bpf_get_current_comm)" -ge 1 ]
  [ "$(calls prog_sockops bpf_get_current_pid_tgid)" -ge 1 ]
  [ "$(calls prog_guard bpf_get_current_comm)" -ge 1 ]
  "$GRPCWALL" detach --pin-dir "$PIN"

  export GRPCWALL_KERNEL_PRETEND=bpf_get_current_comm,bpf_get_current_pid_tgid
  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"grpcwall: warning: this kernel ($(uname -r)) has no bpf_get_current_pid_tgid in cgroup_skb, sk_skb and sock_ops programs (Linux 6.10) and bpf_get_current_comm in "*"(Linux 6.16): events (monitor, the fallback's log) carry no pid or command"*"enforcement is the same"* ]]
  # what the verifier kept: no call to either where the kernel would refuse it
  local p
  for p in prog_sockops prog_guard prog_guard_in prog_sk_skb; do
    [ "$(calls $p bpf_get_current_comm)" -eq 0 ]
    [ "$(calls $p bpf_get_current_pid_tgid)" -eq 0 ]
  done
  [ "$(calls prog_sk_msg bpf_get_current_comm)" -eq 0 ]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['features']['task_in_events']")" = False ]

  run py_client "$CG/terminal" 50051 GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName OK" ]
  [[ "$(echo "$output" | sed -n 2p)" == "SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]
  ev=$("$GRPCWALL" monitor --pin-dir "$PIN" --json --count 1 --timeout 5)
  echo "$ev"
  [ "$(echo "$ev" | json "d['verdict']")" = deny ]
  [ "$(echo "$ev" | json "d['method']")" = /cloudcity.DoorManager/SetAccessCode ]
  [ "$(echo "$ev" | json "d['pid']")" -eq 0 ]
  [ "$(echo "$ev" | json "d['conn_pid']")" -eq 0 ]
  [ "$(echo "$ev" | json "d['comm']")" = "" ]
}
