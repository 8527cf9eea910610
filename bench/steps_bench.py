"""How long each step job takes locally: `python -m steps.<name>` as a subprocess (process start,
imports, client setup and the work) against the local servers, next to the same step run
in-process.

    .venv/bin/python bench/steps_bench.py [--runs 5] [--video-runs 2] [--instant]

Prints the median and the maximum wall time in ms per step, for images and for 4 s videos.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from creations.joblog import JobLog  # noqa: E402
from creations.model import Creation, CreationType  # noqa: E402
from creations.pipeline import StepServices  # noqa: E402
from creations.settings import Settings  # noqa: E402
from localcloud.genserver import GenServer  # noqa: E402
from localcloud.s3server import S3Server  # noqa: E402
from steps import run  # noqa: E402

# refund last, on the finished draft: its no-op path (what a late duplicate costs).
PIPELINE = ("debit_check", "mark_processing", "generate", "thumbnail", "upload", "finalize", "refund")


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    env.update({f"PHOENIX_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None})
    env["PYTHONPATH"] = str(REPO)
    return env


def time_subprocess(step: str, creation_id: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"steps.{step}", "--creation-id", creation_id,
                           "--attempt", "1"], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{step} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def time_in_process(step: str, creation_id: str, services: StepServices) -> float:
    started = time.perf_counter()
    code = run(step, creation_id, 1, services)
    elapsed = (time.perf_counter() - started) * 1000
    if code != 0:
        raise SystemExit(f"{step} (in-process) exited {code}; see the log lines above")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="image creations per mode (default 5)")
    parser.add_argument("--video-runs", type=int, default=2, help="video creations per mode (default 2)")
    parser.add_argument("--instant", action="store_true",
                        help="generation server answers with tiny pre-rendered media")
    args = parser.parse_args()

    s3, gen = S3Server().start(), GenServer(instant=args.instant).start()
    with tempfile.TemporaryDirectory(prefix="steps-bench-") as tmp:
        settings = Settings(
            store="sqlite", sqlite_path=Path(tmp) / "store.sqlite3",
            s3_endpoint_url=s3.endpoint_url, s3_region="us-east-1", s3_bucket="bench-media",
            s3_access_key_id="local", s3_secret_access_key="local-secret",
            genai_base_url=gen.url, genai_static_token="local-token", video_poll_seconds=0.1)
        services = StepServices(settings, log=JobLog(io.StringIO()))
        services.storage.ensure_bucket()
        services.store.grant("bench", 10_000, "bench-grant")
        env = environment(settings)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare = (time.perf_counter() - started) * 1000

        print(f"bare `python -c pass`: {bare:.0f} ms; generation server "
              f"{'instant' if args.instant else 'rendering'}")
        for kind, runs, options in (("image", args.runs, {}),
                                    ("video", args.video_runs, {"durationSeconds": 4})):
            if runs < 1:
                continue
            timings: dict[tuple[str, str], list[float]] = {}
            for mode in ("subprocess", "in-process"):
                for i in range(runs):
                    creation = Creation(id=Creation.new_id(), uid="bench", type=CreationType(kind),
                                        prompt=f"a benchmark {kind} {mode} {i}", options=options,
                                        cost=settings.cost_of(kind))
                    services.store.create_with_debit(creation)
                    for step in PIPELINE:
                        ms = (time_subprocess(step, creation.id, env) if mode == "subprocess"
                              else time_in_process(step, creation.id, services))
                        timings.setdefault((step, mode), []).append(ms)
            print(f"\n{kind} ({runs} runs; ms: median / max)")
            print(f"  {'step':<16}{'subprocess':>18}{'in-process':>18}")
            for step in PIPELINE:
                cells = []
                for mode in ("subprocess", "in-process"):
                    values = timings[(step, mode)]
                    cells.append(f"{statistics.median(values):8.0f} / {max(values):6.0f}")
                print(f"  {step:<16}{cells[0]:>18}{cells[1]:>18}")
            totals = [sum(statistics.median(timings[(s, m)]) for s in PIPELINE[:-1])
                      for m in ("subprocess", "in-process")]
            print(f"  {'pipeline':<16}{totals[0]:>18.0f}{totals[1]:>18.0f}   (without refund)")
        services.close()
    gen.stop()
    s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
