"""What every step job shares: arguments, settings, logging, and the exit status it ends with.

A job is started as `python -m steps.<name> --creation-id ID --attempt N` (the workflow passes
these as container-override args), or with the environment variables CREATION_ID and ATTEMPT.
It logs one JSON object per line to stdout and ends with one of these exit statuses, the only
thing the workflow learns from it:

    0  done, or skipped because the work was already done (a duplicate run)
    1  failed; the error {code, message, step, retryable} is recorded on the creation
    2  bad arguments or configuration (no such creation, invalid settings); nothing changed
       except, when the store was reachable, the error recorded on the creation
    3  stale: the attempt was superseded by a replay or already ended; nothing changed
    4  failed, and the error could not be recorded (the store was unreachable); for refund:
       the refund did not complete; run it again

`run(step_name, creation_id, attempt, services)` is the same thing without a process: it returns
the exit status, so the local engine can run steps in threads that share one StepServices.
"""
from __future__ import annotations

import argparse
import enum
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType

from creations.errors import CreationsError
from creations.joblog import JobLog
from creations.pipeline import (
    STEP_FUNCTIONS,
    InvalidStepInput,
    StepInput,
    StepServices,
    Verdict,
    execute_step,
)


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    STALE = 3
    UNRECORDED = 4


EXIT_CODES: dict[Verdict, ExitCode] = {
    Verdict.DONE: ExitCode.OK,
    Verdict.SKIPPED: ExitCode.OK,
    Verdict.FAILED: ExitCode.FAILED,
    Verdict.INVALID: ExitCode.USAGE,
    Verdict.STALE: ExitCode.STALE,
    Verdict.UNRECORDED: ExitCode.UNRECORDED,
}

_SEVERITY: dict[Verdict, str] = {
    Verdict.DONE: "INFO",
    Verdict.SKIPPED: "INFO",
    Verdict.FAILED: "ERROR",
    Verdict.INVALID: "ERROR",
    Verdict.STALE: "WARNING",
    Verdict.UNRECORDED: "CRITICAL",
}

# Variables Cloud Run sets in a job's container; logged so a line leads back to its execution.
CLOUD_RUN_VARIABLES = {
    "CLOUD_RUN_JOB": "job",
    "CLOUD_RUN_EXECUTION": "execution",
    "CLOUD_RUN_TASK_INDEX": "taskIndex",
    "CLOUD_RUN_TASK_ATTEMPT": "taskAttempt",
    "CLOUD_RUN_TASK_COUNT": "taskCount",
}


class UsageError(Exception):
    """The job was started with arguments it cannot act on."""


class Terminated(CreationsError):
    """The container was asked to stop (SIGTERM: task timeout or cancellation) mid-step."""

    code = "TERMINATED"
    retryable = True


def run(step_name: str, creation_id: str, attempt: int, services: StepServices) -> int:
    """Run one step in this process and return its exit status; never calls sys.exit."""
    log = services.log.bind(step=step_name, creationId=creation_id, attempt=attempt)
    if step_name not in STEP_FUNCTIONS:
        log.error(f"unknown step {step_name!r}; the steps are {', '.join(STEP_FUNCTIONS)}")
        return ExitCode.USAGE
    try:
        inp = StepInput(creation_id=creation_id, attempt=attempt)
    except InvalidStepInput as exc:
        log.error(exc.message)
        return ExitCode.USAGE
    log.info(f"{step_name} started")
    report = execute_step(step_name, inp, services, log)
    code = EXIT_CODES[report.verdict]
    fields = {"outcome": report.verdict.value, "exitCode": int(code), "durationMs": report.duration_ms}
    if report.error is not None:
        fields["error"] = report.error.to_dict()
    if report.output:
        fields["output"] = report.output
    log.emit(_SEVERITY[report.verdict], f"{step_name} {report.verdict.value}: {report.message}", **fields)
    return code


def main(step_name: str, argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    """The container entry point of `step_name`: parse, build services, run, return the status."""
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else list(argv)
    root = JobLog(sys.stdout).bind(
        **{field: environ[var] for var, field in CLOUD_RUN_VARIABLES.items() if environ.get(var)})
    try:
        creation_id, attempt = parse_arguments(step_name, argv, environ)
    except UsageError as exc:
        root.error(str(exc), step=step_name, exitCode=int(ExitCode.USAGE))
        return ExitCode.USAGE

    from pydantic import ValidationError

    from creations.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PHOENIX_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        root.error(f"invalid settings: {problems}", step=step_name, creationId=creation_id,
                   attempt=attempt, exitCode=int(ExitCode.USAGE))
        return ExitCode.USAGE
    refusal = settings.refusal("job")
    if refusal:
        root.error(f"refusing to run: {refusal}", step=step_name, creationId=creation_id,
                   attempt=attempt, exitCode=int(ExitCode.USAGE))
        return ExitCode.USAGE

    services = StepServices(settings, log=root)
    restore_logging = _forward_library_logs(root.bind(step=step_name, creationId=creation_id,
                                                      attempt=attempt))
    previous = _raise_on_sigterm()
    try:
        return run(step_name, creation_id, attempt, services)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        restore_logging()
        services.close()


def parse_arguments(step_name: str, argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, int]:
    """(creation id, attempt) from `--creation-id/--attempt`, else CREATION_ID/ATTEMPT."""
    parser = _Parser(
        prog=f"python -m steps.{step_name}",
        description=f"Run the {step_name} step of the creation pipeline for one creation attempt.",
    )
    parser.add_argument("--creation-id", help="the creation's id (default: $CREATION_ID)")
    parser.add_argument("--attempt", help="the attempt this run acts for, >= 1 (default: $ATTEMPT)")
    args = parser.parse_args(list(argv))

    creation_id = _pick("--creation-id", args.creation_id, "CREATION_ID", environ)
    raw_attempt = _pick("--attempt", args.attempt, "ATTEMPT", environ)
    if not raw_attempt.strip().isdigit():
        raise UsageError(f"--attempt must be a whole number >= 1, got {raw_attempt!r}")
    return creation_id, int(raw_attempt)


def _pick(flag: str, value: str | None, variable: str, environ: Mapping[str, str]) -> str:
    from_env = environ.get(variable)
    if value is not None and from_env and from_env != value:
        raise UsageError(f"{flag} {value!r} and ${variable} {from_env!r} disagree; pass one of them")
    chosen = value if value is not None else from_env
    if not chosen:
        raise UsageError(f"missing {flag}: pass {flag} or set ${variable}")
    return chosen


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        raise UsageError(f"{message} (usage: {usage})")


def _raise_on_sigterm():
    """Turn SIGTERM into Terminated, so a step stopped by its timeout records a retryable error."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated("the job was stopped (SIGTERM) before the step finished: it timed out or "
                         "was cancelled")

    return signal.signal(signal.SIGTERM, handler)


class _JobLogHandler(logging.Handler):
    """Sends library warnings (boto, google-genai, our own modules) through the job log."""

    _LEVELS = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
               logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL"}

    def __init__(self, log: JobLog):
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            severity = self._LEVELS.get(record.levelno, "WARNING")
            self._log.emit(severity, record.getMessage(), logger=record.name)
        except Exception:  # noqa: BLE001 - logging must never fail the step
            self.handleError(record)


def _forward_library_logs(log: JobLog) -> Callable[[], None]:
    """Route the logging module through `log`; returns a function that undoes it."""
    root, ours = logging.getLogger(), logging.getLogger("creations")
    saved = (list(root.handlers), root.level, ours.level)
    root.handlers[:] = [_JobLogHandler(log)]
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python warnings too, instead of plain text on stderr

    def restore() -> None:
        logging.captureWarnings(False)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])

    return restore
