"""`phoenix ops`: what an operator needs at 3 a.m. (docs/operations.md).

    phoenix ops [--data-dir DIR | --sqlite-path FILE] [--store sqlite|firestore] [--engine-url URL] COMMAND
    phoenix ops list [--status S]... [--type T]... [--user UID] [--code CODE]... [--since T] [--until T]
                     [--execution ID] [--limit N] [--page-token TOKEN] [--json]
    phoenix ops trace CREATION_ID [--json]       the creation, its executions and their step entries
    phoenix ops replay CREATION_ID... [--dry-run] [--force --reason TEXT]
    phoenix ops replay --failed [--code CODE]... [--type T] [--user UID] [--since T] [--until T]
                       [--limit N] [--dry-run]
    phoenix ops reconcile [--older-than SECONDS] [--limit N] [--dry-run]
    phoenix ops audit                            prove balance = grants - debits + refunds for every user
    phoenix ops cancel CREATION_ID --reason TEXT cancel its running execution and refund it

Every command is a call of the operator layer (creations/operator.py), which the console uses
too. Configuration comes from the PHOENIX_* settings, overridden by the flags; `phoenix dev`
prints the exact flags that reach it. Exit status: 0 done (or nothing to do), 1 something still
needs an operator (or a check failed), 2 bad arguments or configuration (unknown ids or codes, a
store that does not exist, missing Google credentials).
"""
from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from creations.errors import CreationsError, InvalidOptions, NotFound
from creations.model import Creation, CreationType, Status

EXIT_OK, EXIT_NEEDS_OPERATOR, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: one line on stderr, exit 2."""


# --- arguments -----------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    """An ISO 8601 time (UTC when no zone is given), or an age such as 30m, 2h, 7d."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO time (2026-12-01T10:00) nor an age (30m, 2h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return n


def _seconds_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return n


def _stack_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Where the stack is. Accepted before or after the command (`ops --data-dir D trace ID`)."""
    default = None if top else argparse.SUPPRESS
    g = parser.add_argument_group("where the stack is (override the PHOENIX_* settings)")
    g.add_argument("--data-dir", type=Path, default=default, metavar="DIR",
                   help="a local stack's data dir (phoenix dev --data-dir): its store is DIR/phoenix.sqlite3")
    g.add_argument(
        "--sqlite-path", type=Path, default=default, metavar="FILE", help="the SQLite store file (PHOENIX_SQLITE_PATH)"
    )
    g.add_argument("--store", choices=["sqlite", "firestore"], default=default, help="the store (PHOENIX_STORE)")
    g.add_argument("--engine-url", default=default, metavar="URL",
                   help="the local engine's Executions API (PHOENIX_LOCAL_ENGINE_URL; phoenix dev: --port + 1)")


def _filter_options(parser: argparse.ArgumentParser, *, statuses: bool) -> None:
    if statuses:
        parser.add_argument("--status", action="append", default=[], choices=[s.value for s in Status],
                            help="only this status (repeatable)")
    parser.add_argument("--type", action="append", default=[], choices=[t.value for t in CreationType],
                        help="only this type (repeatable)")
    parser.add_argument("--user", metavar="UID", help="only this user's creations")
    parser.add_argument("--code", action="append", default=[], help="only failures with this error code (repeatable)")
    parser.add_argument("--since", type=_when, metavar="TIME", help="created at or after (ISO time, or an age: 2h)")
    parser.add_argument("--until", type=_when, metavar="TIME", help="created before (ISO time, or an age)")
    parser.add_argument("--execution", metavar="ID", help="only the creation that ran this execution")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="phoenix ops",
        description="Find, trace, replay and settle creations; audit the ledger.",
        epilog="exit status: 0 done, 1 needs an operator (or a check failed), 2 bad arguments or configuration",
    )
    _stack_options(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_)
        _stack_options(c, top=False)
        return c

    ls = command("list", "creations matching a filter, newest first")
    _filter_options(ls, statuses=True)
    ls.add_argument("--limit", type=_limit, default=50, metavar="N", help="at most this many matches (default 50)")
    ls.add_argument("--page-token", metavar="TOKEN", help="continue after the previous page (printed at its end)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    t = command("trace", "the creation, its executions and their step entries, its ledger entries")
    t.add_argument("creation_id")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")

    r = command("replay", "start the next attempt of failed creations")
    r.add_argument("creation_ids", nargs="*", metavar="CREATION_ID")
    r.add_argument("--failed", action="store_true",
                   help="every failed creation worth replaying (its error retryable, not CONTENT_POLICY, "
                        "INVALID_REQUEST, INSUFFICIENT_TOKENS), narrowed by the filters")
    _filter_options(r, statuses=False)
    r.add_argument("--limit", type=_limit, default=100, metavar="N",
                   help="with --failed: replay at most this many (counted after the filters; default 100)")
    r.add_argument("--dry-run", action="store_true", help="show what would be replayed and charged, change nothing")
    r.add_argument("--force", action="store_true",
                   help="by id only: replay a creation that failed for good (charges the user again); needs --reason")
    r.add_argument("--reason", default="", metavar="TEXT", help="why (recorded on each creation replayed)")
    r.add_argument("--actor", default=None, metavar="NAME", help="who asks (recorded; default: the login name)")

    c = command("reconcile", "fail and refund creations whose execution ended without settling them")
    c.add_argument("--older-than", type=_seconds_arg, default=900, metavar="SECONDS",
                   help="only creations pending or processing unchanged for this long (default 900)")
    c.add_argument(
        "--limit", type=_limit, default=100, metavar="N", help="at most this many, oldest first (default 100)"
    )
    c.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")

    command("audit", "check every user's balance against the ledger")

    x = command("cancel", "cancel the running execution of a creation, then fail and refund it")
    x.add_argument("creation_id")
    x.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded on the creation)")
    x.add_argument("--actor", default=None, metavar="NAME", help="who asks (recorded; default: the login name)")
    return p


def _settings(args):
    from creations.settings import Settings

    overrides: dict = {}
    if args.data_dir is not None:
        overrides["sqlite_path"] = args.data_dir / "phoenix.sqlite3"
    if args.sqlite_path is not None:
        overrides["sqlite_path"] = args.sqlite_path
    if args.store is not None:
        overrides["store"] = args.store
    if args.engine_url is not None:
        overrides["local_engine_url"] = args.engine_url
    return Settings(**overrides)


def _actor(args) -> str:
    if args.actor:
        return args.actor
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in this environment
        return "operator"


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    try:
        return _run(args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)


def _fail(message: str, code: int) -> int:
    print(f"phoenix ops: {message}", file=sys.stderr)
    return code


def _run(args) -> int:
    from google.auth.exceptions import GoogleAuthError
    from pydantic import ValidationError

    from creations.operator import BadRequest, Operator, StoreMissing, check_store_exists
    from creations.store import open_store

    try:
        settings = _settings(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "settings"
        return _fail(f"invalid configuration: {where}: {first.get('msg')}", EXIT_USAGE)
    _check_arguments(args)
    store = operator = None
    try:
        check_store_exists(settings)
        store = open_store(settings)
        operator = Operator.from_settings(settings, store, job_log=sys.stderr)
        return COMMANDS[args.command](operator, args)
    except StoreMissing as exc:
        return _fail(exc.message, EXIT_USAGE)
    except GoogleAuthError as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return _fail(f"no usable Google credentials ({first}); run `gcloud auth application-default login`, "
                     "or point at a local stack with --data-dir and --engine-url", EXIT_USAGE)
    except (BadRequest, NotFound, InvalidOptions) as exc:  # unknown ids or codes, a bad page token
        return _fail(exc.message, EXIT_USAGE)
    except CreationsError as exc:
        return _fail(exc.message, EXIT_NEEDS_OPERATOR)
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        text = (str(exc).splitlines() or [""])[0][:300]
        return _fail(f"{type(exc).__name__}: {text}", EXIT_NEEDS_OPERATOR)
    finally:
        if operator is not None:
            operator.close()
        if store is not None:
            store.close()


def _check_arguments(args) -> None:
    """What argparse cannot say: combinations. Checked before anything is opened."""
    if args.command != "replay":
        return
    filters = args.code or args.type or args.user or args.since or args.until or args.execution
    if args.failed == bool(args.creation_ids):
        raise UsageError("replay: give creation ids, or --failed (one of the two)")
    if filters and not args.failed:
        raise UsageError("replay: --code goes with --failed (as do --type, --user, --since, --until, --execution)")
    if args.force and args.failed:
        raise UsageError("replay: --force replays by id only; a bulk replay never charges again for a final failure")
    if args.force and not args.reason.strip():
        raise UsageError("replay: --force needs --reason \"...\" (it is recorded on the creation)")


def _filter(args, *, statuses=()):
    from creations.operator import CreationFilter

    return CreationFilter(statuses=tuple(statuses) or tuple(getattr(args, "status", []) or ()),
                          types=tuple(args.type), uid=args.user, codes=tuple(args.code),
                          created_from=args.since, created_before=args.until, execution=args.execution)


# --- list ----------------------------------------------------------------------------------------


def cmd_list(operator, args) -> int:
    page = operator.find(_filter(args), limit=args.limit, page_token=args.page_token)
    if args.json:
        print(json.dumps({"items": [c.to_dict() for c in page.items], "nextPageToken": page.next_page_token},
                         indent=2, ensure_ascii=False))
        return EXIT_OK
    if not page.items:
        print("no creation matches")
        return EXIT_OK
    for c in page.items:
        code = c.error.code if c.error else "-"
        print(f"  {c.id}  {c.created_at:%Y-%m-%d %H:%M:%S}  {c.type.value:<5}  {c.status.value:<10}  "
              f"attempt {c.attempt}  {code:<20}  {c.uid}")
    print(f"{len(page.items)} shown" + (f"; more: --page-token {page.next_page_token}" if page.next_page_token else ""))
    return EXIT_OK


# --- trace ---------------------------------------------------------------------------------------


def cmd_trace(operator, args) -> int:
    trace = operator.trace(args.creation_id)
    if args.json:
        print(json.dumps({
            "creation": trace.creation.to_dict(),
            "executions": [{"execution": e.execution or {"name": e.name, "state": f"unreadable: {e.unreadable}"},
                            "stepEntries": e.entries, "recorded": e.recorded} for e in trace.executions],
            "ledger": [{"id": e.id, "kind": e.kind.value, "amount": e.amount, "at": e.at.isoformat()}
                       for e in trace.ledger],
        }, indent=2, ensure_ascii=False))
        return EXIT_OK
    _print_creation(trace.creation)
    for entry in trace.ledger:
        sign = "+" if entry.kind.value in ("grant", "refund") else "-"
        print(f"  ledger {entry.at:%Y-%m-%d %H:%M:%S}  {entry.kind.value:<6} {sign}{entry.amount}  {entry.id}")
    if not trace.executions:
        print("  no execution recorded or found (the trigger never started one)")
    for e in trace.executions:
        note = "" if e.recorded else "  (not recorded on the creation: found by its creation-id label)"
        if e.execution is None:
            print(f"\nexecution {e.name}{note}\n  unreadable: {e.unreadable}")
            continue
        print(f"\nexecution {e.name}{note}\n  state {e.execution.get('state')}  "
              f"duration {e.execution.get('duration', '-')}")
        if e.execution.get("error"):
            print(f"  error {e.execution['error'].get('payload')}")
        for entry in e.entries:
            took = _seconds(entry.get("createTime"), entry.get("updateTime"))
            print(f"  {entry.get('routine', ''):<18} {entry.get('step', ''):<20} "
                  f"{entry.get('stepType', '').removeprefix('STEP_'):<20} "
                  f"{entry.get('state', '').removeprefix('STATE_'):<11} {took}")
    return EXIT_OK


def _print_creation(c: Creation) -> None:
    print(f"creation {c.id}  ({c.type.value}, user {c.uid})")
    print(f"  status {c.status.value}  attempt {c.attempt}  cost {c.cost}  updated {c.updated_at:%Y-%m-%d %H:%M:%S}")
    print(f"  prompt {c.prompt!r}")
    if c.error:
        print(f"  error  {c.error.code} at {c.error.step}: {c.error.message} (retryable: {c.error.retryable})")
    print(f"  charge debited {c.charge.get('debited')}  refunded {c.charge.get('refunded')}")
    for step, cp in c.checkpoints.items():
        print(f"  checkpoint {step:<10} attempt {cp.attempt}  {cp.output.get('key', '')}")
    for a in c.actions:
        print(f"  action {a.get('at', '')[:19]}  {a.get('action')} by {a.get('actor')}: {a.get('reason') or '-'}")


def _seconds(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        delta = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                 - datetime.fromisoformat(start.replace("Z", "+00:00")))
    except ValueError:
        return ""
    return f"{delta.total_seconds():.2f}s"


# --- replay --------------------------------------------------------------------------------------


def cmd_replay(operator, args) -> int:
    return _replay_bulk(operator, args) if args.failed else _replay_ids(operator, args)


def _replay_ids(operator, args) -> int:
    creations = operator.get_all(args.creation_ids)  # every id known, or nothing is done (exit 2)
    if args.dry_run:
        refused = 0
        for c in creations:
            p = operator.preview(c.id)
            if p.worth or (p.needs_force and args.force):
                print(f"  would replay {c.id} (attempt {p.attempt} -> {p.next_attempt}, {p.status}, "
                      f"{p.error_code or '-'}{', forced' if not p.worth else ''}): charges {p.charge}, "
                      f"balance {p.balance}; {_plan(p)}")
            else:
                refused += 1
                hint = "; --force --reason \"...\" replays it anyway" if p.needs_force else ""
                print(f"  {c.id}: would not replay: {p.reason}{hint}")
            for note in p.notes:
                print(f"    note: {note}")
        return EXIT_NEEDS_OPERATOR if refused else EXIT_OK
    failures = 0
    for c in creations:
        result = operator.replay(c.id, actor=_actor(args), reason=args.reason, force=args.force)
        failures += _print_result(result)
    return EXIT_NEEDS_OPERATOR if failures else EXIT_OK


def _print_result(result) -> int:
    if result.started:
        print(f"  {result.creation_id}: attempt {result.attempt} started "
              f"{result.execution or '(queued)'}{' (forced)' if result.forced else ''}")
        return 0
    if result.code == "NOT_WORTH_REPLAYING":
        print(f'  {result.creation_id}: not replayed: {result.message}; use --force --reason "..." to replay it anyway')
    else:
        print(f"  {result.creation_id}: not replayed: {result.message}")
    return 1


def _plan(p) -> str:
    skipped = [s.step for s in p.steps if s.will == "skip"]
    return f"skips {', '.join(skipped)}" if skipped else "runs every step"


def _replay_bulk(operator, args) -> int:
    flt = _filter(args, statuses=(Status.FAILED,))
    preview = operator.bulk_preview(flt, limit=args.limit)
    if args.code:
        for p in preview.not_worth:
            print(f"  not worth replaying {p.creation_id} ({p.error_code}): {p.reason}")
    elif preview.not_worth:
        counts = ", ".join(f"{code} {n}" for code, n in sorted(preview.not_worth_by_code().items()))
        print(f"left out {len(preview.not_worth)} failed for good ({counts}): a bulk replay never charges "
              "again for those")
    if not preview.to_replay:
        print("nothing to replay")
        return EXIT_OK
    if args.dry_run:
        for p in preview.to_replay:
            print(f"  would replay {p.creation_id} (attempt {p.attempt} -> {p.next_attempt}, {p.status}, "
                  f"{p.error_code or '-'})")
        more = "" if preview.complete else f" (--limit {args.limit} reached: more match)"
        print(f"{len(preview.to_replay)} would be replayed, charging {preview.charge} token(s) in all{more}")
        return EXIT_OK
    failures = 0
    for p in preview.to_replay:
        failures += _print_result(operator.replay(p.creation_id, actor=_actor(args), reason=args.reason,
                                                  expected_attempt=p.attempt))
    print(f"{len(preview.to_replay) - failures} replayed, {failures} not")
    return EXIT_NEEDS_OPERATOR if failures else EXIT_OK


# --- reconcile, audit, cancel --------------------------------------------------------------------


def cmd_reconcile(operator, args) -> int:
    report = operator.reconcile(older_than=timedelta(seconds=args.older_than), limit=args.limit,
                                dry_run=args.dry_run)
    for r in report.results:
        c = r.creation
        print(f"  {c.id} attempt {c.attempt} {c.status.value}, {r.execution.describe()}: {r.message}")
    if not report.results:
        print(f"nothing to reconcile: no creation pending or processing unchanged for {args.older_than} s")
        return EXIT_OK
    summary = ", ".join(f"{n} {action}" for action, n in report.counts().items())
    print(f"{len(report.results)} found: {summary}{' (dry run: nothing changed)' if args.dry_run else ''}")
    return EXIT_NEEDS_OPERATOR if report.unsettled else EXIT_OK


def cmd_audit(operator, args) -> int:
    report = operator.audit()
    if report.balanced:
        print("the books balance: every user's balance = grants - debits + refunds")
        return EXIT_OK
    for f in report.findings:
        print(f"  {f.uid}: balance {f.balance}, ledger says {f.expected}: {f.detail}")
    return EXIT_NEEDS_OPERATOR


def cmd_cancel(operator, args) -> int:
    result = operator.cancel(args.creation_id, actor=_actor(args), reason=args.reason)
    print(f"  {result.creation_id}: {result.message}")
    return EXIT_OK if result.settled is None or result.settled.settled else EXIT_NEEDS_OPERATOR


COMMANDS = {"list": cmd_list, "trace": cmd_trace, "replay": cmd_replay, "reconcile": cmd_reconcile,
            "audit": cmd_audit, "cancel": cmd_cancel}
