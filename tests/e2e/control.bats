#!/usr/bin/env bats
# The tool never harms what it does not own (issue 9): detach and a failed
# attach touch only grpcwall's own pins in a pin dir of grpcwall's own;
# attach checks everything before it changes anything and applies the policy
# last; the fallback helper is known by the lock it holds, not by its pid or
# name; --cgroup is taken from the cgroup v2 root; a monitor stopped by a
# signal says so. No network namespaces: nothing here sends a packet.

load helpers

setup() {
  [ "$(id -u)" -eq 0 ] || need_skip "end-to-end tests need root"
  ID="gwc$$-$BATS_TEST_NUMBER"
  CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
  CG="$CGROOT/$ID"
  PIN="/sys/fs/bpf/$ID"
  WORK="$BATS_TEST_TMPDIR"
  PIDS=()
  PINS=("$PIN")
  MOUNTS=()
  mkdir -p "$CG/a" "$CG/b"
}

teardown() {
  [ "$(id -u)" -eq 0 ] || return 0
  local p d
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for d in "${PINS[@]}"; do
    # a helper of this test's pin dir that detach did not stop: by its pid
    for p in $(pgrep -f -- "proxy --pin-dir $d --daemon"); do kill -9 "$p" 2>/dev/null; done
    "$GRPCWALL" detach --pin-dir "$d" >/dev/null 2>&1
    [ -d "$d" ] && rm -rf "$d"
    rm -f "/run/grpcwall/$(echo "${d#/}" | tr / _).log"
  done
  for d in "${MOUNTS[@]}"; do umount "$d" 2>/dev/null; done
  if [ -d "$CG" ]; then
    for d in $(find "$CG" -depth -type d); do xargs -r kill -9 < "$d/cgroup.procs" 2>/dev/null; done
    sleep 0.1
    find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
  fi
  return 0
}

# policy FILE CGROUP METHOD: identity a (CGROUP) may call METHOD on port 50051
policy() {
  cat > "$1" <<YAML
identities:
  a: { cgroup: $2 }
services:
  s: { port: 50051 }
rules:
  - from: a
    to: s
    allow: [$3]
YAML
}

# alive PID: the process exists and is not a zombie
alive() { [ -e "/proc/$1/stat" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# wait_gone PID: up to 5 s
wait_gone() {
  local i
  for i in $(seq 1 50); do alive "$1" || return 0; sleep 0.1; done
  return 1
}

# helper_procs: pids of this test's fallback helper, found by its command line
helper_procs() { pgrep -f -- "proxy --pin-dir $PIN --daemon" || true; }

@test "detach and attach refuse a directory that is not on bpffs, and leave its files" {
  mkdir "$WORK/notbpf"
  echo keep > "$WORK/notbpf/gw_config"
  echo keep > "$WORK/notbpf/notes.txt"
  run "$GRPCWALL" detach --pin-dir "$WORK/notbpf"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$WORK/notbpf is not on a bpf filesystem"* ]]
  [ "$(cat "$WORK/notbpf/notes.txt")" = keep ]
  [ "$(cat "$WORK/notbpf/gw_config")" = keep ]

  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$WORK/notbpf"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"not on a bpf filesystem"* ]]
  [ "$(ls "$WORK/notbpf" | tr '\n' ' ')" = "gw_config notes.txt " ]
  # a new directory there is not made either
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$WORK/notbpf/new"
  [ "$status" -eq 1 ]
  [ ! -e "$WORK/notbpf/new" ]
  [ -z "$(bpftool cgroup show "$CG")" ]
}

@test "the root of a bpffs mount is refused by attach and detach, and other software's pins there stay" {
  mkdir "$WORK/bpffs"
  mount -t bpf bpf "$WORK/bpffs"
  MOUNTS+=("$WORK/bpffs")
  bpftool map create "$WORK/bpffs/other_tool" type array key 4 value 4 entries 1 name other_tool
  before=$(ls "$WORK/bpffs" | tr '\n' ' ')   # with the kernel's maps.debug, progs.debug

  # a first attach that fails must not roll back what it did not pin
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$WORK/bpffs"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$WORK/bpffs is the root of a bpf filesystem"* ]]
  [ "$(ls "$WORK/bpffs" | tr '\n' ' ')" = "$before" ]
  run "$GRPCWALL" detach --pin-dir "$WORK/bpffs"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"root of a bpf filesystem"* ]]
  [ "$(ls "$WORK/bpffs" | tr '\n' ' ')" = "$before" ]
  bpftool map show pinned "$WORK/bpffs/other_tool" | grep -q other_tool
  [ -z "$(bpftool cgroup show "$CG")" ]
}

@test "a bpffs directory that is not grpcwall's is refused, and nothing in it is touched" {
  mkdir "$PIN"
  bpftool map create "$PIN/other" type hash key 4 value 4 entries 8 name other
  run "$GRPCWALL" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$PIN is not a grpcwall pin dir: it holds no gw_config; it holds 1 entry: other. Nothing was removed"* ]]
  [ "$(ls "$PIN")" = other ]
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"is not a grpcwall pin dir (it holds no gw_config) and not empty"* ]]
  [ "$(ls "$PIN")" = other ]
  [ -z "$(bpftool cgroup show "$CG")" ]

  # a map named gw_config of the same sizes, but not grpcwall's (no BTF
  # struct gw_config), does not make the directory grpcwall's
  bpftool map create "$PIN/gw_config" type array key 4 value 48 entries 1 name gw_config
  run "$GRPCWALL" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"its gw_config carries no BTF"* ]]
  [ "$(ls "$PIN" | tr '\n' ' ')" = "gw_config other " ]
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN"
  [ "$status" -eq 1 ]
  [ "$(ls "$PIN" | tr '\n' ' ')" = "gw_config other " ]
}

@test "detach removes only what grpcwall pinned and says what it left" {
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN"
  [ "$status" -eq 0 ]
  bpftool map create "$PIN/zz_other" type hash key 4 value 4 entries 8 name zz_other
  mkdir "$PIN/subdir"
  run "$GRPCWALL" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"left 2 entries grpcwall did not create: subdir, zz_other"* ]]
  [ "$(ls "$PIN" | tr '\n' ' ')" = "subdir zz_other " ]
  [ -z "$(bpftool cgroup show "$CG")" ]
  bpftool map show pinned "$PIN/zz_other" | grep -q zz_other
  # what is left is not grpcwall's: a second detach refuses it
  run "$GRPCWALL" detach --pin-dir "$PIN"
  [ "$status" -eq 1 ]
  [ "$(ls "$PIN" | tr '\n' ' ')" = "subdir zz_other " ]
}

@test "a refused first attach racing a successful one leaves the winner's pins" {
  "$GRPCWALL" attach --no-fallback --cgroup "$CG/a" --pin-dir "$PIN" > "$WORK/a.out" 2>&1 3>&- &
  pa=$!
  "$GRPCWALL" attach --no-fallback --cgroup "$CG/b" --pin-dir "$PIN" > "$WORK/b.out" 2>&1 3>&- &
  pb=$!
  PIDS+=("$pa" "$pb")
  ra=0; wait "$pa" || ra=$?
  rb=0; wait "$pb" || rb=$?
  cat "$WORK/a.out" "$WORK/b.out"
  # one wins, the other is refused for the cgroup
  [ $((ra == 0)) -ne $((rb == 0)) ]
  if [ "$ra" -eq 0 ]; then winner="$CG/a"; loser="$WORK/b.out"; else winner="$CG/b"; loser="$WORK/a.out"; fi
  grep -q "attached at another cgroup" "$loser"
  run "$GRPCWALL" status --pin-dir "$PIN" --json
  echo "$output"
  [ "$(echo "$output" | json "d['attached']")" = True ]
  [ "$(echo "$output" | json "d['cgroup']")" = "$winner" ]
  bpftool cgroup show "$winner" | grep -q gw_sockops
}

@test "an attach that is refused changes nothing live: not the policy, not the programs" {
  policy "$WORK/p1.yaml" "$CG/a" /cloudcity.DoorManager/GetName
  policy "$WORK/p2.yaml" "$CG/b/x" /cloudcity.DoorManager/SetAccessCode
  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p1.yaml"
  before=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']")

  run "$GRPCWALL" attach --no-fallback --cgroup "$CG/b" --pin-dir "$PIN" "$WORK/p2.yaml"
  echo "$output"
  [ "$status" -ne 0 ]
  refused=$output
  run "$GRPCWALL" policy show --pin-dir "$PIN" --json
  echo "$output"
  [ "$(echo "$output" | json "d['generation']")" -eq 1 ]
  [ "$(echo "$output" | json "d['file']")" = "$WORK/p1.yaml" ]
  grants=$(echo "$output" | json "[m['match'] for g in d['grants'] for m in g['methods']]")
  [[ "$grants" == *"GetName"* ]]
  [[ "$grants" != *"SetAccessCode"* ]]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']")" = "$before" ]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['cgroup']")" = "$CG" ]
  [[ "$refused" == *"attached at another cgroup ($CG, id "*"nothing was changed"* ]]
}

@test "a policy that went live is reported live when the reset after it fails" {
  policy "$WORK/p1.yaml" "$CG/a" /cloudcity.DoorManager/GetName
  policy "$WORK/p2.yaml" "$CG/b" /cloudcity.DoorManager/SetAccessCode
  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p1.yaml"
  rm "$PIN/prog_reset"   # the reset cannot run now
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p2.yaml"
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" == *"policy generation 2 is live, but resetting connections that predate it failed: "*"prog_reset"* ]]
  [ "$("$GRPCWALL" policy show --pin-dir "$PIN" --json | json "d['generation']")" -eq 2 ]
}

@test "detach stops the helper of a renamed grpcwall binary" {
  cp "$GRPCWALL" "$WORK/gw-renamed"
  "$WORK/gw-renamed" attach --cgroup "$CG" --pin-dir "$PIN"
  helper=$(helper_procs)
  [ -n "$helper" ]
  shown=$("$WORK/gw-renamed" status --pin-dir "$PIN" --json | json "d['fallback']['pid']")
  run "$WORK/gw-renamed" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  wait_gone "$helper"
  [ -z "$(helper_procs)" ]
  [ ! -e "$PIN" ]
  # status named it while it ran
  [ "$shown" -eq "$helper" ]
}

@test "a second helper for a pin dir is refused, naming the one that runs" {
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  helper=$(helper_procs)
  [ -n "$helper" ]
  run timeout 10 "$GRPCWALL" proxy --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" == *"a fallback helper (pid $helper) already runs for $PIN"* ]]
  alive "$helper"
}

@test "detach never signals a process that only took a dead helper's pid" {
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  helper=$(helper_procs)
  [ -n "$helper" ]
  kill -9 "$helper"
  wait_gone "$helper"
  # a process named grpcwall whose pid the helper's stats now hold, as if
  # the dead helper's pid had been reused by it
  cp /bin/sleep "$WORK/grpcwall"
  "$WORK/grpcwall" 300 3>&- &
  decoy=$!
  PIDS+=("$decoy")
  [ "$(cat "/proc/$decoy/comm")" = grpcwall ]
  pidhex=$(printf '%08x' "$decoy" | sed -E 's/(..)(..)(..)(..)/\4 \3 \2 \1/')
  bpftool map update pinned "$PIN/gw_fb_stats" key hex 00 00 00 00 value hex $pidhex $(printf '00 %.0s' $(seq 1 68))
  running=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['fallback']['running']")

  run "$GRPCWALL" detach --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  [ ! -e "$PIN" ]
  sleep 0.5
  alive "$decoy"
  # nor did status take it for the helper
  [ "$running" = False ]
}

@test "a helper that cannot start after a good attach: attach says grpcwall is attached and enforcing" {
  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN"
  # another process holds (an OFD lock, so no pid is shown) the lock only the helper may hold
  $PY -c 'import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))  # F_OFD_SETLK
print("locked", flush=True)
time.sleep(300)' "$PIN/gw_fb_stats" > "$WORK/lock.out" 3>&- &
  PIDS+=($!)
  for i in $(seq 1 50); do grep -q locked "$WORK/lock.out" && break; sleep 0.1; done
  run "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" == *"grpcwall is attached and enforcing at cgroup $CG, but the fallback helper did not start: "* ]]
  [[ "$output" == *"grpcwall proxy --pin-dir $PIN --daemon"* ]]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['attached']")" = True ]
  [ -z "$(helper_procs)" ]
}

@test "--cgroup is taken from the cgroup v2 root, recorded canonical; '..' and long paths are refused" {
  cd "$WORK"   # where a relative path would otherwise be looked for
  run "$GRPCWALL" attach --no-fallback --cgroup "$ID//a/./" --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"attached at cgroup $CG/a,"* ]]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['cgroup']")" = "$CG/a" ]
  bpftool cgroup show "$CG/a" | grep -q gw_sockops

  PINS+=("$PIN.x")
  run "$GRPCWALL" attach --no-fallback --cgroup "$ID/b/../a" --pin-dir "$PIN.x"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"--cgroup $ID/b/../a: '..' is not allowed"* ]]
  long="$ID/$(printf 'n%.0s' $(seq 1 250))"
  run "$GRPCWALL" attach --no-fallback --cgroup "$long" --pin-dir "$PIN.x"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"bytes long; grpcwall records the attach cgroup in at most 255 bytes"* ]]
  run "$GRPCWALL" attach --no-fallback --cgroup "$ID/missing" --pin-dir "$PIN.x"
  [ "$status" -eq 1 ]
  [[ "$output" == *"--cgroup $CG/missing is not a cgroup v2 directory"* ]]
  [ ! -e "$PIN.x" ]
}

@test "monitor --count stopped by a signal exits 130 (SIGINT) or 143 (SIGTERM), not 'timed out'" {
  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN"
  for sig in INT TERM; do
    "$GRPCWALL" monitor --pin-dir "$PIN" --count 5 > "$WORK/mon.out" 2> "$WORK/mon.err" 3>&- &
    mon=$!
    PIDS+=("$mon")
    # once its handlers are installed (SigCgt has SIGINT, bit 1)
    for i in $(seq 1 50); do
      cgt=$(awk '/^SigCgt/ { print $2 }' "/proc/$mon/status" 2>/dev/null || echo 0)
      [ $((0x$cgt & 2)) -ne 0 ] && break
      sleep 0.1
    done
    kill -"$sig" "$mon"
    rc=0; wait "$mon" || rc=$?
    cat "$WORK/mon.err"
    if [ "$sig" = INT ]; then [ "$rc" -eq 130 ]; else [ "$rc" -eq 143 ]; fi
    run grep -q "timed out" "$WORK/mon.err"
    [ "$status" -ne 0 ]
    grep -q "after 0 of 5 events" "$WORK/mon.err"
  done
}
