"""Start-up cost of the processes the pipeline starts most: `phoenix workflow run` of a one-step
workflow, and each step job (`python -m steps.<name>`).

    .venv/bin/python bench/starts_bench.py [--runs N]

For the CLI: the wall and CPU time of the whole command (median of N runs) and its imports. For a
step job: the imports it performs from the interpreter's start until it has loaded its creation
from the store (the job is run against an empty SQLite store, so it stops there with exit 2: the
part every run of that step pays before doing its work), read from `python -X importtime` as the
sum of the top-level imports' cumulative times, and the CPU time of that whole start. Bytecode
caches are on, as in a built image. Targets: the CLI under 0.15 s, a light step's imports under
80 ms. Wall and import times are wall-clock figures: on a loaded machine they grow with the load
average (printed first); CPU times much less.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("debit_check", "mark_processing", "generate", "thumbnail", "upload", "finalize", "refund")
LIGHT_STEPS = ("debit_check", "mark_processing", "finalize", "refund")
CLI_TARGET_S = 0.15
LIGHT_STEP_TARGET_MS = 80.0
ONE_STEP_WORKFLOW = "- answer:\n    return: 42\n"


def import_ms(stderr: str) -> float:
    """Total import time (ms) from `-X importtime` output: the top-level imports' cumulative sum."""
    total_us = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|", 2)
        if not name.startswith(" ") or name.startswith("  "):
            continue   # nested: already counted in its parent's cumulative time
        total_us += int(cumulative)
    return total_us / 1000.0


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a measured process: bytecode caching on (as in a deployed image, where
    the .pyc files are written at build time), so the figures are imports, not compiles."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


class Sample:
    """One run of a command: wall time, CPU time (user + system) and the process's output."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        self.done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
        self.wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_cli(runs: int, workdir: Path) -> dict[str, float]:
    flow = workdir / "one_step.yaml"
    flow.write_text(ONE_STEP_WORKFLOW)
    env = child_env()
    # `python -m phoenix.cli` is what the `phoenix` script runs; started this way from the checkout's
    # root, the figures are those of this checkout's code whatever the environment has installed.
    cmd = [sys.executable, "-m", "phoenix.cli", "workflow", "run", str(flow), "--quiet"]
    Sample(cmd, env, ROOT)   # warm-up: writes the bytecode caches
    samples = [Sample(cmd, env, ROOT) for _ in range(runs)]
    for sample in samples:
        if sample.done.returncode != 0 or sample.done.stdout.strip() != "42":
            raise SystemExit(f"phoenix workflow run failed: {sample.done.returncode} {sample.done.stderr}")
    timed = [Sample([sys.executable, "-X", "importtime", *cmd[1:]], env, ROOT) for _ in range(runs)]
    return {"wall_s": statistics.median(s.wall for s in samples),
            "cpu_s": statistics.median(s.cpu for s in samples),
            "imports_ms": statistics.median(import_ms(s.done.stderr) for s in timed)}


def bench_step(step: str, runs: int, workdir: Path) -> dict[str, float]:
    env = child_env(PHOENIX_STORE="sqlite", PHOENIX_SQLITE_PATH=str(workdir / "empty.sqlite3"))
    cmd = [sys.executable, "-X", "importtime", "-m", f"steps.{step}", "--creation-id", "no-such-creation",
           "--attempt", "1"]
    Sample(cmd, env, ROOT)   # warm-up: writes the bytecode caches
    samples = [Sample(cmd, env, ROOT) for _ in range(runs)]
    for sample in samples:
        if sample.done.returncode != 2:
            raise SystemExit(f"steps.{step} against an empty store: exit {sample.done.returncode}, expected 2\n"
                             f"{sample.done.stdout}\n{sample.done.stderr[-2000:]}")
    return {"imports_ms": statistics.median(import_ms(s.done.stderr) for s in samples),
            "cpu_s": statistics.median(s.cpu for s in samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (the median is printed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="phoenix-starts-") as tmp:
        workdir = Path(tmp)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall and import times grow with it; "
              f"CPU times much less)")
        cli = bench_cli(args.runs, workdir)
        verdict = "ok" if cli["wall_s"] < CLI_TARGET_S else "OVER TARGET"
        print(f"phoenix workflow run (one step): {cli['wall_s'] * 1000:7.1f} ms wall  "
              f"{cli['cpu_s'] * 1000:6.1f} ms CPU  {cli['imports_ms']:6.1f} ms imports   "
              f"target < {CLI_TARGET_S * 1000:.0f} ms wall: {verdict}")
        for step in STEPS:
            figures = bench_step(step, args.runs, workdir)
            ms = figures["imports_ms"]
            light = step in LIGHT_STEPS
            note = (f"target < {LIGHT_STEP_TARGET_MS:.0f} ms: "
                    f"{'ok' if ms < LIGHT_STEP_TARGET_MS else 'OVER TARGET'}") if light else ""
            print(f"step {step:<16} imports {ms:7.1f} ms  start {figures['cpu_s'] * 1000:6.1f} ms CPU  "
                  f"{'light' if light else 'heavy'}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
