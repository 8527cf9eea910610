"""`phoenix workflow ...`: run or check a workflow file in the local engine.

    phoenix workflow run FILE [--data JSON | --data-file PATH] [--env K=V]... [--trace]
    phoenix workflow check FILE
    phoenix workflow serve FILE... [--port N] [--grpc-port N] [--db PATH]

`run` prints the result as JSON on stdout and exits 0; a failed execution prints its error
payload as JSON on stderr and exits 1; a file that does not load prints every problem and
exits 2, as do bad flags. `sys.log` lines go to stderr as they are written (`--quiet` hides
them); `--trace` adds the step entries (step, type, state, duration) on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from localcloud.workflows.clock import RealClock
from localcloud.workflows.engine import Engine
from localcloud.workflows.errors import EngineError, InvalidArgument, LoadError
from localcloud.workflows.executions import parse_rfc3339
from localcloud.workflows.loader import load_file

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() returns the exit code."""

    def error(self, message: str) -> None:
        raise _UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")


def _formatter(prog: str) -> argparse.HelpFormatter:
    # The width given, argparse does not import shutil (and what it imports) to measure it.
    try:
        width = os.get_terminal_size().columns - 2
    except OSError:
        width = 78
    return argparse.HelpFormatter(prog, width=width)


def _parser() -> _Parser:
    parser = _Parser(prog="phoenix workflow", formatter_class=_formatter,
                     description="Run Cloud Workflows files in the local engine.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = commands.add_parser("run", formatter_class=_formatter, help="run a workflow file and print its result")
    run.add_argument("file", help="the workflow file (YAML or JSON)")
    data = run.add_mutually_exclusive_group()
    data.add_argument("--data", metavar="JSON", help="the execution argument, as JSON text")
    data.add_argument("--data-file", metavar="PATH", help="a file holding the argument as JSON")
    run.add_argument("--env", metavar="K=V", action="append", default=[],
                     help="a user environment variable for sys.get_env (repeatable)")
    run.add_argument("--trace", action="store_true",
                     help="print the step entries (step, type, state, duration) on stderr")
    run.add_argument("--quiet", action="store_true", help="do not print sys.log lines")
    run.add_argument("--db", metavar="PATH", default=":memory:",
                     help="keep executions in this SQLite file (default: in memory)")
    run.add_argument("--timeout", metavar="SECONDS", type=float, default=None,
                     help="cancel the execution after this many seconds")
    check = commands.add_parser("check", formatter_class=_formatter, help="check a workflow file without running it")
    check.add_argument("file", help="the workflow file (YAML or JSON)")
    serve = commands.add_parser("serve", formatter_class=_formatter,
                                help="deploy workflow files and serve the Executions "
                                     "API (REST and gRPC) on loopback")
    serve.add_argument("files", nargs="+", metavar="FILE",
                       help="workflow files; each is deployed under its file name's stem")
    serve.add_argument("--port", type=int, default=0, help="REST port (default: a free one)")
    serve.add_argument("--grpc-port", type=int, default=0,
                       help="gRPC port (default: a free one)")
    serve.add_argument("--env", metavar="K=V", action="append", default=[],
                       help="a user environment variable of every deployment (repeatable)")
    serve.add_argument("--db", metavar="PATH", default=":memory:",
                       help="keep executions in this SQLite file (default: in memory)")
    return parser


def main(argv: list[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(parser.format_help(), file=out)
            return EXIT_OK
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:   # --help of a subcommand
            return int(exit_.code or 0)
        if args.command == "check":
            return _check(args, out, err)
        if args.command == "run":
            return _run(args, out, err)
        if args.command == "serve":
            return _serve(args, out, err)
        raise _UsageError(f"phoenix workflow: unknown command {argv[0]!r} (run, check)")
    except _UsageError as exc:
        print(str(exc), file=err)
        return EXIT_USAGE


def _check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        program = load_file(args.file)
    except LoadError as exc:
        _print_problems(exc, err)
        return EXIT_USAGE
    print(f"{args.file}: OK ({len(program.routines)} workflow(s): "
          f"{', '.join(program.routines)})", file=out)
    return EXIT_OK


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    argument = _argument(args)
    env = _env(args.env)
    path = Path(args.file)
    quiet = args.quiet

    def print_log(_name: str, line: dict) -> None:
        if quiet:
            return
        payload = line.get("textPayload")
        if payload is None:
            payload = json.dumps(line.get("jsonPayload"), ensure_ascii=False)
        print(f"[{line['severity']}] {payload}", file=err, flush=True)

    try:
        engine = Engine(db_path=args.db, clock=RealClock(), log_sink=print_log)
    except Exception as exc:
        raise _UsageError(f"phoenix workflow: cannot open the database {args.db}: {exc}") from exc
    try:
        try:
            engine.deploy(_workflow_id(path), path, env=env)
        except LoadError as exc:
            _print_problems(exc, err)
            return EXIT_USAGE
        except InvalidArgument as exc:
            raise _UsageError(f"phoenix workflow: {exc}") from exc
        try:
            name = engine.start(_workflow_id(path), argument)
        except EngineError as exc:
            raise _UsageError(f"phoenix workflow: {exc}") from exc
        try:
            execution = engine.wait(name, args.timeout)
            if execution["state"] in ("QUEUED", "ACTIVE"):
                print(f"phoenix workflow: the execution did not finish within {args.timeout} s; "
                      f"cancelling it", file=err)
                execution = engine.cancel(name)
        except KeyboardInterrupt:
            engine.cancel(name)
            print("phoenix workflow: interrupted; the execution was cancelled", file=err)
            return 130
        if args.trace:
            _print_trace(engine.step_entries(name), err)
        if execution["state"] == "SUCCEEDED":
            print(json.dumps(json.loads(execution["result"]), indent=2, ensure_ascii=False),
                  file=out)
            return EXIT_OK
        if execution["state"] == "FAILED":
            payload = json.loads(execution["error"]["payload"])
            print(json.dumps(payload, indent=2, ensure_ascii=False), file=err)
            return EXIT_FAILED
        print(json.dumps({"state": execution["state"]}), file=err)
        return EXIT_FAILED
    finally:
        engine.shutdown()


def _serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from localcloud.workflows.executions_grpc import ExecutionsGrpcServer
    from localcloud.workflows.server import ExecutionsServer

    env = _env(args.env)
    engine = Engine(db_path=args.db, clock=RealClock())
    try:
        failed = False
        for file in args.files:
            path = Path(file)
            try:
                revision = engine.deploy(_workflow_id(path), path, env=env)
            except LoadError as exc:
                _print_problems(exc, err)
                failed = True
                continue
            except InvalidArgument as exc:
                raise _UsageError(f"phoenix workflow: {exc}") from exc
            print(f"deployed {engine.workflow_name(_workflow_id(path))} (revision {revision})",
                  file=out)
        if failed:
            return EXIT_USAGE
        for name in engine.resume_interrupted():
            print(f"resumed {name} (interrupted when an earlier engine stopped)", file=out)
        try:
            rest = ExecutionsServer(engine, port=args.port)
            grpc_server = ExecutionsGrpcServer(engine, port=args.grpc_port)
        except OSError as exc:
            raise _UsageError(f"phoenix workflow: cannot listen: {exc}") from exc
        grpc_server.start()
        print(f"serving the Executions API: REST {rest.url}  gRPC {grpc_server.address}",
              file=out, flush=True)
        _stop_on_sigterm()
        try:
            rest.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            grpc_server.stop()
        return EXIT_OK
    finally:
        engine.shutdown()


def _stop_on_sigterm() -> None:
    """Let SIGTERM end `serve` like Ctrl-C, so the engine shuts down cleanly."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, interrupt)


def _argument(args: argparse.Namespace) -> Any:
    if args.data is not None:
        text, origin = args.data, "--data"
    elif args.data_file is not None:
        try:
            text = Path(args.data_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise _UsageError(f"phoenix workflow: cannot read --data-file {args.data_file}: "
                              f"{exc.strerror or exc}") from exc
        origin = f"--data-file {args.data_file}"
    else:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _UsageError(f"phoenix workflow: {origin} is not valid JSON: {exc}") from exc


def _env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _UsageError(f"phoenix workflow: --env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def _workflow_id(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)[:64]
    return stem if stem[:1].isalpha() else f"w-{stem}"[:64]


def _print_problems(exc: LoadError, err: TextIO) -> None:
    print(f"the workflow does not load ({len(exc.problems)} problem"
          f"{'s' if len(exc.problems) != 1 else ''}):", file=err)
    for problem in exc.problems:
        print(f"  {problem}", file=err)


def _print_trace(entries: list[dict], err: TextIO) -> None:
    depth: dict[str, int] = {}
    print("step entries:", file=err)
    print(f"  {'step':<40} {'type':<28} {'state':<18} duration", file=err)
    for entry in entries:
        parent = entry.get("navigationInfo", {}).get("parent")
        level = depth.get(parent, -1) + 1 if parent is not None else 0
        depth[entry["entryId"]] = level
        seconds = parse_rfc3339(entry["updateTime"]) - parse_rfc3339(entry["createTime"])
        label = "  " * level + entry["step"]
        if entry["routine"] != "main" and level == 0:
            label = f"{entry['routine']}.{label}"
        print(f"  {label:<40} {entry['stepType']:<28} {entry['state']:<18} {seconds:.3f}s",
              file=err)


if __name__ == "__main__":
    sys.exit(main())
