"""`phoenix dev` as a developer runs it: a process of its own, stopped with Ctrl-C or killed.

`DevProcess(data_dir, *flags).start()` runs `python -m phoenix.cli dev --port 0 ...` in a new
process group, reads the URLs from its banner, and offers `interrupt()` (SIGINT to the whole
group, as a terminal's Ctrl-C does) and `crash()` (SIGKILL to the whole group). The store of a
stopped or running stack is read straight from its SQLite file.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from creations.settings import Settings
from creations.store.sqlite import SqliteStore
from devstack.stack import ROOT

START_TIMEOUT = 60.0
_URL = re.compile(r"^\s+(\w+)\s+(http://\S+)$")


class DevProcess:
    def __init__(self, data_dir: Path, *flags: str, env: dict[str, str] | None = None):
        self.data_dir = Path(data_dir)
        self.flags = flags
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.urls: dict[str, str] = {}
        self.output: list[str] = []

    def start(self) -> DevProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")} | self.extra_env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phoenix.cli", "dev", "--port", "0", "--data-dir", str(self.data_dir),
             *self.flags], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not ready.wait(START_TIMEOUT) or "api" not in self.urls:
            self.crash()
            raise AssertionError("phoenix dev did not come up:\n" + "".join(self.output))
        return self

    def _read(self, ready: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            match = _URL.match(line.rstrip("\n"))
            if match:
                self.urls[match.group(1)] = match.group(2)
            if line.startswith("  data dir"):
                ready.set()
        ready.set()

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid       # the leader of its own session and group

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C: SIGINT to every process of the group; waits for the stack to stop."""
        os.killpg(self.pgid, signal.SIGINT)
        return self._wait(timeout)

    def crash(self) -> int:
        """SIGKILL to every process of the group: nothing gets to clean up."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self._wait(30.0)

    def _wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def client(self, uid: str) -> httpx.Client:
        """An API client for `uid`, with the bearer token `phoenix dev token UID` prints."""
        return httpx.Client(base_url=self.urls["api"], timeout=30.0,
                            headers={"Authorization": f"Bearer {local_token(uid)}"})

    def store(self) -> SqliteStore:
        return SqliteStore(self.data_dir / "phoenix.sqlite3")

    def settings(self) -> Settings:
        return Settings(store="sqlite", sqlite_path=self.data_dir / "phoenix.sqlite3")


def local_token(uid: str) -> str:
    """What `phoenix dev token UID` prints for a stack started without PHOENIX_* variables (made
    here: a Python start per user costs seconds on a busy machine)."""
    from api.auth import make_local_token

    return make_local_token(uid, Settings.model_fields["local_auth_secret"].default)


def wait_until_gone(url: str, timeout: float = 10.0) -> bool:
    """True once nothing answers at `url` any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            return True
        time.sleep(0.1)
    return False
