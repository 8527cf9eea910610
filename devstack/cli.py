"""`phoenix dev`: run the local stack, and the two chores around it.

    phoenix dev [--port 8080] [--data-dir .data] [--in-process] [--instant]
                [--store sqlite|firestore] [--trigger local|tasks]
                [--fault JOB:KIND[:TIMES][@MARKER] ...] [--clock real|virtual]
    phoenix dev token UID [--data-dir]    a bearer token the local API of that data dir accepts
    phoenix dev grant UID N [--data-dir]  add N tokens to UID (a ledger grant, audited like any other)

`--store firestore --trigger tasks` runs on production settings: Google's Firestore emulator as
the store and a local Cloud Tasks delivering to the Executions API. `grant` acts on the store the
running stack uses (its data dir's ops.env), else on the store the PHOENIX_* settings name.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
import uuid
from pathlib import Path

DEFAULT_DATA_DIR = Path(".data")


def _uid(value: str) -> str:
    from creations.uids import uid_problem

    problem = uid_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"{value!r} is not a usable user id: {problem}")
    return value


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= n <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{n} is out of range: grant between 1 and 1,000,000 tokens")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phoenix dev", description="The local stack on loopback.")
    p.add_argument("--port", type=int, default=8080,
                   help="the API's port; the engine, generation and S3 servers take the next three, "
                        "Cloud Tasks (--trigger tasks) the fourth (0: free ports)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where state persists (default .data)")
    p.add_argument("--in-process", action="store_true", help="run step jobs in-process instead of as subprocesses")
    p.add_argument("--instant", action="store_true", help="generation answers at once with tiny media")
    p.add_argument("--store", choices=("sqlite", "firestore"), default="sqlite",
                   help="sqlite (embedded, default) or firestore (Google's Firestore emulator, as production)")
    p.add_argument("--trigger", choices=("local", "tasks"), default="local",
                   help="local (the API starts executions directly, default) or tasks (Cloud Tasks, as production)")
    p.add_argument("--fault", action="append", default=[], metavar="JOB:KIND[:TIMES][@MARKER]",
                   help="make the JOB jobs (upload, generate, *) of creations whose prompt holds MARKER misbehave: "
                        "fail, crash_after, twice, storage_down, store_down or generation_down; TIMES runs per "
                        "creation (default: every run). Repeatable. See devstack/faults.py")
    p.add_argument("--clock", choices=("real", "virtual"), default="real",
                   help="virtual: the workflow's waits (retry backoffs, polling) take no wall time")
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("token", help="print a bearer token the local API accepts")
    t.add_argument("uid", type=_uid)
    t.add_argument("--data-dir", type=Path, default=None, dest="token_data_dir",
                   help="the stack's data dir, whose secret signs the token (default .data)")
    g = sub.add_parser("grant", help="add tokens to a user (a ledger grant)")
    g.add_argument("uid", type=_uid)
    g.add_argument("amount", type=_positive)
    g.add_argument("--data-dir", type=Path, default=None, dest="grant_data_dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "token":
        from api.auth import make_local_token
        from devstack.stack import local_auth_secret

        try:
            secret = local_auth_secret(args.token_data_dir or args.data_dir, create=False)
        except (OSError, ValueError) as exc:
            print(f"phoenix dev token: {exc}", file=sys.stderr)
            return 2
        print(make_local_token(args.uid, secret))
        return 0
    if args.command == "grant":
        return _grant(args.uid, args.amount, args.grant_data_dir or args.data_dir)
    return _serve(args)


def stack_env(data_dir: Path) -> dict[str, str] | None:
    """The settings a running stack wrote to its data dir (ops.env), or None when none runs there."""
    from devstack.stack import OPS_ENV_FILE

    path = data_dir / OPS_ENV_FILE
    if not path.is_file():
        return None
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, sep, value = shlex.split(line)[0].partition("=")
        if sep:
            env[key] = value
    return env


def _grant(uid: str, amount: int, data_dir: Path) -> int:
    import os

    from creations.errors import CreationsError
    from creations.settings import Settings
    from creations.store import open_store

    running = stack_env(data_dir)
    if running is not None:
        # The running stack's store, whatever this shell's environment says.
        os.environ.update(running)
        settings = Settings()
    else:
        settings = Settings()
        if settings.store == "sqlite" and "PHOENIX_SQLITE_PATH" not in os.environ:
            data_dir.mkdir(parents=True, exist_ok=True)
            settings = settings.model_copy(update={"sqlite_path": data_dir / "phoenix.sqlite3"})
        elif settings.store == "firestore" and not os.environ.get("FIRESTORE_EMULATOR_HOST") \
                and settings.firestore_project == "phoenix-local":
            print(f"phoenix dev grant: no stack runs on {data_dir} and PHOENIX_STORE=firestore names no "
                  f"emulator (FIRESTORE_EMULATOR_HOST); start `phoenix dev --store firestore` first",
                  file=sys.stderr)
            return 2
    try:
        store = open_store(settings)
    except Exception as exc:  # noqa: BLE001 - a clear line, not a traceback
        print(f"phoenix dev grant: cannot open the {settings.store} store: {exc}", file=sys.stderr)
        return 1
    try:
        balance = store.grant(uid, amount, f"grant:{uuid.uuid4().hex}")
    except CreationsError as exc:
        print(f"phoenix dev grant: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"granted {amount} tokens to {uid} ({settings.store}); balance {balance}")
    return 0


def ops_command(data_dir: Path, engine_url: str) -> str:
    """The exact `phoenix ops` invocation that reaches a stack (its store and its engine)."""
    import shlex

    return f"phoenix ops --data-dir {shlex.quote(str(Path(data_dir).resolve()))} --engine-url {engine_url}"


def _serve(args) -> int:
    from devstack.stack import OPS_ENV_FILE, LocalStack, StackConfig
    from localcloud.firestore_emulator import EmulatorNotInstalled

    try:
        from localcloud.workflows import VirtualClock

        config = StackConfig(data_dir=args.data_dir, port=args.port,
                             jobs_mode="inprocess" if args.in_process else "process",
                             instant_generation=args.instant, store=args.store, trigger=args.trigger,
                             faults=list(args.fault), clock=VirtualClock() if args.clock == "virtual" else None)
    except ValueError as exc:
        print(f"phoenix dev: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(config)
    stop_console = None
    try:
        stack.start()
    except EmulatorNotInstalled as exc:
        print(f"phoenix dev: --store firestore needs Google's Firestore emulator: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a clear line, not a traceback
        print(f"phoenix dev: could not start the stack: {exc}", file=sys.stderr)
        return 1
    try:
        print("phoenix local stack is up (Ctrl-C to stop)")
        for name, url in stack.urls.items():
            print(f"  {name:<11} {url}")
        print(f"  data dir    {config.data_dir.resolve()}")
        print(f"  jobs        {config.jobs_mode}")
        print(f"  store       {config.store}   trigger {config.trigger}")
        if config.clock is not None:
            print("  clock       virtual: waits take no wall time")
        for spec in config.faults:
            print(f"  fault       {spec}")
        stop_console = _start_console(stack, 0 if args.port == 0 else DEFAULT_CONSOLE_PORT)
        print(f"try:  TOKEN=$(phoenix dev token alice --data-dir {config.data_dir}); "
              f"phoenix dev grant alice 20 --data-dir {config.data_dir}")
        print(f"      curl -H \"Authorization: Bearer $TOKEN\" {stack.urls['api']}/v1/me")
        print(f"      curl -N -H \"Authorization: Bearer $TOKEN\" {stack.urls['api']}/v1/creations/events"
              "   # live progress (docs/realtime.md)")
        ops_env = (config.data_dir / OPS_ENV_FILE).resolve()
        if config.store == "sqlite" and config.trigger == "local":
            print(f"ops:  {ops_command(config.data_dir, stack.urls['executions'])} list")
            print(f"      (or: set -a; . {ops_env}; set +a; phoenix ops audit)")
        else:
            print(f"ops:  (set -a; . {ops_env}; set +a; phoenix ops audit)")
        sys.stdout.flush()
        stop.wait()
    finally:
        print("stopping...", file=sys.stderr)
        if stop_console is not None:
            stop_console()
        stack.stop()
    return 0


DEFAULT_CONSOLE_PORT = 8090


def _start_console(stack, port: int):
    """The operator console over this stack, on 127.0.0.1; its URL is printed. A console that
    cannot start (its port taken) is reported and the stack runs on without it."""
    from phoenix.console.cli import Console, start_in_thread

    console = None
    try:
        console = Console(stack.settings, store=stack.store, storage=stack.storage, data_dir=stack.config.data_dir)
        url, stop = start_in_thread(console, port)
    except Exception as exc:  # noqa: BLE001 - the stack is still worth running
        if console is not None:
            console.close()
        print(f"  console     not started: {exc} (run `phoenix console --port N` against this stack)")
        return None
    print(f"  console     {url}/")
    return stop
