#!/usr/bin/env bats
# The policy means exactly what it says (issue 9): what YAML would drop
# silently is an error with its line, identities grpcwall cannot police are
# refused, and a policy that passes check can always be applied.

load helpers

setup() { gw_setup; }
teardown() { gw_teardown; }

@test "check: duplicate keys, a second document, an alias bomb and two spellings of one cgroup are FILE:LINE errors" {
  write_policy "$WORK/p.yaml"
  run "$GRPCWALL" policy check "$WORK/p.yaml"
  [ "$status" -eq 0 ]

  # a second rules: block would silently replace the first
  { cat "$WORK/p.yaml"; printf 'rules:\n  - from: door-sensor\n    to: door-manager\n    allow: ["*"]\n'; } > "$WORK/dup.yaml"
  run "$GRPCWALL" policy check "$WORK/dup.yaml"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"dup.yaml:16: duplicate key 'rules' (first at line 6)"* ]]

  { cat "$WORK/p.yaml"; printf -- '---\nrules: []\n'; } > "$WORK/two.yaml"
  run "$GRPCWALL" policy check "$WORK/two.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"two.yaml:16: a second YAML document"* ]]

  # an alias bomb (10^30 nodes) stops at once, at the alias that crosses the budget
  $PY -c 'print("a0: &a0 [" + ", ".join(["x"] * 10) + "]")
for i in range(1, 30): print("a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)))' > "$WORK/bomb.yaml"
  run timeout 20 "$GRPCWALL" policy check "$WORK/bomb.yaml"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"bomb.yaml:6: the document expands (aliases included) to more than 2000000 nodes"* ]]

  # the sensor's cgroup written as the terminal's, relative and with //
  rel=${CG#"$CGROOT"/}
  sed "s#{ cgroup: $CG/sensor }#{ cgroup: \"./$rel//terminal/\" }#" "$WORK/p.yaml" > "$WORK/same.yaml"
  run "$GRPCWALL" policy check "$WORK/same.yaml"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"same.yaml:3: identity 'door-sensor': cgroup /$rel/terminal is already the cgroup of identity 'public-terminal' ($WORK/same.yaml:2)"* ]]

  # --json with a file name that is not UTF-8: still JSON, exit 0
  bad=$(printf "$WORK/p\xff.yaml")
  cp "$WORK/p.yaml" "$bad"
  run "$GRPCWALL" policy check --json "$bad"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | json "len(d['identities'])")" -eq 2 ]
}

@test "presets: health and reflection expand to their services; check and show print what they became" {
  write_policy "$WORK/p.yaml" \
    "  - from: door-sensor" "    to: door-manager" "    allow: [health, reflection]"
  run "$GRPCWALL" policy check --json "$WORK/p.yaml"
  [ "$status" -eq 0 ]
  echo "$output" > "$WORK/check.json"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  run "$GRPCWALL" policy show --pin-dir "$PIN"
  echo "$output"
  for m in /grpc.health.v1.Health/'*' /grpc.reflection.v1alpha.ServerReflection/'*' \
           /grpc.reflection.v1.ServerReflection/'*'; do
    [[ "$output" == *"allow  $m"* ]]
    grep -qF "\"$m\"" "$WORK/check.json"
  done
  # a word that is no preset is an error with its line
  write_policy "$WORK/bad.yaml" \
    "  - from: door-sensor" "    to: door-manager" "    allow: [healthz]"
  run "$GRPCWALL" policy check "$WORK/bad.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"bad.yaml:"*"bad allow entry 'healthz'"*"preset: health, reflection"* ]]
}

@test "check --descriptor-set: entries naming what protoc's descriptors do not define are FILE:LINE warnings; --strict fails" {
  protoc -o "$WORK/cc.pb" --include_imports -I "$ROOT/tests/grpc" "$ROOT/tests/grpc/cloudcity.proto"
  write_policy "$WORK/p.yaml" \
    "  - from: door-sensor" "    to: door-manager" \
    "    allow: [/cloudcity.DoorManager/GetNmae, /cloudcity.DoorManger/*, health]"
  run "$GRPCWALL" policy check --descriptor-set "$WORK/cc.pb" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 0 ]
  line=$(grep -n 'GetNmae' "$WORK/p.yaml" | cut -d: -f1)
  [[ "$output" == *"p.yaml:$line: warning: '/cloudcity.DoorManager/GetNmae': method GetNmae is not a method of cloudcity.DoorManager"*"(it has: GetLocation, GetName, RequestMaintenance, SetAccessCode)"* ]]
  [[ "$output" == *"p.yaml:$line: warning: '/cloudcity.DoorManger/*': service cloudcity.DoorManger is not defined"* ]]
  [[ "$output" == *"2 entries name what $WORK/cc.pb does not define"* ]]
  "$GRPCWALL" policy check --descriptor-set "$WORK/cc.pb" --json "$WORK/p.yaml" 2>/dev/null > "$WORK/check.json"
  [ "$(json "len(d['descriptor_warnings'])" < "$WORK/check.json")" -eq 2 ]
  [ "$(json "d['descriptor_warnings'][0]['line']" < "$WORK/check.json")" -eq "$line" ]
  run "$GRPCWALL" policy check --descriptor-set "$WORK/cc.pb" --strict "$WORK/p.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"2 warnings (above), an error under --strict"* ]]
  # the policy is not a descriptor set
  run "$GRPCWALL" policy check --descriptor-set "$WORK/p.yaml" "$WORK/p.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"not a protobuf FileDescriptorSet"*"protoc -o FILE --include_imports"* ]]
}

@test "an identity outside the attach cgroup is refused at apply and attach, and nothing live changes" {
  mkdir -p "$CG/inner"
  EXTRA_DIRS+=("$CG/inner")
  write_policy "$WORK/p.yaml"
  # attached at $CG/inner: the policy's identities are outside it
  run "$GRPCWALL" attach --cgroup "$CG/inner" --pin-dir "$PIN" "$WORK/p.yaml"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"p.yaml:2: identity 'public-terminal': cgroup /${CG#"$CGROOT"/}/terminal is outside the cgroup grpcwall is attached at ($CG/inner)"* ]]
  [ ! -e "$PIN" ]

  "$GRPCWALL" attach --cgroup "$CG/terminal" --pin-dir "$PIN" > /dev/null
  run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"p.yaml:3: identity 'door-sensor': cgroup"*"is outside the cgroup grpcwall is attached at ($CG/terminal)"* ]]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['policy']['generation']")" -eq 0 ]
}

@test "a policy at every capacity limit applies three times in a row; one more of anything is refused with the limit" {
  # 16383 identities, 1023 services with 4096 destinations, 32767 rules of
  # distinct (identity, service) pairs, 131070 names in all
  $PY - "$WORK" "$CG" "$SERVER_IP" <<'PY'
import sys
work, cg, ip = sys.argv[1], sys.argv[2], sys.argv[3]
IDS, SVCS, DESTS, RULES, NAMES = 16383, 1023, 4096, 32767, 131070
def write(path, ids=IDS, svcs=SVCS, dests=DESTS, rules=RULES, names=NAMES):
    out = ["identities:"]
    out += ["  i%d: { cgroup: %s/c/%d }" % (i, cg, i) for i in range(ids)]
    out.append("services:")
    extra = dests - svcs  # services past the first carry more cidrs
    for s in range(svcs):
        n = 1 + (extra // svcs) + (1 if s < extra % svcs else 0)
        cidrs = ", ".join("10.%d.%d.%d/32" % (s // 256, s % 256, k) for k in range(n))
        out.append("  s%d: { port: %d, cidrs: [%s] }" % (s, 1000 + s, cidrs))
    out.append("rules:")
    methods = names - ids - svcs - rules - 1  # distinct entries left for names
    m = 0
    for r in range(rules):
        per = methods // rules + (1 if r < methods % rules else 0)
        allow = ", ".join("/p.S/M%d" % (m + k) for k in range(per))
        m += per
        out.append("  - { from: i%d, to: s%d, allow: [%s] }" % (r % ids, (r // ids) % svcs, allow or '"*"'))
    open(path, "w").write("\n".join(out) + "\n")
write(work + "/full.yaml")
write(work + "/more-ids.yaml", ids=IDS + 1)
write(work + "/more-names.yaml", names=NAMES + 1)
PY
  run "$GRPCWALL" policy check "$WORK/full.yaml"
  echo "${output:0:300}"
  [ "$status" -eq 0 ]
  [[ "$output" == *"OK: 16383 identities, 1023 services, 32767 rules"* ]]
  run "$GRPCWALL" policy check "$WORK/more-ids.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"more-ids.yaml:16385: too many identities: a policy holds at most 16383"* ]]
  run "$GRPCWALL" policy check "$WORK/more-names.yaml"
  [ "$status" -eq 1 ]
  [[ "$output" == *"too many names (identities, services, rules and distinct method entries; an enforcing deny entry counts twice): a policy holds at most 131070"* ]]

  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" > /dev/null
  for gen in 1 2 3; do
    run "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/full.yaml"
    echo "${output: -300}"
    [ "$status" -eq 0 ]
    [[ "$output" == *"policy generation $gen live"* ]]
  done
  [ "$("$GRPCWALL" policy show --pin-dir "$PIN" --json | json "len(d['grants'])")" -eq 32767 ]
}

@test "attach without a policy over one compiled by an older grpcwall (no table format) is refused, and nothing live changes" {
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" > /dev/null
  [ "$(bpftool -j map lookup pinned "$PIN/gw_config" key 0 0 0 0 | json "d['formatted']['value']['format']")" -eq 3 ]
  # what an older grpcwall leaves: its tables ranked every entry found, and
  # recorded no format; the new datapath must not read them
  value=$(bpftool -j map lookup pinned "$PIN/gw_config" key 0 0 0 0 |
    json "' '.join(b if i not in range(8, 12) else '0' for i, b in enumerate(d['value']))")
  bpftool map update pinned "$PIN/gw_config" key 0 0 0 0 value $value
  prog=$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']")
  run "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"another grpcwall version's (the live policy (method-table format 0 live, this version writes 3))"*"Nothing was changed"* ]]
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['programs']")" = "$prog" ]
  # applying a policy with this version makes it attachable again
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml" > /dev/null
  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" > /dev/null
}

@test "method-table entries of another grpcwall version are denied by the datapath, with their reason" {
  # an older grpcwall's 'policy apply' over this version's attach writes
  # tables of the old format (ranked, no format byte): deny, never read them
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --no-fallback --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" > /dev/null
  start_grpc_server 50051
  run py_client "$CG/terminal" 50051 GetName
  [ "$output" = "GetName OK" ]
  for inner in $(bpftool -j map dump pinned "$PIN/gw_policy" | json "' '.join(str(int(''.join(reversed([b[2:] for b in e['value']])), 16)) for e in d)"); do
    bpftool -j map dump id "$inner" | json "'\n'.join(' '.join(e['key']) + ' value ' + ' '.join(b if i != 4 else '0' for i, b in enumerate(e['value'])) for e in d)" |
      while read -r line; do bpftool map update id "$inner" key $line; done
  done
  run py_client "$CG/terminal" 50051 GetName
  echo "$output"
  [ "$output" = "GetName UNIMPLEMENTED 'Method not found!'" ]
  [ "$(handlers 50051 GetName)" -eq 1 ]
  ev=$(events 1)
  [ "$(echo "$ev" | json "d['verdict']")" = "deny" ]
  [[ "$(echo "$ev" | json "d['reason']")" == "method table written by another grpcwall version"* ]]
  # applied again by this version: allowed again
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml" > /dev/null
  run py_client "$CG/terminal" 50051 GetName
  [ "$output" = "GetName OK" ]
}
