"""Runs every benchmark in bench/, one after another, each in its own process; prints their figures.

The soak runs 120 s here; its full 10 minutes is `bench/soak_bench.py` on its own."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["expressions_bench.py", "workflows_bench.py", "store_bench.py", "media_bench.py",
         "steps_bench.py", "starts_bench.py", "api_bench.py", "events_bench.py", "pipeline_bench.py",
         "chaos_bench.py", "soak_bench.py", "parity_bench.py", "operator_bench.py", "console_bench.py",
         "cost_levers.py"]
ARGS = {"soak_bench.py": ["--seconds", "120"]}


def main() -> int:
    failed = []
    for name in ORDER:
        path = HERE / name
        if not path.exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(path), *ARGS.get(name, [])], cwd=HERE.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
