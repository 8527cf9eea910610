"""Cloud Run Job `finalize`: move the creation from processing to draft with its published media.

    python -m steps.finalize --creation-id ID --attempt N

Exit statuses and logs: see steps.job.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.job import main as run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("finalize", argv)


if __name__ == "__main__":
    sys.exit(main())
