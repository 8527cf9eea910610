"""`phoenix console` and `phoenix dev`'s console, as an operator starts them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from creations.store.sqlite import SqliteStore
from phoenix.console.cli import main as console_main

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.xdist_group("console")


def env_for(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    env.update({"PHOENIX_SQLITE_PATH": str(data_dir / "phoenix.sqlite3"), "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1"})
    return env


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(
        f"{needle!r} not printed; got:\n{''.join(seen)}{proc.stderr.read() if proc.poll() is not None else ''}"
    )


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_port_out_of_range_is_refused(capsys):
    assert console_main(["--port", "80"]) == 2
    assert "--port must be between 1024 and 65535" in capsys.readouterr().err


def test_the_console_refuses_a_store_that_does_not_exist(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("PHOENIX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOENIX_SQLITE_PATH", str(tmp_path / "nowhere" / "phoenix.sqlite3"))
    assert console_main(["--port", "18093"]) == 1
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists(), "no empty store was created"


def test_phoenix_console_serves_on_loopback_only(tmp_path):
    SqliteStore(tmp_path / "phoenix.sqlite3").close()
    with socket_port() as port:
        pass
    env = {k: v for k, v in env_for(tmp_path).items() if k != "PHOENIX_SQLITE_PATH"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "phoenix.cli", "console", "--port", str(port), "--data-dir", str(tmp_path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = wait_for_line(proc, "phoenix console on")
        assert f"http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/creations", timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 200 and "no creation matches" in response.text
        listening = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert listening and all(line.split()[1].startswith("0100007F:") for line in listening)
    finally:
        stop(proc)


def test_phoenix_dev_starts_the_console_and_prints_its_url(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "phoenix.cli", "dev", "--port", "0", "--in-process",
                             "--instant", "--data-dir", str(tmp_path)], env=env_for(tmp_path), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = wait_for_line(proc, "console")
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{url}creations", timeout=10)
        assert response.status_code == 200 and "local stack" in response.text
    finally:
        stop(proc)


class socket_port:
    """A free loopback port (closed again on leaving, for the child to take)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()
