"""The pipeline's Cloud Run Job entry points: `python -m steps.<name> --creation-id ID --attempt N`.

`run(step_name, creation_id, attempt, services) -> exit status` runs a step in-process.
"""
from steps.job import ExitCode, run

__all__ = ["ExitCode", "run"]
