"""Cloud Run Job `mark_processing`: move the creation from pending to processing once its attempt
is paid.

    python -m steps.mark_processing --creation-id ID --attempt N

Exit statuses and logs: see steps.job.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.job import main as run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("mark_processing", argv)


if __name__ == "__main__":
    sys.exit(main())
