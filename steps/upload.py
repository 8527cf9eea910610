"""Cloud Run Job `upload`: publish the original and its thumbnail from staging to their final keys.

    python -m steps.upload --creation-id ID --attempt N

Exit statuses and logs: see steps.job.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.job import main as run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("upload", argv)


if __name__ == "__main__":
    sys.exit(main())
