"""`phoenix console [--port 8090] [--data-dir DIR] [--engine-url URL]`: the operator console on 127.0.0.1.

It reads what the PHOENIX_* settings point at (the local engine and store, or the Executions API
and Firestore with application-default credentials) and acts through the operator layer, as the
person running it. It never listens beyond loopback: there is no operator surface to secure.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_PORT = 8090


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phoenix console", description="The operator console, on 127.0.0.1.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a local stack's data dir (phoenix dev --data-dir): its store DIR/phoenix.sqlite3 and its job logs",
    )
    p.add_argument("--engine-url", default=None,
                   help="the local engine's Executions API (PHOENIX_LOCAL_ENGINE_URL; phoenix dev: --port + 1)")
    return p


class Console:
    """The console app and what it holds open (store, Executions client), from settings."""

    def __init__(self, settings, *, store=None, storage=None, data_dir: Path | None = None,
                 operator: str | None = None):
        from creations.operator import Operator, check_store_exists
        from creations.store import open_store

        from .actions import Actions
        from .app import create_console
        from .identity import operator_name
        from .joblogs import LocalJobLogs
        from .reader import ConsoleReader

        self.settings = settings
        self._owned = []
        if store is None:
            check_store_exists(settings)
            store = open_store(settings)
            self._owned.append(store)
        if storage is None:
            storage = _storage(settings)
        # The refund step the reconciler runs logs its money moves to stderr, as `phoenix ops` does.
        self.operator = Operator.from_settings(settings, store, storage=storage, job_log=sys.stderr)
        self._owned.append(self.operator)
        local = settings.store == "sqlite" and settings.trigger == "local"
        logs_dir = data_dir if data_dir is not None else (Path(settings.sqlite_path).parent if local else None)
        reader = ConsoleReader(settings, self.operator, storage=storage,
                               job_logs=LocalJobLogs(logs_dir) if logs_dir is not None else None)
        self.actions = Actions(reader)
        where = "local stack" if local else f"project {settings.gcp_project}"
        self.app = create_console(reader, self.actions, operator=operator or operator_name(settings), where=where)

    def close(self) -> None:
        for owned in reversed(self._owned):
            try:
                owned.close()
            except Exception:  # noqa: BLE001 - closing on the way out
                pass


def _storage(settings):
    """Media storage for previews; None when it cannot be configured (previews use stored URLs)."""
    if not settings.s3_endpoint_url and not settings.s3_access_key_id:
        return None
    try:
        from creations.storage import MediaStorage

        return MediaStorage.from_settings(settings)
    except Exception:  # noqa: BLE001
        return None


def serve(console: Console, port: int):
    """A uvicorn server for the console on 127.0.0.1:port (not started)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(console.app, host=HOST, port=port, log_level="warning", lifespan="off"))


def start_in_thread(console: Console, port: int, *, timeout: float = 20.0) -> tuple[str, Callable[[], None]]:
    """Serve the console on 127.0.0.1:port (0: a free port) in a daemon thread, as `phoenix dev`
    does; returns (its URL, stop). Raises RuntimeError when the port cannot be had."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {HOST}:{port} ({exc.strerror})") from exc
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(console.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the console did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        console.close()

    return f"http://{HOST}:{sock.getsockname()[1]}", stop


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not (1024 <= args.port <= 65535):
        print(f"phoenix console: --port must be between 1024 and 65535, not {args.port}", file=sys.stderr)
        return 2
    from creations.settings import Settings

    overrides: dict = {}
    if args.data_dir is not None:
        overrides["sqlite_path"] = args.data_dir / "phoenix.sqlite3"
    if args.engine_url is not None:
        overrides["local_engine_url"] = args.engine_url
    try:
        settings = Settings(**overrides)
    except Exception as exc:  # noqa: BLE001 - pydantic names the variable
        print(f"phoenix console: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        console = Console(settings, data_dir=args.data_dir)
    except Exception as exc:  # noqa: BLE001 - credentials, store: one clear line
        print(f"phoenix console: cannot start: {exc}", file=sys.stderr)
        return 1
    print(f"phoenix console on http://{HOST}:{args.port}/ (Ctrl-C to stop)", flush=True)
    try:
        serve(console, args.port).run()
    finally:
        console.close()
    return 0
