"""The chaos run's figures: creations, faults and kills injected, violations (must be 0).

    .venv/bin/python bench/chaos_bench.py [--creations 300] [--kills 3] [--seed N]

Runs tests.support.chaos (the same run as tests/chaos, larger by default): `phoenix dev` with
in-process jobs, instant generation, a virtual clock and the fault switches; random faults per
creation, duplicate POSTs, the whole stack killed (SIGKILL) or stopped (Ctrl-C) and restarted
mid-load; then the invariants. Prints the figures and every violation; exits 1 if there is one.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.chaos import run_chaos  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--creations", type=int, default=300)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--seed", type=int, default=None, help="default: a random seed, printed")
    args = p.parse_args()
    if not 1 <= args.creations <= 5000 or not 0 <= args.kills <= 50:
        p.error("--creations 1..5000, --kills 0..50")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"chaos: {args.creations} creations, {args.kills} kills, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="phoenix-chaos-") as tmp:
        report = run_chaos(Path(tmp), seed=seed, creations=args.creations, kills=args.kills)
    for line in report.lines():
        print(line)
    for violation in report.violations:
        print(f"  VIOLATION {violation}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
