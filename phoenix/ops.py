"""`phoenix ops`: what an operator needs at 3 a.m.

    phoenix ops trace CREATION_ID [--json]       the creation, its executions and their step entries
    phoenix ops replay CREATION_ID... [--dry-run]
    phoenix ops replay --failed [--code CODE]... [--limit N] [--dry-run]
    phoenix ops reconcile [--older-than SECONDS] [--limit N] [--dry-run]
                                                 fail and refund creations whose execution has ended
    phoenix ops audit                            prove balance = grants - debits + refunds for every user

Configuration comes from the same PHOENIX_* settings as the API (store, trigger, project): the
defaults reach a `phoenix dev` stack started with its defaults. A replay is a new execution of
the creation's next attempt; it pays once for that attempt and skips steps whose output is
still valid (no second paid generation). Exit status: 0 done (or nothing to do), 1 something
was found that still needs an operator (or a check failed), 2 bad arguments or configuration.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta

from creations.errors import CreationsError
from creations.model import Creation, CreationError, Status
from creations.replay import NotReplayable, prepare_replay
from creations.settings import Settings

# Failures a replay cannot fix: the same request would fail the same way.
NOT_WORTH_REPLAYING = {"CONTENT_POLICY", "INVALID_REQUEST", "INSUFFICIENT_TOKENS"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phoenix ops", description="Trace and replay creations; audit the ledger.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("trace", help="the creation, its executions and their step entries")
    t.add_argument("creation_id")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r = sub.add_parser("replay", help="start the next attempt of failed creations")
    r.add_argument("creation_ids", nargs="*", metavar="CREATION_ID")
    r.add_argument("--failed", action="store_true",
                   help="every failed creation whose error is worth replaying (not CONTENT_POLICY, INVALID_REQUEST, INSUFFICIENT_TOKENS)")
    r.add_argument("--code", action="append", default=[], help="with --failed: only these error codes (repeatable)")
    r.add_argument("--limit", type=int, default=100, help="with --failed: at most this many (default 100)")
    r.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    c = sub.add_parser("reconcile", help="fail and refund creations whose execution ended without settling them")
    c.add_argument("--older-than", type=int, default=900, metavar="SECONDS",
                   help="only creations pending or processing unchanged for this long (default 900)")
    c.add_argument("--limit", type=int, default=100, help="at most this many, oldest first (default 100)")
    c.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    sub.add_parser("audit", help="check every user's balance against the ledger")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic names the variable
        print(f"phoenix ops: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from creations.store import open_store

    store = open_store(settings)
    try:
        if args.command == "trace":
            return trace(settings, store, args.creation_id, as_json=args.json)
        if args.command == "replay":
            return replay(settings, store, args)
        if args.command == "reconcile":
            return reconcile(settings, store, args)
        return audit(store)
    except CreationsError as exc:
        print(f"phoenix ops: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()


# --- trace ---------------------------------------------------------------------------------


def trace(settings: Settings, store, creation_id: str, *, as_json: bool) -> int:
    creation = store.get_creation(creation_id)
    if creation is None:
        print(f"phoenix ops: no creation {creation_id}", file=sys.stderr)
        return 1
    from creations.triggers import executions_reader_from_settings

    reader = executions_reader_from_settings(settings)
    executions = []
    names = list(creation.execution_ids) or _labelled_executions(settings, reader, creation.id)
    for name in names:
        try:
            execution = reader.get_json(name)
            entries = reader.get_json(f"{name}/stepEntries", {"pageSize": "1000"}).get("stepEntries", [])
        except Exception as exc:  # noqa: BLE001 - show what can be shown
            execution, entries = {"name": name, "state": f"unreadable: {exc}"}, []
        executions.append((execution, entries))
    reader.close()
    if as_json:
        print(json.dumps({"creation": creation.to_dict(),
                          "executions": [{"execution": e, "stepEntries": s} for e, s in executions]}, indent=2))
        return 0
    _print_creation(creation)
    if not executions:
        print("  no execution recorded (the trigger never answered with one)")
    for execution, entries in executions:
        print(f"\nexecution {execution['name']}\n  state {execution.get('state')}  duration {execution.get('duration', '-')}")
        if execution.get("error"):
            print(f"  error {execution['error'].get('payload')}")
        for entry in entries:
            took = _seconds(entry.get("createTime"), entry.get("updateTime"))
            print(f"  {entry.get('routine', ''):<18} {entry.get('step', ''):<20} {entry.get('stepType', '').removeprefix('STEP_'):<20} "
                  f"{entry.get('state', '').removeprefix('STATE_'):<11} {took}")
    return 0


def _labelled_executions(settings: Settings, reader, creation_id: str) -> list[str]:
    """The executions labelled with the creation, oldest first: a Cloud Tasks trigger never learns
    the names of the executions its tasks start, so nothing is recorded on the creation."""
    from creations.triggers import workflow_path

    workflow = workflow_path(settings.gcp_project, settings.gcp_region, settings.workflow_name)
    try:
        listed = reader.get_json(f"{workflow}/executions", {"filter": f'labels.creation-id="{creation_id}"',
                                                           "pageSize": "100"}).get("executions") or []
    except Exception as exc:  # noqa: BLE001 - the creation is still worth showing
        print(f"phoenix ops: could not list the executions of {creation_id}: {exc}", file=sys.stderr)
        return []
    return [e["name"] for e in reversed(listed) if e.get("name")]   # the API lists newest first


def _print_creation(c: Creation) -> None:
    print(f"creation {c.id}  ({c.type.value}, user {c.uid})")
    print(f"  status {c.status.value}  attempt {c.attempt}  cost {c.cost}  updated {c.updated_at:%Y-%m-%d %H:%M:%S}")
    print(f"  prompt {c.prompt!r}")
    if c.error:
        print(f"  error  {c.error.code} at {c.error.step}: {c.error.message} (retryable: {c.error.retryable})")
    print(f"  charge debited {c.charge.get('debited')}  refunded {c.charge.get('refunded')}")
    for step, cp in c.checkpoints.items():
        print(f"  checkpoint {step:<10} attempt {cp.attempt}  {cp.output.get('key', '')}")


def _seconds(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        delta = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return f"{delta.total_seconds():.2f}s"


# --- replay --------------------------------------------------------------------------------


def replay(settings: Settings, store, args) -> int:
    if args.failed == bool(args.creation_ids):
        print("phoenix ops replay: give creation ids, or --failed (one of the two)", file=sys.stderr)
        return 2
    if args.code and not args.failed:
        print("phoenix ops replay: --code goes with --failed", file=sys.stderr)
        return 2
    if not 1 <= args.limit <= 10_000:
        print("phoenix ops replay: --limit must be between 1 and 10000", file=sys.stderr)
        return 2
    if args.failed:
        wanted = set(args.code)
        candidates = [c for c in store.find_creations(statuses=[Status.FAILED], limit=args.limit)
                      if (_code(c) in wanted if wanted else _code(c) not in NOT_WORTH_REPLAYING)]
    else:
        candidates = []
        for cid in args.creation_ids:
            creation = store.get_creation(cid)
            if creation is None:
                print(f"  {cid}: no such creation")
                continue
            candidates.append(creation)
    if not candidates:
        print("nothing to replay")
        return 0
    if args.dry_run:
        for c in candidates:
            print(f"  would replay {c.id} (attempt {c.attempt} -> {c.attempt + 1}, {c.status.value}, {_code(c) or '-'})")
        return 0

    from creations.triggers import TriggerFailed, trigger_from_settings

    trigger = trigger_from_settings(settings)
    failures = 0
    try:
        for creation in candidates:
            try:
                started = prepare_replay(store, creation.id, expected_attempt=creation.attempt)
            except NotReplayable as exc:
                print(f"  {creation.id}: not replayed: {exc.message}")
                failures += 1
                continue
            try:
                name = trigger.start(started)
            except TriggerFailed as exc:
                # Nothing was debited for the new attempt yet (check_debit runs in the workflow):
                # the creation goes back to failed, replayable again later.
                store.update_creation(started.id, lambda c, e=exc: _trigger_failed(c, started.attempt, e.message))
                print(f"  {creation.id}: attempt {started.attempt} could not be started: {exc.message}")
                failures += 1
                continue
            if name:
                store.update_creation(started.id, lambda c, n=name: _record_execution(c, n))
            print(f"  {creation.id}: attempt {started.attempt} started {name or '(queued)'}")
    finally:
        trigger.close()
    return 1 if failures else 0


def _code(c: Creation) -> str | None:
    return c.error.code if c.error else None


def _trigger_failed(c: Creation, attempt: int, message: str) -> Creation | None:
    if c.attempt != attempt or c.status is not Status.PENDING:
        return None
    c.transition(Status.FAILED)
    c.error = CreationError(code="TRIGGER_FAILED", message=message, step="replay", retryable=True)
    return c


def _record_execution(c: Creation, name: str) -> Creation | None:
    if name in c.execution_ids:
        return None
    c.execution_ids.append(name)
    return c


# --- reconcile -----------------------------------------------------------------------------


def reconcile(settings: Settings, store, args) -> int:
    """One line per stuck creation; 0 when every one is now terminal or left running on purpose."""
    if args.older_than < 0:
        print("phoenix ops reconcile: --older-than must be 0 or more seconds", file=sys.stderr)
        return 2
    if not 1 <= args.limit <= 10_000:
        print("phoenix ops reconcile: --limit must be between 1 and 10000", file=sys.stderr)
        return 2
    from creations.joblog import JobLog
    from creations.pipeline import StepServices
    from creations.reconcile import Action, Reconciler
    from creations.triggers import executions_reader_from_settings, workflow_path

    try:
        reader = executions_reader_from_settings(settings)
    except Exception as exc:  # noqa: BLE001 - credentials or endpoint: say which
        print(f"phoenix ops reconcile: cannot reach the Executions API: {exc}", file=sys.stderr)
        return 1
    # The refund step's structured log goes to stderr: a record of every money move made here.
    services = StepServices(settings, store=store, log=JobLog(sys.stderr))
    reconciler = Reconciler(store, reader, services, log=services.log.bind(command="phoenix ops reconcile"),
                            workflow=workflow_path(settings.gcp_project, settings.gcp_region, settings.workflow_name))
    counts: dict[Action, int] = {}
    try:
        for r in reconciler.run(older_than=timedelta(seconds=args.older_than), limit=args.limit,
                                dry_run=args.dry_run):
            counts[r.action] = counts.get(r.action, 0) + 1
            c = r.creation
            print(f"  {c.id} attempt {c.attempt} {c.status.value}, {r.execution.describe()}: {r.message}")
    finally:
        services.close()
        reader.close()
    found = sum(counts.values())
    if not found:
        print(f"nothing to reconcile: no creation pending or processing unchanged for {args.older_than} s")
        return 0
    summary = ", ".join(f"{n} {action.value}" for action, n in counts.items())
    print(f"{found} found: {summary}{' (dry run: nothing changed)' if args.dry_run else ''}")
    unsettled = counts.get(Action.UNSETTLED, 0) + counts.get(Action.WOULD_COMPENSATE, 0)
    return 1 if unsettled else 0


# --- audit ---------------------------------------------------------------------------------


def audit(store) -> int:
    findings = store.audit()
    if not findings:
        print("the books balance: every user's balance = grants - debits + refunds")
        return 0
    for f in findings:
        print(f"  {f.uid}: balance {f.balance}, ledger says {f.expected}: {f.detail}")
    return 1
