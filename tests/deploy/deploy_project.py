"""A recorded fake project for deploy.sh: a copy of the files the script reads, an env file, and
optionally a fake `gcloud` on PATH that keeps the project's state in a directory."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PROJECT = "demo-project"
REGION = "us-central1"

# What deploy.sh reads from the repository (no firestore.rules: a test adds one when it wants it).
SCRIPT_FILES = [
    "deploy.sh",
    "deploy/compare.py",
    "cloudbuild.yaml",
    "workflows/creation.yaml",
    "firestore.indexes.json",
]

ENV = {
    "R2_ENDPOINT_URL": "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com",
    "R2_BUCKET": "phoenix-media",
    "PUBLIC_BASE_URL": "https://media.example.com",
    "FIREBASE_PROJECT_ID": "demo-project",
    "IMAGE_TAG": "0123456789ab",
}


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("# test deployment\n" + "".join(f"{k}={v}\n" for k, v in values.items()))


@dataclass
class Project:
    root: Path
    env: dict[str, str] = field(default_factory=lambda: dict(ENV))
    path_env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.root.parent / "gcloud-state"

    def run(self, *args: str, env_values: dict[str, str] | None = None, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        write_env(self.root / "deploy.env", self.env if env_values is None else env_values)
        result = subprocess.run(["bash", str(self.root / "deploy.sh"), "--project", PROJECT, "--region", REGION, *args],
                                cwd=self.root, capture_output=True, text=True, input=stdin,
                                env={**os.environ, **self.path_env}, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"deploy.sh {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def plan(self, *args: str) -> list[str]:
        return self.run("--dry-run", *args).stdout.splitlines()

    # --- the fake gcloud's state -------------------------------------------------------------
    def install_fake_gcloud(self, seed: dict) -> None:
        bin_dir = self.root.parent / "bin"
        bin_dir.mkdir()
        self.state_dir.mkdir()
        (self.state_dir / "state.json").write_text(json.dumps(seed))
        gcloud = bin_dir / "gcloud"
        gcloud.write_text(f"#!/bin/sh\nexec {sys.executable} -S {HERE / 'fake_gcloud.py'} \"$@\"\n")
        gcloud.chmod(0o755)
        self.path_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_GCLOUD_STATE": str(self.state_dir)}

    def state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def take_changes(self) -> list[dict]:
        """The changes made since the last call."""
        path = self.state_dir / "changes.jsonl"
        if not path.exists():
            return []
        changes = [json.loads(line) for line in path.read_text().splitlines()]
        path.unlink()
        return changes


def make_project(tmp_path: Path) -> Project:
    root = tmp_path / "repo"
    for name in SCRIPT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    return Project(root)
