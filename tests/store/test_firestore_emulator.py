"""The emulator launcher: start on a free port, stop every process it started, explain a missing install.

The lifecycle runs on a stand-in launcher shaped like Google's (a bash script whose child serves
HTTP on --port), so it costs no extra java start; the real emulator is the session fixture.
"""
from __future__ import annotations

import os
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from localcloud.firestore_emulator import EmulatorError, EmulatorNotInstalled, FirestoreEmulator
from tests.support.firestore import emulator_or_skip


def fake_launcher(tmp_path: Path, *, serve: bool = True) -> Path:
    script = tmp_path / "cloud_firestore_emulator"
    child = (f'"{sys.executable}" -m http.server --bind 127.0.0.1 "${{3#--port=}}" --directory "{tmp_path}"'
             if serve else 'echo "boom: port taken" >&2; exit 3')
    script.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        # Like Google's launcher: the server runs as a child of this shell, not exec'd.
        {child}
        """))
    script.chmod(0o755)
    return script


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def test_start_serves_and_stop_kills_the_launcher_and_its_child(tmp_path):
    emulator = FirestoreEmulator(fake_launcher(tmp_path), startup_timeout=20).start()
    try:
        shell = emulator._proc.pid
        [server] = children_of(shell)
        with urllib.request.urlopen(emulator.url + "/", timeout=5) as resp:
            assert resp.status == 200
        assert emulator.env() == {"FIRESTORE_EMULATOR_HOST": emulator.address}
    finally:
        emulator.stop()
    assert not alive(shell) and not alive(server)
    emulator.stop()  # stopping twice is harmless


def test_a_launcher_that_dies_reports_its_output(tmp_path):
    with pytest.raises(EmulatorError, match="boom: port taken"):
        FirestoreEmulator(fake_launcher(tmp_path, serve=False), startup_timeout=10).start()


def test_missing_emulator_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(EmulatorNotInstalled) as info:
        FirestoreEmulator(tmp_path / "nowhere")
    assert "gcloud components install cloud-firestore-emulator" in str(info.value)
    assert "google-cloud-cli-firestore-emulator" in str(info.value)

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="cloud-firestore-emulator"):
        emulator_or_skip(tmp_path / "nowhere")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cloud-firestore-emulator"):
        emulator_or_skip(tmp_path / "nowhere")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc")
def test_no_process_of_ours_outlives_the_session_emulator(firestore_emulator):
    """The session emulator is a process group of its own, so stop() can take java with it."""
    shell = firestore_emulator._proc.pid
    assert os.getpgid(shell) == shell
    assert all(os.getpgid(child) == shell for child in children_of(shell))
