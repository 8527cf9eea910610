"""Cloud Run Job `generate`: generate the image or video into staging, unless a valid original
exists from any attempt.

    python -m steps.generate --creation-id ID --attempt N

Exit statuses and logs: see steps.job.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.job import main as run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("generate", argv)


if __name__ == "__main__":
    sys.exit(main())
