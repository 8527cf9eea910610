"""`python -m steps <name> --creation-id ID --attempt N`: any step from one command line."""
from __future__ import annotations

import sys

from creations.pipeline import STEP_FUNCTIONS
from steps.job import ExitCode
from steps.job import main as run_job


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STEP_FUNCTIONS:
        print(f"usage: python -m steps <{'|'.join(STEP_FUNCTIONS)}> --creation-id ID --attempt N",
              file=sys.stderr)
        return ExitCode.USAGE
    return run_job(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
