"""Every gcloud command deploy.sh's dry run prints goes through the real `gcloud` CLI, with an empty
configuration and no credentials: gcloud parses and validates all flags before it needs an account,
so each command must fail only for the missing account, never for an unknown flag, a bad choice or
a malformed argument.

gcloud takes over a second of CPU to start, so commands that differ only in resource names (the
positional name, members, roles, images, env values) are run once; every flag shape and every value
that gcloud validates (sizes, timeouts, choices, rates) is still run as printed.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from deploy_project import make_project

pytestmark = pytest.mark.slow

NO_ACCOUNT = "You do not currently have an active account selected"
BOOLEAN_FLAGS = {"--quiet", "--async", "--enabled", "--allow-unauthenticated", "--disable-indexes"}
# Flags whose values name things (checked by the service, not by the parser).
NAME_FLAGS = {"--member", "--role", "--display-name", "--description", "--labels", "--image", "--service-account",
              "--set-env-vars", "--set-secrets", "--command", "--args", "--uri", "--oauth-service-account-email",
              "--collection-group", "--substitutions"}


def _surface() -> Path:
    gcloud = Path(shutil.which("gcloud") or "").resolve()
    return gcloud.parent.parent / "lib" / "surface"


def command_path_length(tokens: list[str], surface: Path) -> int:
    """How many tokens after `gcloud` name groups and the command (per gcloud's own command tree)."""
    here, n = surface, 0
    for token in tokens:
        name = token.replace("-", "_")
        if (here / name).is_dir():
            here, n = here / name, n + 1
        elif (here / f"{name}.py").exists() or (here / f"{name}.yaml").exists():
            return n + 1
        else:
            break
    return n


def shape(line: str, surface: Path) -> tuple[str, ...]:
    tokens = shlex.split(line)[1:]
    n = command_path_length(tokens, surface)
    out = list(tokens[:n])
    i, expect_value_of = n, None
    for token in tokens[n:]:
        if expect_value_of:
            out.append("<name>" if expect_value_of in NAME_FLAGS else token)
            expect_value_of = None
        elif token.startswith("--"):
            flag, eq, _ = token.partition("=")
            out.append(f"{flag}=<name>" if eq and flag in NAME_FLAGS else token)
            if not eq and flag not in BOOLEAN_FLAGS:
                expect_value_of = flag
        else:
            out.append("<name>")
        i += 1
    return tuple(out)


def dry_run_commands(tmp_path: Path) -> list[str]:
    project = make_project(tmp_path)
    lines = project.plan() + project.plan("--destroy", "--delete-data")
    (project.root / "firestore.rules").write_text("rules_version = '2';\n")
    lines += project.plan("--only", "apis", "firestore")
    return [line for line in lines if line.startswith("gcloud ")]


def test_every_gcloud_command_of_the_dry_run_parses_with_the_real_cli(tmp_path):
    assert shutil.which("gcloud"), "the Google Cloud CLI (gcloud) must be installed for this test"
    surface = _surface()
    assert surface.is_dir(), f"gcloud's command tree not found at {surface}"
    commands = dry_run_commands(tmp_path)
    representatives: dict[tuple[str, ...], str] = {}
    for line in commands:
        representatives.setdefault(shape(line, surface), line)
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env = {**os.environ, "CLOUDSDK_CONFIG": str(config), "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
           "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true", "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", "CLOUDSDK_CORE_ACCOUNT",
                 "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"):
        env.pop(name, None)
    root = tmp_path / "repo"  # relative paths in the plan (--source, --config) resolve here

    def run(line: str) -> tuple[str, int, str]:
        result = subprocess.run(shlex.split(line), cwd=root, env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=240)
        return line, result.returncode, result.stderr

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, representatives.values()))
    elapsed = time.monotonic() - started
    failures = [f"{line}\n  exit {code}: {err.strip()[:400]}" for line, code, err in results
                if not (code == 0 or (code == 1 and NO_ACCOUNT in err))]
    assert not failures, ("gcloud refused these commands for a reason other than the missing account:\n"
                          + "\n".join(failures))
    # The read-only `auth list` succeeds without an account; everything else must have asked for one.
    assert sum(NO_ACCOUNT in err for _, _, err in results) >= len(results) - 1
    print(f"\n{len(commands)} gcloud commands, {len(representatives)} distinct shapes "
          f"run through gcloud in {elapsed:.1f} s")


def test_an_unknown_flag_or_a_bad_choice_would_be_caught(tmp_path):
    """The check above can fail: the same harness rejects what gcloud's parser rejects."""
    assert shutil.which("gcloud")
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env = {**os.environ, "CLOUDSDK_CONFIG": str(config), "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false"}
    bad = ["gcloud workflows deploy creation --location=us-central1 --call-log-level=everything --project=demo-project",
           "gcloud run jobs deploy j --image=i --region us-central1 --max-retry 0 --project=demo-project"]

    def run(line: str):
        return subprocess.run(
            shlex.split(line), env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=240
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        for result in pool.map(run, bad):
            assert result.returncode == 2 and NO_ACCOUNT not in result.stderr, result.stderr
