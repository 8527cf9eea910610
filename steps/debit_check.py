"""Cloud Run Job `debit_check`: make sure the current attempt is paid: the API paid attempt 1 with
the creation; a replay pays here, once.

    python -m steps.debit_check --creation-id ID --attempt N

Exit statuses and logs: see steps.job.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.job import main as run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("debit_check", argv)


if __name__ == "__main__":
    sys.exit(main())
