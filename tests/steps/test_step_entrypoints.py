"""The container entry points, `python -m steps.<name>`, as the Cloud Run jobs run them."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

from creations.model import Status
from creations.pipeline import StepServices
from creations.settings import Settings
from steps.job import EXIT_CODES, ExitCode, main

REQUIRED_LOG_FIELDS = {"severity", "message", "creationId", "step", "attempt", "time"}


def test_image_runs_through_every_step_as_subprocesses(stack):
    creation = stack.create("a lighthouse at dusk")
    for step in stack.PIPELINE:
        result = stack.cli_run(step, creation.id)
        assert result.code == 0, (step, result.logs)
        for line in result.logs:
            assert REQUIRED_LOG_FIELDS <= line.keys(), line
            assert (line["creationId"], line["step"], line["attempt"]) == (creation.id, step, 1)
            assert line["logging.googleapis.com/labels"] == {
                "creationId": creation.id, "step": step, "attempt": "1"}
        assert result.final["exitCode"] == 0
        assert isinstance(result.final["durationMs"], int)

    done = stack.get(creation.id)
    assert done.status is Status.DRAFT and done.error is None
    media = done.media
    assert media["contentType"] == "image/png"
    assert media["key"] == f"media/{stack.uid}/{creation.id}/original.png"
    assert media["thumbnailKey"] == f"media/{stack.uid}/{creation.id}/thumb.jpg"
    assert stack.storage.head(media["key"]).sha256 == media["sha256"]
    assert stack.storage.head(media["thumbnailKey"]).content_type == "image/jpeg"
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost


def test_arguments_may_come_from_the_environment(stack):
    creation = stack.create("a teapot")
    env = {**stack.env, "CREATION_ID": creation.id, "ATTEMPT": "1",
           "CLOUD_RUN_EXECUTION": "debit-check-abc12", "CLOUD_RUN_TASK_ATTEMPT": "0"}
    result = stack.cli("debit_check", env=env)
    assert result.code == 0, result.logs
    assert result.final["execution"] == "debit-check-abc12"
    assert result.final["taskAttempt"] == "0"


def test_bad_arguments_exit_2_with_a_message_naming_the_problem(stack):
    cases = [
        ((), "missing --creation-id"),
        (("--creation-id", "abc", "--attempt", "first"), "--attempt must be a whole number"),
        (("--creation-id", "abc", "--attempt", "0"), "attempt 0 is not valid"),
        (("--creation-id", "a/b", "--attempt", "1"), "creation id 'a/b' is not valid"),
        (("--creation-id", "nosuchcreation", "--attempt", "1"), "does not exist"),
        (("--creation-id", "abc", "--attempt", "1", "--extra"), "unrecognized arguments: --extra"),
    ]
    for args, expected in cases:
        result = stack.cli("mark_processing", *args)
        assert result.code == ExitCode.USAGE, (args, result.logs)
        assert result.final["severity"] == "ERROR"
        assert expected in result.final["message"], (args, result.final["message"])


def test_arguments_and_environment_must_agree(stack):
    creation = stack.create("a kite")
    env = {**stack.env, "CREATION_ID": "someothercreation"}
    result = stack.cli_run("debit_check", creation.id, env=env)
    assert result.code == ExitCode.USAGE
    assert "disagree" in result.final["message"]


def test_invalid_settings_exit_2_naming_the_variable(stack):
    creation = stack.create("a kite")
    result = stack.cli_run("debit_check", creation.id, env={**stack.env, "PHOENIX_STORE": "postgres"})
    assert result.code == ExitCode.USAGE
    assert "PHOENIX_STORE" in result.final["message"]


def test_provider_outage_is_recorded_retryable_and_exits_1(stack):
    creation = stack.create("a bridge #down")
    stack.through(creation.id, "mark_processing")
    result = stack.cli_run("generate", creation.id)
    assert result.code == ExitCode.FAILED
    assert result.final["severity"] == "ERROR"
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("PROVIDER_UNAVAILABLE", "generate", True)
    assert stack.get(creation.id).status is Status.PROCESSING  # the workflow decides what next


def test_storage_outage_during_upload_is_recorded_retryable(stack, stopped_s3):
    creation = stack.create("a harbour")
    stack.through(creation.id, "thumbnail")
    dead = Settings(**{**stack.settings.model_dump(), "s3_endpoint_url": stopped_s3.endpoint_url})
    result = stack.cli_run("upload", creation.id, env=stack.env_for(dead))
    assert result.code == ExitCode.FAILED, result.logs
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("STORAGE_ERROR", "upload", True)
    assert stack.get(creation.id).checkpoint("upload") is None

    # The storage is back: the retried job publishes the media.
    assert stack.cli_run("upload", creation.id).code == 0
    assert stack.cli_run("finalize", creation.id).code == 0
    assert stack.get(creation.id).status is Status.DRAFT


def test_stale_attempt_exits_3_and_changes_nothing(stack):
    creation = stack.create("a storm #blocked")
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    assert stack.run("refund", creation.id).code == 0
    stack.replay(creation.id)
    before = stack.get(creation.id).to_dict()

    result = stack.cli_run("mark_processing", creation.id, 1)
    assert result.code == ExitCode.STALE
    assert result.final["severity"] == "WARNING"
    assert "attempt 1 is not current" in result.final["message"]
    assert stack.get(creation.id).to_dict() == before


def test_store_unreachable_exits_4(stack, tmp_path):
    # A directory where the SQLite file should be: the store cannot be opened, so no step can
    # record anything, and each says so with exit 4 (the workflow retries the step, then refunds).
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()
    creation = stack.create("a locked door")
    result = stack.cli_run("finalize", creation.id, env={**stack.env, "PHOENIX_SQLITE_PATH": str(blocked)})
    assert result.code == ExitCode.UNRECORDED
    assert result.final["severity"] == "CRITICAL"
    assert result.final["error"]["code"] == "STORE_UNAVAILABLE"

    unreachable = StepServices(stack.settings.model_copy(update={"sqlite_path": blocked}))
    for step in (*stack.PIPELINE, "refund"):
        assert stack.run(step, creation.id, services=unreachable).code == ExitCode.UNRECORDED, step
    assert stack.get(creation.id).status is Status.PENDING  # untouched, nothing half-done


def test_main_returns_the_exit_status_without_exiting(stack, monkeypatch, capsys):
    # main() is the function behind every `python -m steps.<name>`; it returns, never exits.
    for name, value in stack.env.items():
        if name.startswith("PHOENIX_"):
            monkeypatch.setenv(name, value)
    creation = stack.create("a windmill")
    assert main("debit_check", ["--creation-id", creation.id, "--attempt", "1"], environ={}) == 0
    assert main("debit_check", ["--creation-id", creation.id, "--attempt", "2"], environ={}) == 3
    assert '"exitCode":3' in capsys.readouterr().out


def test_every_verdict_has_a_documented_exit_status():
    assert set(EXIT_CODES.values()) == set(ExitCode)
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4]


def test_a_job_stopped_by_sigterm_records_a_retryable_error(stack):
    # Cloud Run sends SIGTERM when a task hits its timeout or its execution is cancelled.
    creation = stack.create("a glacier #slow")
    stack.through(creation.id, "mark_processing")
    proc = subprocess.Popen([sys.executable, "-m", "steps.generate", "--creation-id", creation.id,
                             "--attempt", "1"], cwd=stack.REPO, env=stack.env,
                            stdout=subprocess.PIPE, text=True)
    lines = []
    for raw in proc.stdout:  # wait until the provider call is under way
        lines.append(json.loads(raw))
        if lines[-1]["message"] == "calling the generator":
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    lines += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == ExitCode.FAILED, lines
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("TERMINATED", "generate", True)
    assert lines[-1]["outcome"] == "failed"
