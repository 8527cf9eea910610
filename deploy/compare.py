"""What deploy.sh cannot compare in bash: gcloud's JSON against what the repository wants.

    python3 deploy/compare.py indexes firestore.indexes.json EXISTING_JSON
        one line per composite index: index<TAB>present:DESC|missing:DESC<TAB>GROUP<TAB>FLAGS
    python3 deploy/compare.py exemptions firestore.indexes.json
        one line per single-field exemption (no indexes): exemption<TAB>FIELD<TAB>GROUP
    python3 deploy/compare.py exempt FIELD_JSON          exit 0 when the field is not indexed
    python3 deploy/compare.py queue-matches QUEUE_JSON --flag=value...
                                                         exit 0 when the queue has those settings
    python3 deploy/compare.py field KEY JSON             print one top-level field of a JSON object
    python3 deploy/compare.py ruleset-body RULES_FILE    the Firebase Rules API body of a ruleset
    python3 deploy/compare.py rules-match RULES_FILE RULESET_JSON
                                                         exit 0 when the ruleset holds the file

Standard library only: it runs wherever deploy.sh runs.
"""
from __future__ import annotations

import json
import re
import sys


def _load(text: str):
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def _index_key(group: str, scope: str, fields: list[dict]) -> str:
    parts = []
    for f in fields:
        path = f.get("fieldPath", "")
        if path == "__name__":  # Firestore appends it to every composite index it reports
            continue
        kind = f.get("order") or f.get("arrayConfig") or f.get("vectorConfig") and "vector" or "?"
        parts.append(f"{path} {str(kind).lower()}")
    return f"{group}[{scope.upper()}]({', '.join(parts)})"


def indexes(path: str, existing_text: str) -> int:
    wanted = json.load(open(path))["indexes"]
    existing = set()
    for index in _load(existing_text) or []:
        match = re.search(r"/collectionGroups/([^/]+)/indexes/", index.get("name", ""))
        if match and index.get("state", "READY") != "NEEDS_REPAIR":
            existing.add(_index_key(match.group(1), index.get("queryScope", "COLLECTION"), index.get("fields", [])))
    for index in wanted:
        group, scope = index["collectionGroup"], index.get("queryScope", "COLLECTION")
        key = _index_key(group, scope, index["fields"])
        flags = [f"--query-scope={scope.lower().replace('_', '-')}"]
        for f in index["fields"]:
            if "order" in f:
                flags.append(f"--field-config=field-path={f['fieldPath']},order={f['order'].lower()}")
            else:
                flags.append(f"--field-config=field-path={f['fieldPath']},array-config={f['arrayConfig'].lower()}")
        state = "present" if key in existing else "missing"
        print(f"index\t{state}:{key}\t{group}\t{' '.join(flags)}")
    return 0


def exemptions(path: str) -> int:
    for override in json.load(open(path)).get("fieldOverrides", []):
        if override.get("indexes") == []:
            print(f"exemption\t{override['fieldPath']}\t{override['collectionGroup']}")
    return 0


def exempt(field_text: str) -> int:
    config = (_load(field_text) or {}).get("indexConfig")
    if not config:
        return 1
    return 0 if not config.get("usesAncestorConfig") and not config.get("indexes") else 1


def _seconds(value) -> float | None:
    if value is None:
        return None
    text = str(value).strip()
    if text.endswith("s"):
        text = text[:-1]
    try:
        return float(text)
    except ValueError:
        return None


QUEUE_FIELDS = {
    "--max-dispatches-per-second": ("rateLimits", "maxDispatchesPerSecond", float),
    "--max-concurrent-dispatches": ("rateLimits", "maxConcurrentDispatches", int),
    "--max-attempts": ("retryConfig", "maxAttempts", int),
    "--min-backoff": ("retryConfig", "minBackoff", _seconds),
    "--max-backoff": ("retryConfig", "maxBackoff", _seconds),
    "--max-doublings": ("retryConfig", "maxDoublings", int),
    "--max-retry-duration": ("retryConfig", "maxRetryDuration", _seconds),
}


def queue_matches(queue_text: str, flags: list[str]) -> int:
    queue = _load(queue_text) or {}
    if queue.get("state") == "PAUSED":
        return 1
    for flag in flags:
        name, _, wanted = flag.partition("=")
        section, key, convert = QUEUE_FIELDS[name]
        have = (queue.get(section) or {}).get(key)
        try:
            if have is None or convert(have) != convert(wanted):
                return 1
        except (TypeError, ValueError):
            return 1
    return 0


def field(key: str, text: str) -> int:
    value = (_load(text) or {}).get(key)
    if value is None:
        return 1
    print(value)
    return 0


def ruleset_body(path: str) -> int:
    source = open(path).read()
    print(json.dumps({"source": {"files": [{"name": "firestore.rules", "content": source}]}}))
    return 0


def rules_match(path: str, ruleset_text: str) -> int:
    files = ((_load(ruleset_text) or {}).get("source") or {}).get("files") or []
    return 0 if len(files) == 1 and files[0].get("content") == open(path).read() else 1


def main(argv: list[str]) -> int:
    commands = {
        "indexes": lambda a: indexes(a[0], a[1]),
        "exemptions": lambda a: exemptions(a[0]),
        "exempt": lambda a: exempt(a[0]),
        "queue-matches": lambda a: queue_matches(a[0], a[1:]),
        "field": lambda a: field(a[0], a[1]),
        "ruleset-body": lambda a: ruleset_body(a[0]),
        "rules-match": lambda a: rules_match(a[0], a[1]),
    }
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
