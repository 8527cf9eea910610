"""Google's Firestore emulator as a local service: start on a free loopback port, wait, reset, stop.

The emulator's launcher is a shell script that starts java as a child; both run in their own
process group, and stopping kills the group so no java process outlives its owner.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_BINARY = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator")
INSTALL_HINT = ("install it with `gcloud components install cloud-firestore-emulator` or the Debian/Ubuntu "
                "package google-cloud-cli-firestore-emulator")


class EmulatorError(RuntimeError):
    """The emulator could not be started or stopped."""


class EmulatorNotInstalled(EmulatorError):
    def __init__(self, looked_at: list[str]):
        super().__init__(f"the Firestore emulator is not installed (looked at {', '.join(looked_at)}); "
                         f"{INSTALL_HINT}")


def find_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The emulator launcher: `explicit`, the Cloud SDK's usual place, or any gcloud on PATH."""
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise EmulatorNotInstalled([str(path)])
    candidates: list[Path] = [DEFAULT_BINARY]
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk_root = Path(os.path.realpath(gcloud)).parent.parent
        candidates.append(sdk_root / "platform/cloud-firestore-emulator/cloud_firestore_emulator")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EmulatorNotInstalled([str(c) for c in candidates])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class FirestoreEmulator:
    """One emulator process. Use as a context manager, or call start() and stop()."""

    def __init__(self, binary: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1",
                 port: int | None = None, startup_timeout: float = 60.0):
        self.binary = find_binary(binary)
        self.host = host
        self._wanted_port = port
        self.port: int | None = None
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def address(self) -> str:
        """host:port, the value of FIRESTORE_EMULATOR_HOST for clients."""
        if self.port is None:
            raise EmulatorError("the emulator is not running")
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def env(self) -> dict[str, str]:
        """Environment for processes that should use this emulator."""
        return {"FIRESTORE_EMULATOR_HOST": self.address}

    def start(self) -> FirestoreEmulator:
        if self._proc is not None:
            return self
        # A port picked free can be taken before the emulator binds it: try a few.
        last: EmulatorError | None = None
        for _ in range(3 if self._wanted_port is None else 1):
            port = self._wanted_port or free_port(self.host)
            try:
                self._launch(port)
                return self
            except EmulatorError as exc:
                last = exc
        assert last is not None
        raise last

    def _launch(self, port: int) -> None:
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [str(self.binary), "start", f"--host={self.host}", f"--port={port}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills java with it
        )
        self.port = port
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                output = self._output()
                self.stop()
                raise EmulatorError(f"the Firestore emulator exited with {rc} during start:\n{output}")
            if self._ready():
                return
            time.sleep(0.1)
        output = self._output()
        self.stop()
        raise EmulatorError(f"the Firestore emulator was not ready after {self.startup_timeout:.0f} s:\n{output}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def reset(self, project: str, database: str = "(default)", timeout: float = 10.0) -> None:
        """Delete every document of `project` (fast; the emulator keeps running)."""
        path = f"/emulator/v1/projects/{urllib.parse.quote(project)}/databases/{urllib.parse.quote(database)}/documents"
        request = urllib.request.Request(self.url + path, method="DELETE")
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if resp.status != 200:
                raise EmulatorError(f"reset of {project} answered {resp.status}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop java first (so the launcher shell reaps it and exits), then whatever is left of the group."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for pid in _children(proc.pid):
                _signal(pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + timeout
            while _group_alive(proc.pid):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                if proc.poll() is None:
                    try:
                        proc.wait(timeout=0.1)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.05)
                if time.monotonic() > deadline:
                    raise EmulatorError(f"the Firestore emulator (process group {proc.pid}) did not stop")
            proc.wait(timeout=timeout)
            atexit.unregister(self.stop)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = None

    def __enter__(self) -> FirestoreEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _proc_stat(pid: str) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(entry.name)
        if stat and stat[1] == pid and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies left to a non-reaping init do not count)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(entry.name)
        if stat and stat[2] == pgid and stat[0] != "Z":
            return True
    return False
