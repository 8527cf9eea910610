"""The console's pure parts: the timeline from step entries, job log lines, filters, identity."""
from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from phoenix.console import timeline as tl
from phoenix.console.identity import operator_name, os_user
from phoenix.console.joblogs import LocalJobLogs, cloud_logging_url
from phoenix.console.reader import parse_filter


def entry(eid: int, step: str, type_: str, start: str, end: str, *, routine: str = "main", state="STATE_SUCCEEDED",
          parent: int | None = None, **extra) -> dict:
    e = {"entryId": str(eid), "routine": routine, "step": step, "stepType": type_, "state": state,
         "createTime": f"2026-01-01T00:{start}Z", "updateTime": f"2026-01-01T00:{end}Z", **extra}
    if parent is not None:
        e["navigationInfo"] = {"parent": str(parent)}
    return e


FAILED_JOB = json.dumps({"tags": ["StepFailed"], "cause": {"operation": {
    "name": "projects/p/locations/l/jobs/creation-upload/executions/creation-upload-abc12"}}})

ENTRIES = [
    entry(1, "init", "STEP_ASSIGN", "00:00", "00:00"),
    entry(2, "upload_media", "STEP_SUBWORKFLOW_CALL", "00:00", "00:10", state="STATE_FAILED",
          exception={"payload": FAILED_JOB}),
    entry(3, "run_job", "STEP_CONNECTOR_CALL", "00:00", "00:10", routine="run_step", parent=2, connectorPolls=4,
          state="STATE_FAILED", exception={"payload": FAILED_JOB}),
    entry(4, "upload_media", "STEP_RETRY", "00:10", "00:15", stepEntryMetadata={"progressNumber": "1"},
          details={"delaySeconds": 5.0}),
    entry(5, "upload_media", "STEP_SUBWORKFLOW_CALL", "00:15", "00:20"),
    entry(6, "run_job", "STEP_CONNECTOR_CALL", "00:15", "00:20", routine="run_step", parent=5, connectorPolls=3),
]


def test_the_timeline_has_a_row_per_run_and_per_retry_wait_with_polls_and_the_failed_job():
    t = tl.build(ENTRIES, {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:00:20Z"})
    assert [(r.step, r.kind, r.number, r.state) for r in t.rows] == [
        ("upload_media", "run", 1, "FAILED"), ("upload_media", "retry", 1, "SUCCEEDED"),
        ("upload_media", "run", 2, "SUCCEEDED")]
    first, wait, second = t.rows
    assert (first.start, first.duration, first.polls) == (0.0, 10.0, 4)
    assert first.job_execution.endswith("/executions/creation-upload-abc12")
    assert (wait.delay, wait.start, wait.duration) == (5.0, 10.0, 5.0)
    assert (second.left, second.width, second.polls) == (75.0, 25.0, 3)
    assert (t.span, t.polls, t.retries) == (20.0, 7, 1)
    assert t.step_durations() == {"upload_media": [10.0, 5.0]}


def test_an_execution_with_no_entries_has_an_empty_timeline():
    t = tl.build([], None)
    assert (t.rows, t.span, t.polls) == ([], 0.0, 0)


def test_percentiles_by_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (tl.percentile(values, 50), tl.percentile(values, 95), tl.percentile([], 50)) == (50.0, 95.0, None)
    assert tl.percentile([3.0], 95) == 3.0


def test_job_log_lines_of_one_creation_from_every_log_file(tmp_path):
    (tmp_path / "jobs").mkdir()

    def line(cid, msg, t):
        return json.dumps({"creationId": cid, "message": msg, "time": t, "severity": "INFO",
                           "step": "upload", "attempt": 1})

    (tmp_path / "jobs" / "creation-upload-00001.log").write_text(
        line("c1", "second", "2026-01-01T00:00:02") + "\nnot json c1\n" + line("c2", "other", "2026-01-01T00:00:01"))
    (tmp_path / "jobs.log").write_text(line("c1", "first", "2026-01-01T00:00:01") + "\n")
    lines = LocalJobLogs(tmp_path).lines("c1")
    assert [(entry.message, entry.source) for entry in lines] == [
        ("first", "jobs.log"),
        ("second", "creation-upload-00001.log"),
    ]
    assert LocalJobLogs(tmp_path / "missing").lines("c1") == []


def test_the_cloud_logging_link_filters_on_the_creation_or_the_job_execution():
    by_creation = unquote(cloud_logging_url("proj", "c1"))
    assert 'resource.type="cloud_run_job"' in by_creation and 'jsonPayload.creationId="c1"' in by_creation
    assert by_creation.endswith("?project=proj")
    by_job = unquote(cloud_logging_url("proj", "c1", "projects/p/locations/l/jobs/j/executions/j-abc"))
    assert 'labels."run.googleapis.com/execution_name"="j-abc"' in by_job


def test_filters_are_read_from_the_query_string():
    f = parse_filter({"status": "failed", "code": "storage_error", "since": "2026-01-01T10:00", "uid": " u1 "})
    assert (f.status, f.code, f.uid, f.since.isoformat()) == (
        "failed",
        "STORAGE_ERROR",
        "u1",
        "2026-01-01T10:00:00+00:00",
    )
    assert f.query(page="t") == {"status": "failed", "uid": "u1", "code": "STORAGE_ERROR",
                                 "since": "2026-01-01T10:00", "page": "t"}
    with pytest.raises(ValueError, match="until must be a date and time"):
        parse_filter({"until": "soon"})


def test_the_operator_is_the_os_user_locally_and_the_adc_account_against_a_project(tmp_path, monkeypatch):
    from creations.settings import Settings

    assert operator_name(Settings(store="sqlite", trigger="local")) == os_user()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    path = tmp_path / "adc.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "1",
                                "private_key": key, "client_email": "operator@p.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    assert operator_name(Settings(store="firestore", trigger="executions")) == "operator@p.iam.gserviceaccount.com"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert operator_name(Settings(store="firestore", trigger="executions")) == os_user()
