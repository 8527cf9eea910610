"""Cloud Run Job `thumbnail`: make the JPEG thumbnail of the generated original, into staging.

    python -m steps.thumbnail --creation-id ID --attempt N

Exit statuses and logs: see steps.job.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.job import main as run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("thumbnail", argv)


if __name__ == "__main__":
    sys.exit(main())
