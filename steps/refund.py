"""Cloud Run Job `refund`: give back a failed attempt's tokens, at most once, and mark the creation
failed.

    python -m steps.refund --creation-id ID --attempt N

Exit statuses and logs: see steps.job.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.job import main as run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("refund", argv)


if __name__ == "__main__":
    sys.exit(main())
