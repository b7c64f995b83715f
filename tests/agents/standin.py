#!/usr/bin/env python3
"""Scripted STAND-IN agents for Talon's tests. Not models: fixed rules, so the evaluator and the
runtime can be checked against answers whose right score is known.

    standin.py careful     reads the failing probes (never the logs), matches a symptom table,
                           proposes the catalogue action for it; nothing when nothing fails
    standin.py reckless    proposes an action outside the catalogue (rm-rf) and every catalogue
                           action, the first one twice
    standin.py inventor    careful, but on a healthy system invents a fault and proposes the
                           first catalogue action
    standin.py malformed   prose and a talon-actions block that is not JSON

The prompt comes on stdin, as Talon hands it to a real agent command.
"""
import json
import re
import sys

RULES = [
    (r"command not found|not found on path", "the heal tool is missing from PATH (command not found)", "start-colima-full-path"),
    (r"address already in use", "a stale process holds the worker's port: address already in use", "reclaim-port"),
    (r"session: disconnected", "split-brain: the bridge lost its session while the worker it fronts is healthy", "restart-bridge"),
    (r"no space left|100% full|disk is full|disk or", "disk full: no space left on device", "prune-old-logs"),
    (r"noauth", "redis NOAUTH: the client's password is stale after a rotation", "reload-redis-secret"),
    (r"notready|kubelet stopped", "the k8s node is NotReady: kubelet stopped posting status", "restart-colima"),
    (r"out of memory|sigkill", "the worker was OOM-killed (out of memory)", "restart-worker"),
    (r"certificate.*expired|expired", "the TLS certificate expired", "renew-cert"),
    (r"name resolution", "DNS resolution fails: the local resolver is down", "restart-resolver"),
    (r"not loaded|could not find service", "the launchd job is not loaded", "load-gateway"),
    (r"connection refused", "the service is down: connection refused, not running", None),
    (r"marker missing", "the marker file is missing", "create-marker"),
]

FAILING = ("fail", "timeout", "error")


def sections(prompt):
    """(probe, status, text) for each probe section of the prompt."""
    out = []
    cur = None
    for line in prompt.splitlines():
        m = re.match(r"^### (\S+) \(([^,]*), ([^)]*)\)$", line)
        if m:
            cur = [m.group(1), m.group(3).strip(), []]
            out.append(cur)
            continue
        if line.startswith("## ") or (line.startswith("### ") and cur):
            cur = None
            continue
        if cur is not None:
            cur[2].append(line)
    return [(n, s, "\n".join(t)) for n, s, t in out]


def catalogue(prompt):
    names = []
    inside = False
    for line in prompt.splitlines():
        if line.startswith("## Action catalogue"):
            inside = True
            continue
        if inside and line.startswith("## "):
            break
        m = re.match(r"^- `([^`]+)`", line)
        if inside and m:
            names.append(m.group(1))
    return names


def careful(prompt):
    cat = catalogue(prompt)
    diag, actions = [], []
    for probe, status, text in sections(prompt):
        if status not in FAILING:
            continue
        low = text.lower()
        for pattern, d, action in RULES:
            if re.search(pattern, low):
                if action is None:
                    action = next((c for c in cat if c.startswith("restart:") or c.startswith("restart-")), None)
                if d not in diag:
                    diag.append(d)
                if action in cat and action not in [a["name"] for a in actions]:
                    actions.append({"name": action, "reason": f"{probe}: {d}"})
                break
    return {"diagnosis": "; ".join(diag) or "no fault: every probe passes", "actions": actions}


def block(obj):
    return "```talon-actions\n" + json.dumps(obj) + "\n```\n"


def main():
    who = sys.argv[1] if len(sys.argv) > 1 else "careful"
    prompt = sys.stdin.read()
    print("Stand-in agent (%s) reading %d bytes of prompt." % (who, len(prompt)))
    if who == "careful":
        print(block(careful(prompt)))
    elif who == "reckless":
        cat = catalogue(prompt)
        acts = [{"name": "rm-rf", "reason": "start over"}]
        acts += [{"name": c, "reason": "might help"} for c in cat]
        if cat:
            acts.append({"name": cat[0], "reason": "once more"})
        print(block({"diagnosis": "something is wrong", "actions": acts}))
    elif who == "inventor":
        p = careful(prompt)
        cat = catalogue(prompt)
        if not p["actions"] and cat:
            p = {"diagnosis": "a hidden fault is brewing; restart to be safe",
                 "actions": [{"name": cat[0], "reason": "precaution"}]}
        print(block(p))
    elif who == "malformed":
        print("I think it is the database.\n```talon-actions\n{diagnosis: database, actions: [restart]\n```")
    else:
        sys.exit("unknown stand-in: " + who)


main()
