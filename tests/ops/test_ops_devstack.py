"""`phoenix dev` and `phoenix ops` agree on how to reach a stack: the banner prints the exact ops
invocation, and that invocation works. `phoenix demo --data-dir` removes only a dir it made."""
from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from devstack.demo import OWNER_MARK, DataDirRefused, claim_data_dir
from devstack.demo import main as demo_main
from devstack.stack import ROOT

pytestmark = pytest.mark.xdist_group("ops")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")} | {"PYTHONUNBUFFERED": "1"}


def test_the_dev_banner_prints_the_ops_invocation_that_reaches_the_stack(tmp_path):
    data = tmp_path / "my data"   # a space: the printed command must quote it
    dev = subprocess.Popen([sys.executable, "-m", "phoenix.cli", "dev", "--port", "0", "--data-dir", str(data),
                            "--in-process", "--instant"], cwd=ROOT, env=clean_env(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in dev.stdout], daemon=True).start()
        banner = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (banner and banner[-1].startswith("ops:")):
            try:
                banner.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
        ops_line = next((line for line in banner if line.startswith("ops:")), None)
        assert ops_line, (
            f"no ops line in the banner:\n{''.join(banner)}{dev.stderr.read() if dev.poll() is not None else ''}"
        )
        argv = shlex.split(ops_line.removeprefix("ops:"))
        assert argv[:2] == ["phoenix", "ops"] and argv[-1] == "list"
        assert str(data.resolve()) in argv

        def ops(*command: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "phoenix.cli", *argv[1:-1], *command], cwd=tmp_path,
                                  env=clean_env(), capture_output=True, text=True, timeout=120)

        grant = subprocess.run([sys.executable, "-m", "phoenix.cli", "dev", "grant", "alice", "3", "--data-dir",
                                str(data)], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
        assert grant.returncode == 0, grant.stderr
        listed = ops("list")
        assert (listed.returncode, listed.stdout) == (0, "no creation matches\n"), listed.stderr
        audit = ops("audit")
        assert audit.returncode == 0 and audit.stdout.startswith("the books balance"), audit.stderr
        # The engine flag is live: reconcile asks it about nothing stuck, and an unknown id is an error.
        assert ops("reconcile", "--older-than", "0").returncode == 0
        unknown = ops("trace", "nope")
        assert unknown.returncode == 2 and unknown.stderr.strip() == "phoenix ops: no creation nope"
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()


# --- phoenix demo --data-dir ---------------------------------------------------------------------


def test_demo_refuses_a_non_empty_dir_it_did_not_create_and_leaves_it_untouched(tmp_path, capsys):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    assert demo_main(["--data-dir", str(precious)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty and was not created by phoenix demo" in err
    assert [p.name for p in precious.iterdir()] == ["chapter1.tex"]
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_demo_refuses_a_file(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(DataDirRefused, match="is a file"):
        claim_data_dir(target)
    assert target.read_text() == "x"


def test_demo_wipes_a_dir_it_made_and_uses_a_new_or_empty_one(tmp_path):
    fresh = tmp_path / "new" / "demo"
    claim_data_dir(fresh)
    assert [p.name for p in fresh.iterdir()] == [OWNER_MARK]
    (fresh / "phoenix.sqlite3").write_text("last run")
    claim_data_dir(fresh)                       # its own dir: wiped
    assert [p.name for p in fresh.iterdir()] == [OWNER_MARK]

    empty = tmp_path / "empty"
    empty.mkdir()
    claim_data_dir(empty)
    assert [p.name for p in empty.iterdir()] == [OWNER_MARK]
