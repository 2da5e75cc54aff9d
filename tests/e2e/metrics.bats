#!/usr/bin/env bats
# `grpcwall status --format prometheus` (issue 13): what node_exporter's
# textfile collector reads. Parsed with the Prometheus client's own parser
# (python3-prometheus-client) and checked against `status --json` and
# `policy show --json`, after real RPCs allowed and denied.

load helpers

setup() {
  gw_setup
  $PY -c 'import prometheus_client.parser' 2>/dev/null || need_skip "no python3-prometheus-client"
  write_policy "$WORK/p.yaml"
  "$GRPCWALL" attach --cgroup "$CG" --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
}
teardown() { gw_teardown; }

# snapshot: $WORK/prom.txt, status.json and policy.json read while no
# counter moved (a closing connection can still move the connection ones)
snapshot() {
  local i
  for i in $(seq 1 20); do
    "$GRPCWALL" status --pin-dir "$PIN" --json > "$WORK/status.json"
    "$GRPCWALL" status --pin-dir "$PIN" --format prometheus > "$WORK/prom.txt"
    "$GRPCWALL" policy show --pin-dir "$PIN" --json > "$WORK/policy.json"
    "$GRPCWALL" status --pin-dir "$PIN" --json > "$WORK/status2.json"
    cmp -s "$WORK/status.json" "$WORK/status2.json" && return 0
    sleep 0.2
  done
  echo "counters kept moving" >&2
  return 1
}

# check_prom [EXPECT...]: parses $WORK/prom.txt with prometheus_client and
# checks it against $WORK/status.json and $WORK/policy.json: the format
# (each family once, HELP and TYPE before its samples, counters _total,
# gauges not), every counter of status --json, each rule's counters. EXPECT:
# "SAMPLE{label=value,...}=N", a sample that must be there with that value
# (label values without quotes; @LINE:TEXT in a value is
# FILE:LINE where FILE is the live policy's file and LINE the line of
# $WORK/p.yaml that holds TEXT).
check_prom() {
  $PY - "$WORK/prom.txt" "$WORK/status.json" "$WORK/policy.json" "$WORK/p.yaml" "$@" <<'PY'
import json, re, sys
from prometheus_client.parser import text_string_to_metric_families

prom_file, status_file, policy_file, yaml_file = sys.argv[1:5]
text = open(prom_file).read()
status, policy = json.load(open(status_file)), json.load(open(policy_file))
print(text)

# the raw text: each family's HELP then TYPE once, its samples right after
seen, family, ftype = set(), None, None
lines = text.split("\n")
assert lines[-1] == "" and lines[-2] != "", "ends in one newline"
for i, line in enumerate(lines[:-1]):
    if line.startswith("# HELP "):
        name = line.split(" ")[2]
        assert name not in seen, f"family {name} twice"
        assert lines[i + 1].startswith(f"# TYPE {name} "), f"no TYPE right after HELP of {name}"
        seen.add(name)
        family, ftype = name, lines[i + 1].split(" ")[3]
        assert ftype in ("counter", "gauge"), line
        assert re.fullmatch(r"grpcwall_[a-z_]+", name), name
        assert name.endswith("_total") == (ftype == "counter"), f"{name} is a {ftype}"
    elif line.startswith("# TYPE "):
        assert line.split(" ")[2] == family
    else:
        assert re.match(r"[a-z_]+[{ ]", line), line
        assert re.match(r"[a-z_]+", line).group(0) == family, f"sample outside its family: {line}"

families = {}
for f in text_string_to_metric_families(text):
    assert f.type in ("counter", "gauge"), f"{f.name}: {f.type}"
    assert f.documentation, f"{f.name} has no HELP"
    assert f.name not in families
    families[f.name] = f
samples = {}
for f in families.values():
    for s in f.samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        assert key not in samples, f"one series twice: {key}"
        samples[key] = s.value

def value(name, **labels):
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"missing {name}{labels}"
    return samples[key]

def same(name, want, **labels):
    got = value(name, **labels)
    assert got == want, f"{name}{labels} = {got}, status --json says {want}"

# every counter status --json prints, under the name it has here
counters = {
    "allowed": ("grpcwall_kernel_rpcs_total", {"verdict": "allowed"}),
    "denied": ("grpcwall_kernel_rpcs_total", {"verdict": "denied"}),
    "audited": ("grpcwall_kernel_rpcs_total", {"verdict": "audited"}),
    "fallback_blocks": ("grpcwall_fallback_diverted_total", {}),
    "fallback_bytes": ("grpcwall_fallback_diverted_bytes_total", {}),
    "parse_errors": ("grpcwall_parse_errors_total", {}),
    "conns_opened": ("grpcwall_connections_opened_total", {}),
    "header_blocks": ("grpcwall_header_blocks_total", {}),
    "conns_failed": ("grpcwall_connections_failed_total", {}),
    "events_lost": ("grpcwall_events_lost_total", {}),
    "conns_reset": ("grpcwall_connections_reset_total", {}),
    "fallback_resumed": ("grpcwall_fallback_resumed_total", {}),
    "guard_drops": ("grpcwall_egress_guard_drops_total", {}),
    "short_writes": ("grpcwall_short_writes_total", {}),
    "repeat_blocks": ("grpcwall_header_blocks_repeated_total", {}),
    "scratch_next": ("grpcwall_scratch_next_total", {}),
    "server_conns": ("grpcwall_server_connections_total", {}),
    "server_holds": ("grpcwall_server_holds_total", {}),
    "server_holds_replayed": ("grpcwall_server_holds_replayed_total", {}),
    "server_conns_failed": ("grpcwall_server_connections_failed_total", {}),
    "server_refused": ("grpcwall_server_refused_segments_total", {}),
    "server_unwalked_drops": ("grpcwall_server_unwalked_dropped_segments_total", {}),
    "server_permission_denied": ("grpcwall_server_permission_denied_total", {}),
    "server_answers_kept": ("grpcwall_server_answers_kept_total", {}),
    "conns_tracked": ("grpcwall_connections_tracked", {}),
}
# conns_closed is opened - tracked, read at two moments: it can dip, so it is
# no counter (Prometheus would take a dip for a reset); there is no metric
assert "grpcwall_connections_closed_total" not in {n for n, _ in samples}
assert set(counters) | {"conns_closed"} == set(status["counters"]), \
    f"status --json counters without a metric: {set(status['counters']) - set(counters)}"
for k, (name, labels) in counters.items():
    same(name, status["counters"][k], **labels)
fallback = {
    "running": ("grpcwall_fallback_running", {}),
    "diverted_blocks": ("grpcwall_fallback_diverted_total", {}),
    "diverted_bytes": ("grpcwall_fallback_diverted_bytes_total", {}),
    "resumed": ("grpcwall_fallback_resumed_total", {}),
    "blocks": ("grpcwall_fallback_helper_blocks_total", {}),
    "big_blocks": ("grpcwall_fallback_helper_big_blocks_total", {}),
    "bytes": ("grpcwall_fallback_helper_bytes_total", {}),
    "allowed": ("grpcwall_fallback_helper_rpcs_total", {"verdict": "allowed"}),
    "denied": ("grpcwall_fallback_helper_rpcs_total", {"verdict": "denied"}),
    "audited": ("grpcwall_fallback_helper_rpcs_total", {"verdict": "audited"}),
    "failed": ("grpcwall_fallback_helper_failed_total", {}),
    "slots": ("grpcwall_fallback_pool_slots", {}),
    "slots_busy": ("grpcwall_fallback_pool_slots_busy", {}),
}
assert set(fallback) | {"pid", "log"} == set(status["fallback"]), \
    f"status --json fallback values without a metric: {set(status['fallback']) - set(fallback)}"
for k, (name, labels) in fallback.items():
    same(name, int(status["fallback"][k]), **labels)
same("grpcwall_attached", int(status["attached"]))
same("grpcwall_policy_generation", status["policy"]["generation"])
same("grpcwall_policy_generation", policy["generation"])
same("grpcwall_connections_max", status["max_connections"])
same("grpcwall_ingress_guard_attached", int(status["ingress_guard_attached"]))
same("grpcwall_server_hold_slots", status["server_side"]["hold_slots"])
same("grpcwall_server_hold_slots_busy", status["server_side"]["hold_slots_busy"])
same("grpcwall_server_hold_slots_per_identity", status["server_side"]["hold_slots_per_identity"])
by_identity = status["server_side"]["hold_slots_by_identity"]
assert len([k for k in samples if k[0] == "grpcwall_server_hold_slots_busy_by_identity"]) == len(by_identity)
for name, held in by_identity.items():
    same("grpcwall_server_hold_slots_busy_by_identity", held, identity=name)

# each rule of policy show: its three counters, labelled by its from, to
# and source (FILE:LINE; rules sharing one get #2, #3.. in order)
rule_series = {k for k in samples if k[0] == "grpcwall_rpcs_total"}
assert len(rule_series) == 3 * len(policy["rules"]), (len(rule_series), len(policy["rules"]))
at = {}
for r in policy["rules"]:
    ident, svc = r["rule"].split(" -> ")
    at[r["source"]] = at.get(r["source"], 0) + 1
    label = r["source"] + ("" if at[r["source"]] == 1 else f"#{at[r['source']]}")
    for v in ("allowed", "denied", "audited"):
        same("grpcwall_rpcs_total", r["counters"][v], verdict=v, identity=ident, service=svc, rule=label)

# what the caller expects of the RPCs it made
yaml_lines = open(yaml_file).read().split("\n")
def expand(v):
    if not v.startswith("@"):
        return v
    text, suffix = v[1:], ""
    if "#" in text:
        text, suffix = text.split("#")
        suffix = "#" + suffix
    line = next(i + 1 for i, l in enumerate(yaml_lines) if text in l)
    return f"{policy['file']}:{line}{suffix}"
for e in sys.argv[5:]:
    m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})?=(\d+)", e)
    labels = dict(kv.split("=", 1) for kv in m.group(2).split(",")) if m.group(2) else {}
    labels = {k: expand(v) for k, v in labels.items()}
    got = value(m.group(1), **labels)
    assert got == int(m.group(3)), f"{m.group(1)}{labels} = {got}, expected {m.group(3)}"
print("checked", len(families), "families,", len(samples), "samples")
PY
}

@test "status --format prometheus: every counter of status --json, each rule's RPCs by verdict, identity, service and rule" {
  start_grpc_server 50051
  run py_client "$CG/terminal" 50051 GetName GetName GetLocation SetAccessCode
  echo "$output"
  [ "$(echo "$output" | grep -c ' OK$')" -eq 3 ]
  [[ "$output" == *"SetAccessCode UNIMPLEMENTED"* ]]
  run py_client "$CG/sensor" 50051 GetLocation SetAccessCode
  echo "$output"
  [[ "$output" == *"GetLocation OK"* ]]
  [[ "$output" == *"SetAccessCode UNIMPLEMENTED"* ]]
  [ "$(handlers 50051 SetAccessCode)" -eq 0 ]

  snapshot
  run check_prom \
    'grpcwall_attached=1' \
    'grpcwall_kernel_rpcs_total{verdict=allowed}=4' \
    'grpcwall_kernel_rpcs_total{verdict=denied}=2' \
    'grpcwall_rpcs_total{verdict=allowed,identity=public-terminal,service=door-manager,rule=@from: public-terminal}=3' \
    'grpcwall_rpcs_total{verdict=denied,identity=door-sensor,service=door-manager,rule=@from: door-sensor}=1' \
    'grpcwall_rpcs_total{verdict=allowed,identity=door-sensor,service=door-manager,rule=@from: door-sensor}=1' \
    'grpcwall_rpcs_total{verdict=audited,identity=door-sensor,service=door-manager,rule=@from: door-sensor}=0' \
    'grpcwall_fallback_running=1' \
    'grpcwall_connections_opened_total=2'
  echo "$output"
  [ "$status" -eq 0 ]

  # --json is --format json
  diff <("$GRPCWALL" status --pin-dir "$PIN" --format json | json "d['counters']") \
       <("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['counters']")

  # a new generation: the gauge follows, and the new rules start at 0
  gen=$(json "d['generation']" < "$WORK/policy.json")
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$WORK/p.yaml" >/dev/null
  snapshot
  run check_prom "grpcwall_policy_generation=$((gen + 1))" \
    'grpcwall_kernel_rpcs_total{verdict=denied}=2' \
    'grpcwall_rpcs_total{verdict=allowed,identity=public-terminal,service=door-manager,rule=@from: public-terminal}=0'
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "status --format prometheus: label values escaped (quote, backslash, newline in the policy file's name), rules on one line are apart" {
  start_grpc_server 50051
  dir="$WORK/"'we"ird\dir'$'\n''x'
  mkdir -p "$dir"
  pol="$dir/p.yaml"
  write_policy "$pol" \
    '  [ { from: public-terminal, to: door-manager, allow: [/cloudcity.DoorManager/GetName] }, { from: door-sensor, to: door-manager, deny: [/cloudcity.DoorManager/SetAccessCode] } ]'
  cat "$pol"
  cp "$pol" "$WORK/p.yaml"   # check_prom finds lines in $WORK/p.yaml
  "$GRPCWALL" policy apply --pin-dir "$PIN" "$pol" >/dev/null
  run py_client "$CG/sensor" 50051 SetAccessCode SetAccessCode GetName
  echo "$output"
  [ "$(echo "$output" | grep -c 'SetAccessCode UNIMPLEMENTED')" -eq 2 ]
  run py_client "$CG/terminal" 50051 GetName
  [[ "$output" == *"GetName OK"* ]]

  snapshot
  # parsed back, the labels are policy show's sources (check_prom), quote,
  # backslash and newline included
  run check_prom \
    'grpcwall_rpcs_total{verdict=allowed,identity=public-terminal,service=door-manager,rule=@[ { from: public-terminal}=1' \
    'grpcwall_rpcs_total{verdict=denied,identity=door-sensor,service=door-manager,rule=@[ { from: public-terminal#2}=2'
  echo "$output"
  [ "$status" -eq 0 ]
  # the raw text: the file's name escaped in the label value
  grep -F 'rule="'"$WORK/"'we\"ird\\dir\nx/p.yaml:7#2"' "$WORK/prom.txt"
}

@test "status --format prometheus when not attached: grpcwall_attached 0, exit 0, parses" {
  "$GRPCWALL" detach --pin-dir "$PIN" >/dev/null
  [ "$("$GRPCWALL" status --pin-dir "$PIN" --json | json "d['attached']")" = False ]
  run "$GRPCWALL" status --pin-dir "$PIN" --format prometheus
  echo "$output"
  [ "$status" -eq 0 ]
  run $PY -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(sys.stdin.read()))
print([(f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in fams])
assert [(f.name, f.type) for f in fams] == [("grpcwall_attached", "gauge")]
assert [(s.name, s.labels, s.value) for s in fams[0].samples] == [("grpcwall_attached", {}, 0.0)]
assert fams[0].documentation
' <<< "$output"
  echo "$output"
  [ "$status" -eq 0 ]
  # and a bad --format is refused by name
  run "$GRPCWALL" status --pin-dir "$PIN" --format xml
  [ "$status" -ne 0 ]
  [[ "$output" == *"xml not in {text,json,prometheus}"* ]]
}
