#!/usr/bin/env bats
# Run it like a system service (issue 13): make install / uninstall, the
# manual page, the systemd units (verified, and their Exec lines run as
# systemd would run them), and the Debian package from make deb (lintian,
# install, upgrade, purge).

load helpers

# install_to PREFIX [VAR=VALUE...]: make install of the binary under test
install_to() {
  local prefix=$1; shift
  make -s -C "$ROOT" BUILD="$(dirname "$GRPCWALL")" -o "$(dirname "$GRPCWALL")/grpcwall" install \
    PREFIX="$prefix" "$@"
}

setup() {
  [ "$(id -u)" -eq 0 ] || need_skip "end-to-end tests need root"
  WORK="$BATS_TEST_TMPDIR"
  PIDS=()
}

teardown() {
  [ "$(id -u)" -eq 0 ] || return 0
  [ -n "${USERBUILD:-}" ] && rm -rf "$USERBUILD"
  if [ -n "${PURGE_DEB:-}" ]; then
    dpkg --purge grpcwall >/dev/null 2>&1
  fi
  if [ -n "${ID:-}" ]; then
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    gw_teardown
  fi
  return 0
}

@test "make install puts the binary, grpcwall(8), the units and an example policy under PREFIX and DESTDIR; never overwrites a policy; uninstall keeps the configuration" {
  local root="$WORK/root"
  run install_to /usr DESTDIR="$root" UNITDIR=/lib/systemd/system
  echo "$output"
  [ "$status" -eq 0 ]
  [ -x "$root/usr/sbin/grpcwall" ]
  cmp "$root/usr/sbin/grpcwall" "$GRPCWALL"
  [ -f "$root/usr/share/man/man8/grpcwall.8" ]
  [ -f "$root/etc/grpcwall/policy.yaml" ]
  [ -f "$root/etc/default/grpcwall" ]
  # the units name the installed paths, not DESTDIR's
  grep -qx 'ExecStart=/usr/sbin/grpcwall attach --fallback-managed --state-dir ${GRPCWALL_STATE_DIR} --pin-dir ${GRPCWALL_PIN_DIR} $GRPCWALL_ATTACH_OPTS ${GRPCWALL_POLICY}' \
    "$root/lib/systemd/system/grpcwall.service"
  grep -q ' GRPCWALL_STATE_DIR=/var/lib/grpcwall$' "$root/lib/systemd/system/grpcwall.service"
  grep -qx 'EnvironmentFile=-/etc/default/grpcwall' "$root/lib/systemd/system/grpcwall-proxy.service"
  grep -qx 'GRPCWALL_POLICY=/etc/grpcwall/policy.yaml' "$root/etc/default/grpcwall"
  # the example policy is valid and polices nothing
  run "$GRPCWALL" policy check "$root/etc/grpcwall/policy.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"0 identities, 0 services, 0 rules"* ]]

  # a second install keeps an edited policy and settings
  echo "# mine" >> "$root/etc/grpcwall/policy.yaml"
  echo "GRPCWALL_ATTACH_OPTS=--cgroup mine" >> "$root/etc/default/grpcwall"
  run install_to /usr DESTDIR="$root" UNITDIR=/lib/systemd/system
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"kept $root/etc/grpcwall/policy.yaml (not overwritten)"* ]]
  [ "$(tail -1 "$root/etc/grpcwall/policy.yaml")" = "# mine" ]
  [ "$(tail -1 "$root/etc/default/grpcwall")" = "GRPCWALL_ATTACH_OPTS=--cgroup mine" ]

  run make -s -C "$ROOT" uninstall PREFIX=/usr DESTDIR="$root" UNITDIR=/lib/systemd/system
  echo "$output"
  [ "$status" -eq 0 ]
  [ ! -e "$root/usr/sbin/grpcwall" ]
  [ ! -e "$root/usr/share/man/man8/grpcwall.8" ]
  [ ! -e "$root/lib/systemd/system/grpcwall.service" ]
  [ ! -e "$root/lib/systemd/system/grpcwall-proxy.service" ]
  [ "$(tail -1 "$root/etc/grpcwall/policy.yaml")" = "# mine" ]
}

@test "grpcwall(8) renders without warnings and names every subcommand and option of --help-all" {
  run bash -c "MANWIDTH=200 man --warnings -l '$ROOT/dist/grpcwall.8' 2>&1 >/dev/null"
  echo "$output"
  [ -z "$output" ]
  MANWIDTH=200 man -l "$ROOT/dist/grpcwall.8" 2>/dev/null | col -b > "$WORK/man.txt"
  "$GRPCWALL" --help-all > "$WORK/help.txt"
  local missing=() w
  # subcommands: the lines of --help-all that are a bare word; options: every --long
  for w in $(grep -E '^ {0,6}[a-z]+$' "$WORK/help.txt" | tr -d ' ' | sort -u) \
           $(grep -oE -- '--[a-z][a-z-]+' "$WORK/help.txt" | sort -u); do
    [ "$w" = "--help" ] || [ "$w" = "--help-all" ] && continue
    grep -qF -- "$w" "$WORK/man.txt" || missing+=("$w")
  done
  echo "not in grpcwall(8): ${missing[*]}"
  [ ${#missing[@]} -eq 0 ]
  # and the policy format, the files and the units
  grep -q "POLICY FORMAT" "$WORK/man.txt"
  grep -q "/etc/grpcwall/policy.yaml" "$WORK/man.txt"
  grep -q "grpcwall-proxy.service" "$WORK/man.txt"
}

@test "systemd-analyze verify passes on both units as make install writes them" {
  command -v systemd-analyze >/dev/null || need_skip "systemd-analyze is not installed"
  local p="$WORK/pfx"
  run install_to "$p" SYSCONFDIR="$p/etc"
  [ "$status" -eq 0 ]
  run env MANPATH="$p/share/man" systemd-analyze verify "$p/lib/systemd/system/grpcwall.service" \
    "$p/lib/systemd/system/grpcwall-proxy.service"
  echo "$output"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  grep -qx 'Restart=always' "$p/lib/systemd/system/grpcwall-proxy.service"
  grep -qx 'BindsTo=grpcwall.service' "$p/lib/systemd/system/grpcwall-proxy.service"
  grep -qx 'RestartPreventExitStatus=3' "$p/lib/systemd/system/grpcwall-proxy.service"
  grep -qx 'Before=sysinit.target network-pre.target shutdown.target' "$p/lib/systemd/system/grpcwall.service"
  grep -qx 'Wants=network-pre.target grpcwall-proxy.service' "$p/lib/systemd/system/grpcwall.service"
  grep -qx 'WantedBy=sysinit.target' "$p/lib/systemd/system/grpcwall.service"
}

@test "the units' Exec lines, run as systemd runs them: start attaches and enforces, the proxy unit runs the helper attach left alone, reload applies the file (a bad one changes nothing), stop detaches" {
  gw_setup
  local p="$WORK/pfx" unit="$WORK/pfx/lib/systemd/system"
  run install_to "$p" SYSCONFDIR="$p/etc"
  [ "$status" -eq 0 ]
  write_policy "$p/etc/grpcwall/policy.yaml"
  cat > "$p/etc/default/grpcwall" <<EOF
GRPCWALL_PIN_DIR=$PIN
GRPCWALL_STATE_DIR=$WORK/state
GRPCWALL_ATTACH_OPTS="--cgroup '$CG' --max-connections 1024"
EOF
  run $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall.service" start
  echo "$output"
  [ "$status" -eq 0 ]
  run "$GRPCWALL" status --pin-dir "$PIN" --json
  echo "$output"
  [ "$(echo "$output" | json "d['attached']")" = True ]
  [ "$(echo "$output" | json "d['cgroup']")" = "$CG" ]
  [ "$(echo "$output" | json "d['max_connections']")" -eq 1024 ]
  [ "$(echo "$output" | json "d['policy']['file']")" = "$p/etc/grpcwall/policy.yaml" ]
  # --fallback-managed: attach started no helper of its own
  [ "$(echo "$output" | json "d['fallback']['running']")" = False ]
  # the policy that went live is kept for the next boot
  cmp "$p/etc/grpcwall/policy.yaml" "$WORK/state/policy.yaml"

  # what a user checks: the policy is enforced
  start_grpc_server 50051
  run py_client "$CG/terminal" 50051 GetName SetAccessCode
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "GetName OK" ]
  [[ "$(echo "$output" | sed -n 2p)" == "SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]

  # the proxy unit's helper, in the foreground as Type=exec runs it
  $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall-proxy.service" start > "$WORK/proxy.log" 2>&1 3>&- &
  PIDS+=($!)
  local i
  for i in $(seq 1 50); do
    [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['fallback']['running']")" = True ] && break
    sleep 0.1
  done
  cat "$WORK/proxy.log"
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['fallback']['running']")" = True ]
  helper=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['fallback']['pid']")
  [ "$(cat /proc/$helper/comm)" = grpcwall ]

  # reload: the edited file goes live, the unit's helper is left alone
  write_policy "$p/etc/grpcwall/policy.yaml" "  - { from: public-terminal, to: door-manager, allow: [/cloudcity.DoorManager/SetAccessCode] }"
  cp "$p/etc/grpcwall/policy.yaml" "$WORK/p2.yaml"
  run $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall.service" reload
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$("$GRPCWALL" policy show --pin-dir "$PIN" --json | json "d['generation']")" -eq 2 ]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['fallback']['pid']")" -eq "$helper" ]
  run py_client "$CG/terminal" 50051 SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode OK" ]
  [[ "$(echo "$output" | sed -n 2p)" == "GetName UNIMPLEMENTED"* ]]

  # a bad file: the reload fails saying where, and nothing changes
  printf 'identities:\n  x: { cgroup: %s }\n  x: { cgroup: %s }\nservices: {}\nrules: []\n' "$CG/a" "$CG/b" \
    > "$p/etc/grpcwall/policy.yaml"
  run $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall.service" reload
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$p/etc/grpcwall/policy.yaml:3: "* ]]
  [ "$("$GRPCWALL" policy show --pin-dir "$PIN" --json | json "d['generation']")" -eq 2 ]
  run py_client "$CG/terminal" 50051 SetAccessCode
  [ "$output" = "SetAccessCode OK" ]

  # stop: detached, the pin dir gone, the helper stopped (and a helper
  # started now finds nothing attached: exit 3, which the unit does not restart)
  run $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall.service" stop
  echo "$output"
  [ "$status" -eq 0 ]
  [ ! -e "$PIN" ]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['attached']")" = False ]
  for i in $(seq 1 50); do [ -d "/proc/$helper" ] || break; sleep 0.1; done
  [ ! -d "/proc/$helper" ]
  run $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall-proxy.service" start
  echo "$output"
  [ "$status" -eq 3 ]

  # a boot with the bad file still in place: the last policy that went
  # live is attached instead (SetAccessCode allowed, GetName denied), loudly
  run $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall.service" start
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"$p/etc/grpcwall/policy.yaml:3: "* ]]
  [[ "$output" == *"warning: $p/etc/grpcwall/policy.yaml was refused (above) and nothing was attached yet: attaching with the last policy that went live from --state-dir instead, $WORK/state/policy.yaml"* ]]
  [ "$("$GRPCWALL" policy show --pin-dir "$PIN" --json | json "d['file']")" = "$WORK/state/policy.yaml" ]
  run py_client "$CG/terminal" 50051 SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | sed -n 1p)" = "SetAccessCode OK" ]
  [[ "$(echo "$output" | sed -n 2p)" == "GetName UNIMPLEMENTED"* ]]
  # the refused file was not kept over the good copy
  cmp "$WORK/p2.yaml" "$WORK/state/policy.yaml"
  run $PY "$ROOT/tests/tools/unit_exec.py" "$unit/grpcwall.service" stop
  [ "$status" -eq 0 ]
  [ ! -e "$PIN" ]
}

@test "make deb: lintian finds no errors; the package installs, upgrades keeping an edited policy, and purges clean" {
  local deb
  deb=$(ls "$(dirname "$GRPCWALL")"/deb/grpcwall_*_*.deb 2>/dev/null | grep -v dbgsym | head -1)
  [ -n "$deb" ] || need_skip "no package: run make deb (make test does)"
  # never over an operator's grpcwall: a package, or make install's files
  local f
  for f in /usr/sbin/grpcwall /etc/grpcwall /etc/default/grpcwall /var/lib/grpcwall /lib/systemd/system/grpcwall.service \
           /etc/systemd/system/sysinit.target.wants/grpcwall.service /etc/systemd/system/multi-user.target.wants/grpcwall.service; do
    [ ! -e "$f" ] || need_skip "$f exists: grpcwall is installed on this machine, not touching it"
  done
  if dpkg-query -W -f='${Status}' grpcwall 2>/dev/null | grep -q 'install ok'; then
    need_skip "a grpcwall package is installed on this machine: not touching it"
  fi
  command -v lintian >/dev/null || need_skip "lintian is not installed"
  run lintian --fail-on error "$deb"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" != *"E: "* ]]

  PURGE_DEB=1
  run dpkg -i "$deb" < /dev/null
  echo "$output"
  [ "$status" -eq 0 ]
  [ -x /usr/sbin/grpcwall ]
  /usr/sbin/grpcwall policy check /etc/grpcwall/policy.yaml
  [ "$(man -w grpcwall)" = /usr/share/man/man8/grpcwall.8.gz ]
  [ -f /lib/systemd/system/grpcwall.service ]
  [ -f /lib/systemd/system/grpcwall-proxy.service ]
  run systemd-analyze verify /lib/systemd/system/grpcwall.service /lib/systemd/system/grpcwall-proxy.service
  echo "$output"
  [ "$status" -eq 0 ]
  # enabled for boot (attaches before sysinit.target), not started by the install
  [ -L /etc/systemd/system/sysinit.target.wants/grpcwall.service ]
  [ -L /etc/systemd/system/multi-user.target.wants/grpcwall-proxy.service ]
  # the maintainer scripts: removal stops (detaches), an upgrade reloads
  dpkg-deb -e "$deb" "$WORK/ctl"
  grep -q 'deb-systemd-invoke stop grpcwall-proxy.service grpcwall.service' "$WORK/ctl/prerm"
  grep -q 'deb-systemd-invoke reload grpcwall.service' "$WORK/ctl/postinst"
  [ ! -e /sys/fs/bpf/grpcwall/gw_config ]
  dpkg-query -W -f='${Conffiles}\n' grpcwall | grep -q ' /etc/grpcwall/policy.yaml '
  dpkg-query -W -f='${Conffiles}\n' grpcwall | grep -q ' /etc/default/grpcwall '

  # upgrade to a newer version of the same package: an edited policy stays, no prompt
  echo "# edited by the operator" >> /etc/grpcwall/policy.yaml
  local v
  v=$(dpkg-deb -f "$deb" Version)
  dpkg-deb -R "$deb" "$WORK/pkg"
  sed -i "s/^Version: .*/Version: $v.1/" "$WORK/pkg/DEBIAN/control"
  dpkg-deb -b "$WORK/pkg" "$WORK/grpcwall-next.deb" >/dev/null
  run dpkg -i "$WORK/grpcwall-next.deb" < /dev/null
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(dpkg-query -W -f='${Version}' grpcwall)" = "$v.1" ]
  [ "$(tail -1 /etc/grpcwall/policy.yaml)" = "# edited by the operator" ]
  [ -x /usr/sbin/grpcwall ]

  run dpkg --purge grpcwall < /dev/null
  echo "$output"
  [ "$status" -eq 0 ]
  PURGE_DEB=
  [ ! -e /usr/sbin/grpcwall ]
  [ ! -e /etc/grpcwall ]
  [ ! -e /etc/default/grpcwall ]
  [ ! -e /lib/systemd/system/grpcwall.service ]
  [ ! -e /var/lib/grpcwall ]
  [ ! -e /etc/systemd/system/sysinit.target.wants/grpcwall.service ]
  [ ! -e /etc/systemd/system/multi-user.target.wants/grpcwall-proxy.service ]
  ! dpkg-query -W -f='${Status}' grpcwall 2>/dev/null | grep -q 'install ok'
}

@test "plain make as a user without /usr/sbin in PATH finds bpftool" {
  id nobody >/dev/null 2>&1 || need_skip "no user nobody"
  local b
  b=$(mktemp -d /tmp/gw-userbuild.XXXXXX)
  USERBUILD=$b
  chown nobody "$b"
  # the first two steps that run bpftool: kernel BTF to vmlinux.h, and a skeleton
  run runuser -u nobody -- env PATH=/usr/local/bin:/usr/bin:/bin make -s -C "$ROOT" BUILD="$b" \
    "$b/vmlinux.h"
  echo "$output"
  [ "$status" -eq 0 ]
  grep -q "struct bpf_sock_ops {" "$b/vmlinux.h"
  run runuser -u nobody -- env PATH=/usr/local/bin:/usr/bin:/bin make -s -C "$ROOT" BUILD="$b" -n "$b/grpcwall.skel.h"
  echo "$output"
  [[ "$output" == *"/usr/sbin/bpftool gen skeleton"* ]]
}
