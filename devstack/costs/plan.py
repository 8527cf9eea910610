"""The job sizes deploy.sh deploys, read from its own dry run (so the model and the deployment
cannot disagree): every `gcloud run jobs deploy NAME ... --cpu C --memory M --task-timeout T
[--set-secrets ENV=SECRET:VERSION,...]` line it prints."""
from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from pathlib import Path

from devstack.costs.model import JobSize
from devstack.stack import ROOT

DEPLOY = ROOT / "deploy.sh"
ENV_EXAMPLE = ROOT / "deploy.env.example"


class PlanError(RuntimeError):
    """deploy.sh could not be read for the job sizes."""


def dry_run(project: str = "cost-model", region: str = "us-central1") -> str:
    if not DEPLOY.is_file():
        raise PlanError(f"{DEPLOY.name} is missing: the job sizes come from its dry run")
    # The example env file, with a fixed image tag: the sizes do not depend on the commit, and a
    # working tree with changes (which deploy.sh refuses to tag) still has a plan.
    with tempfile.NamedTemporaryFile("w", suffix=".env", prefix="phoenix-cost-") as env:
        env.write(ENV_EXAMPLE.read_text() + "\nIMAGE_TAG=cost-model\n")
        env.flush()
        proc = subprocess.run(["bash", str(DEPLOY), "--dry-run", "--project", project, "--region", region,
                               "--env-file", env.name], capture_output=True, text=True, cwd=ROOT, timeout=120)
    if proc.returncode != 0:
        raise PlanError(f"{DEPLOY.name} --dry-run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def job_sizes(plan: str) -> dict[str, JobSize]:
    """Job name -> size, from the `gcloud run jobs deploy` lines of a plan."""
    sizes = {}
    for line in plan.splitlines():
        words = _words(line)
        if words[:4] != ["gcloud", "run", "jobs", "deploy"] or len(words) < 5:
            continue
        flags = _flags(words[5:])
        name = words[4]
        try:
            sizes[name] = JobSize(cpu=float(flags["--cpu"]), memory_gib=memory_gib(flags["--memory"]),
                                  task_timeout_seconds=duration_seconds(flags.get("--task-timeout", "600s")),
                                  secrets=_secret_count(flags.get("--set-secrets", "")))
        except KeyError as exc:
            raise PlanError(f"the deploy of job {name} sets no {exc.args[0]}: {line.strip()}") from None
    if not sizes:
        raise PlanError("the deploy plan deploys no Cloud Run job (no `gcloud run jobs deploy` line)")
    return sizes


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line.strip())
    except ValueError:
        return []


def _flags(words: list[str]) -> dict[str, str]:
    flags, i = {}, 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            if "=" in word:
                key, value = word.split("=", 1)
            elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                key, value = word, words[i + 1]
                i += 1
            else:
                key, value = word, ""
            flags[key] = value
        i += 1
    return flags


def memory_gib(text: str) -> float:
    """`512Mi`, `1Gi`, `4G` -> GiB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|K|M|G)?", text.strip())
    if not m:
        raise PlanError(f"cannot read the memory size {text!r}")
    value, unit = float(m.group(1)), m.group(2) or ""
    factor = {
        "Ki": 2**-20,
        "Mi": 2**-10,
        "Gi": 1.0,
        "K": 1e3 / 2**30,
        "M": 1e6 / 2**30,
        "G": 1e9 / 2**30,
        "": 1 / 2**30,
    }
    return value * factor[unit]


def duration_seconds(text: str) -> float:
    """`600`, `600s`, `10m`, `1h` -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not m:
        raise PlanError(f"cannot read the duration {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _secret_count(text: str) -> int:
    return len([part for part in text.split(",") if "=" in part])


def read(path: Path | None = None) -> dict[str, JobSize]:
    """The job sizes: from a saved plan file, or from running deploy.sh's dry run."""
    return job_sizes(path.read_text() if path else dry_run())
