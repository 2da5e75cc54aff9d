#!/usr/bin/env python3
"""Runs a systemd unit's Exec lines the way systemd would, for tests on a
machine where systemd is not the init: Environment= then EnvironmentFile=
(its settings win), the unit's own command lines split into words with
systemd's quoting, `$VAR` (a word of its own: split into words, quotes
respected and removed, nothing when empty) and `${VAR}` (kept in one word)
expanded, the `-` prefix (a failure is ignored) and `:` (no expansion)
honoured. Not covered (the units do not use them): % specifiers, multi-line
values in environment files.

  unit_exec.py UNIT ACTION     ACTION: start (ExecStartPre/ExecStart/ExecStartPost),
                               reload (ExecReload), stop (ExecStop/ExecStopPost)
Exits with the first failing command's status, 0 when all succeed. With
--print, prints the expanded command lines (one JSON list each) instead."""
import json
import os
import re
import shlex
import subprocess
import sys

SECTION_KEYS = ("Environment", "EnvironmentFile", "ExecStartPre", "ExecStart", "ExecStartPost",
                "ExecReload", "ExecStop", "ExecStopPost", "Type", "Restart")


def parse_unit(path):
    """[Service] settings in order: [(key, value)], continuation lines joined."""
    out, section, pending = [], None, ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if pending:
            line = pending + line
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
            continue
        if section == "Service" and "=" in s:
            k, v = s.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def parse_assignments(value):
    """Environment=: one or more VAR=VALUE words, quoted as in a command line."""
    env = {}
    for word in shlex.split(value):
        if "=" in word:
            k, v = word.split("=", 1)
            env[k] = v
    return env


def parse_env_file(path):
    """EnvironmentFile=: VAR=VALUE lines, # and ; comments, optional quotes."""
    env = {}
    for raw in open(path, encoding="utf-8"):
        s = raw.strip()
        if not s or s[0] in "#;" or "=" not in s:
            continue
        k, v = s.split("=", 1)
        v = v.strip()
        if v[:1] in ("'", '"'):  # a quoted value: quotes removed, backslash escapes in double quotes
            words = shlex.split(v)
            v = words[0] if words else ""
        env[k.strip()] = v
    return env


def expand(cmdline, env):
    prefix = ""
    while cmdline and cmdline[0] in "-@+!:":
        prefix += cmdline[0]
        cmdline = cmdline[1:]
    words = shlex.split(cmdline)
    if ":" in prefix:
        return prefix, words
    out = []
    for w in words:
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:  # split into words, quotes respected and removed (systemd.service(5))
            out.extend(shlex.split(env.get(m.group(1), "")))
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda x: env.get(x.group(1), ""), w))
    return prefix, out


def main():
    args = [a for a in sys.argv[1:] if a != "--print"]
    show = "--print" in sys.argv
    if len(args) != 2 or args[1] not in ("start", "reload", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    unit, action = args
    keys = {"start": ("ExecStartPre", "ExecStart", "ExecStartPost"), "reload": ("ExecReload",),
            "stop": ("ExecStop", "ExecStopPost")}[action]
    settings = parse_unit(unit)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for k, v in settings:
        if k == "Environment":
            env.update(parse_assignments(v))
    for k, v in settings:  # the files' settings override Environment= (systemd.exec(5))
        if k == "EnvironmentFile":
            optional = v.startswith("-")
            path = v.lstrip("-")
            if os.path.exists(path):
                env.update(parse_env_file(path))
            elif not optional:
                print(f"unit_exec: EnvironmentFile {path} is missing", file=sys.stderr)
                return 1
    cmds = [expand(v, env) for k, v in settings if k in keys]
    if not cmds:
        print(f"unit_exec: {unit} has no {'/'.join(keys)}", file=sys.stderr)
        return 1
    for prefix, argv in cmds:
        if show:
            print(json.dumps(argv))
            continue
        rc = subprocess.run(argv, env=env).returncode
        if rc != 0 and "-" not in prefix:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
