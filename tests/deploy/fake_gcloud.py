"""A stand-in for `gcloud` that keeps a project's state in a directory, for deploy.sh's tests.

It understands the commands deploy.sh runs (and only those: anything else exits 64, so a new
command in the script shows up as a failing test rather than a silent success). State lives in
$FAKE_GCLOUD_STATE/state.json; every change is appended to $FAKE_GCLOUD_STATE/changes.jsonl as
{"op": "create"|"update"|"delete"|"grant"|"revoke"|"enable"|"build", "kind": ..., "name": ...}.
Resources are shaped like the real describe output where deploy.sh reads them.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

STATE_DIR = Path(os.environ["FAKE_GCLOUD_STATE"])
BOOLEAN_FLAGS = {"--quiet", "--async", "--enabled", "--allow-unauthenticated", "--disable-indexes"}

# Longest command paths first.
COMMANDS = [
    ("firestore", "indexes", "composite", "list"),
    ("firestore", "indexes", "composite", "create"),
    ("firestore", "indexes", "fields", "describe"),
    ("firestore", "indexes", "fields", "update"),
    ("scheduler", "jobs", "create", "http"),
    ("scheduler", "jobs", "update", "http"),
    ("artifacts", "docker", "images", "describe"),
    ("firestore", "databases", "describe"),
    ("firestore", "databases", "create"),
    ("firestore", "databases", "delete"),
    ("artifacts", "repositories", "describe"),
    ("artifacts", "repositories", "create"),
    ("artifacts", "repositories", "delete"),
    ("iam", "service-accounts", "describe"),
    ("iam", "service-accounts", "create"),
    ("iam", "service-accounts", "delete"),
    ("iam", "service-accounts", "get-iam-policy"),
    ("iam", "service-accounts", "add-iam-policy-binding"),
    ("iam", "service-accounts", "remove-iam-policy-binding"),
    ("run", "jobs", "describe"),
    ("run", "jobs", "deploy"),
    ("run", "jobs", "delete"),
    ("run", "jobs", "get-iam-policy"),
    ("run", "jobs", "add-iam-policy-binding"),
    ("run", "services", "describe"),
    ("run", "services", "delete"),
    ("tasks", "queues", "describe"),
    ("tasks", "queues", "create"),
    ("tasks", "queues", "update"),
    ("tasks", "queues", "delete"),
    ("tasks", "queues", "get-iam-policy"),
    ("tasks", "queues", "add-iam-policy-binding"),
    ("scheduler", "jobs", "describe"),
    ("scheduler", "jobs", "delete"),
    ("billing", "projects", "describe"),
    ("projects", "describe"),
    ("projects", "get-iam-policy"),
    ("projects", "add-iam-policy-binding"),
    ("projects", "remove-iam-policy-binding"),
    ("secrets", "describe"),
    ("secrets", "get-iam-policy"),
    ("secrets", "add-iam-policy-binding"),
    ("secrets", "remove-iam-policy-binding"),
    ("services", "list"),
    ("services", "enable"),
    ("workflows", "describe"),
    ("workflows", "deploy"),
    ("workflows", "delete"),
    ("builds", "submit"),
    ("run", "deploy"),
    ("auth", "list"),
    ("auth", "print-access-token"),
]


def load() -> dict:
    path = STATE_DIR / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.setdefault("resources", {})
    state.setdefault("policies", {})
    state.setdefault("apis", [])
    state.setdefault("images", [])
    return state


def save(state: dict) -> None:
    (STATE_DIR / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))


def record(op: str, kind: str, name: str) -> None:
    with open(STATE_DIR / "changes.jsonl", "a") as f:
        f.write(json.dumps({"op": op, "kind": kind, "name": name}) + "\n")


def parse(args: list[str]) -> tuple[tuple[str, ...], list[str], dict[str, str]]:
    for path in COMMANDS:
        if tuple(args[: len(path)]) == path:
            break
    else:
        sys.exit(f"fake gcloud: unsupported command: {' '.join(args)}")  # exit status 1 + message
    rest = args[len(path):]
    positionals: list[str] = []
    flags: dict[str, str] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("--"):
            if "=" in token:
                name, value = token.split("=", 1)
                flags[name] = value
            elif token in BOOLEAN_FLAGS or i + 1 == len(rest) or rest[i + 1].startswith("--"):
                flags[token] = "true"
            else:
                flags[token] = rest[i + 1]
                i += 1
        else:
            positionals.append(token)
        i += 1
    return path, positionals, flags


def not_found(what: str) -> int:
    print(f"ERROR: (gcloud) NOT_FOUND: {what}", file=sys.stderr)
    return 1


def labels_of(flags: dict[str, str]) -> dict[str, str]:
    pairs = [p for p in flags.get("--labels", "").split(",") if p]
    return dict(p.split("=", 1) for p in pairs)


def print_policy(state: dict, key: str) -> None:
    for line in sorted(state["policies"].get(key, [])):
        print(line)


def change_policy(state: dict, key: str, flags: dict[str, str], add: bool) -> None:
    line = f"{flags['--role']}\t{flags['--member']}"
    bindings = set(state["policies"].get(key, []))
    if add:
        bindings.add(line)
    else:
        bindings.discard(line)
    state["policies"][key] = sorted(bindings)
    record("grant" if add else "revoke", key, line)


def main(argv: list[str]) -> int:
    state = load()
    path, pos, flags = parse(argv)
    res = state["resources"]
    kind = ".".join(path[:-1])
    verb = path[-1]
    fmt = flags.get("--format", "")

    def table(name: str) -> dict:
        return res.setdefault(name, {})

    if path == ("auth", "list"):
        print(state.get("account", "tester@example.com"))
        return 0
    if path == ("auth", "print-access-token"):
        print("fake-token")
        return 0
    if path == ("projects", "describe"):
        print(pos[0])
        return 0
    if path == ("billing", "projects", "describe"):
        print("True" if state.get("billing", True) else "False")
        return 0
    if path == ("services", "list"):
        print("\n".join(state["apis"]))
        return 0
    if path == ("services", "enable"):
        for api in pos:
            if api not in state["apis"]:
                state["apis"].append(api)
                record("enable", "api", api)
        save(state)
        return 0
    if path == ("builds", "submit"):
        subs = dict(p.split("=", 1) for p in flags["--substitutions"].split(","))
        config = Path(flags["--config"]).read_text()
        for image in re.findall(r'^\s*-\s*"(\$\{_IMAGES\}[^"]+)"', config, re.M):
            name = image.replace("${_IMAGES}", subs["_IMAGES"]).replace("${_TAG}", subs["_TAG"])
            if name not in state["images"]:
                state["images"].append(name)
            record("build", "image", name)
        save(state)
        return 0
    if path == ("artifacts", "docker", "images", "describe"):
        if pos[0] in state["images"]:
            print("sha256:" + "0" * 64)
            return 0
        return not_found(pos[0])

    # Policies of resources (and of the project).
    if verb in ("get-iam-policy", "add-iam-policy-binding", "remove-iam-policy-binding"):
        target = kind.replace("projects", "project")
        key = f"{target}:{pos[0]}"
        if target != "project" and pos[0] not in res.get(kind, {}):
            return not_found(pos[0])
        if verb == "get-iam-policy":
            print_policy(state, key)
        else:
            change_policy(state, key, flags, add=verb.startswith("add"))
            save(state)
        return 0

    # Named resources: describe / create / deploy / update / delete.
    if kind == "run" and verb == "deploy":
        kind = "run.services"
    if path[:2] == ("scheduler", "jobs"):
        kind, verb = "scheduler.jobs", path[2]
    if kind.startswith("firestore.databases"):
        name = flags.get("--database", "(default)")
    elif kind.startswith("firestore.indexes"):
        name = f"{flags['--collection-group']}/{pos[0]}" if pos else ""
    elif kind == "iam.service-accounts" and verb == "create":
        name = f"{pos[0]}@{flags['--project']}.iam.gserviceaccount.com"
    else:
        name = pos[0] if pos else ""
    items = table(kind)

    if kind == "firestore.indexes.composite":
        if verb == "list":
            print(json.dumps(items.get("all", [])))
            return 0
        fields = []
        for config in (v for k, v in _multi(argv, "--field-config")):
            parts = dict(p.split("=", 1) for p in config.split(","))
            fields.append({"fieldPath": parts["field-path"], "order": parts["order"].upper()})
        fields.append({"fieldPath": "__name__", "order": fields[-1]["order"]})
        items.setdefault("all", []).append(
            {
                "name": f"projects/p/databases/d/collectionGroups/{flags['--collection-group']}"
                f"/indexes/i{len(items.get('all', []))}",
                "queryScope": flags["--query-scope"].upper().replace("-", "_"),
                "fields": fields,
                "state": "READY",
            }
        )
        record("create", kind, flags["--collection-group"])
        save(state)
        return 0
    if kind == "firestore.indexes.fields":
        if verb == "describe":
            print(
                json.dumps(
                    items.get(name)
                    or {"indexConfig": {"usesAncestorConfig": True, "indexes": [{"order": "ASCENDING"}]}}
                )
            )
            return 0
        items[name] = {"indexConfig": {"indexes": []}}
        record("update", kind, name)
        save(state)
        return 0

    if verb == "describe":
        item = items.get(name)
        if item is None:
            return not_found(name)
        if fmt == "json":
            print(json.dumps(item["json"]))
        elif "metadata.labels." in fmt or "labels." in fmt:
            print(item.get("labels", {}).get(fmt.split("labels.")[1].rstrip(")"), ""))
        elif "status.url" in fmt:
            print(f"https://{name}-fake.a.run.app")
        elif "description" in fmt:
            print(item.get("flags", {}).get("--description", ""))
        else:
            print(name)
        return 0
    if verb == "delete":
        if name not in items:
            return not_found(name)
        del items[name]
        for key in [k for k in state["policies"] if k.endswith(f":{name}")]:
            del state["policies"][key]
        record("delete", kind, name)
        save(state)
        return 0
    if verb in ("create", "deploy", "update"):
        exists = name in items
        if verb == "create" and exists:
            print(f"ERROR: (gcloud) ALREADY_EXISTS: {name}", file=sys.stderr)
            return 1
        if verb == "update" and not exists:
            return not_found(name)
        item = {"flags": flags, "labels": labels_of(flags)}
        if kind == "tasks.queues":
            item["json"] = {
                "name": name,
                "state": "RUNNING",
                "rateLimits": {"maxDispatchesPerSecond": float(flags["--max-dispatches-per-second"]),
                               "maxConcurrentDispatches": int(flags["--max-concurrent-dispatches"])},
                "retryConfig": {"maxAttempts": int(flags["--max-attempts"]), "minBackoff": flags["--min-backoff"],
                                "maxBackoff": flags["--max-backoff"], "maxDoublings": int(flags["--max-doublings"]),
                                "maxRetryDuration": flags["--max-retry-duration"]},
            }
        items[name] = item
        record("update" if exists else "create", kind, name)
        save(state)
        return 0
    return not_found(" ".join(argv))


def _multi(argv: list[str], flag: str):
    for i, token in enumerate(argv):
        if token.startswith(flag + "="):
            yield flag, token.split("=", 1)[1]
        elif token == flag and i + 1 < len(argv):
            yield flag, argv[i + 1]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
