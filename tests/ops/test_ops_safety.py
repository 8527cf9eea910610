"""`phoenix ops` cannot mislead: no false all-clear on a store that does not exist, unknown ids and
codes are errors, --limit counts matches, bulk replay honours `retryable`, a final failure is
replayed by id only when forced with a reason, errors are one line with the documented exit codes.

Most tests run the CLI against a small SQLite store made here (failures recorded the way the
pipeline's refund step records them); the replay and cancel tests use the shared local stack.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from ops_stack import OpsRun, OpsStack, marker

from creations.model import Creation, CreationError, CreationType, Status
from creations.store.sqlite import SqliteStore
from devstack.stack import ROOT
from phoenix.ops import main as ops_main

pytestmark = pytest.mark.xdist_group("ops")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Books:
    """A store of its own in a data dir, with creations in the states a test asks for."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / "phoenix.sqlite3"
        self.store = SqliteStore(self.path)

    def paid(self, uid: str = "ann", tokens: int = 10) -> Creation:
        self.store.grant(uid, tokens, f"grant:{uid}:{Creation.new_id()}")
        creation = Creation(id=Creation.new_id(), uid=uid, type=CreationType.IMAGE, prompt="a kite", options={},
                            cost=1)
        return self.store.create_with_debit(creation).creation

    def failed(self, code: str, *, retryable: bool, uid: str = "ann") -> str:
        creation = self.paid(uid)
        self.store.refund(creation.id, 1, fail_with=CreationError(code=code, message=f"{code}!", step="generate",
                                                                  retryable=retryable))
        return creation.id

    def snapshot(self) -> dict:
        return {c.id: c.to_dict() for c in self.store.search_creations(limit=1000)[0]}


@pytest.fixture
def books(tmp_path) -> Books:
    b = Books(tmp_path / "data")
    yield b
    b.store.close()


@pytest.fixture
def ops_at(monkeypatch, capsys) -> Callable[..., OpsRun]:
    """`phoenix ops` with no PHOENIX_* setting but those given (and an engine nobody listens on)."""
    for name in list(os.environ):
        if name.startswith("PHOENIX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOENIX_LOCAL_ENGINE_URL", f"http://127.0.0.1:{closed_port()}")

    def run(*argv: str, env: dict[str, str] | None = None) -> OpsRun:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        code = ops_main(list(argv))
        out, err = capsys.readouterr()
        return OpsRun(code, out, err)

    return run


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


# --- a store that does not exist -----------------------------------------------------------------


@pytest.mark.parametrize("argv", [["audit"], ["reconcile", "--dry-run"], ["reconcile"], ["list"],
                                  ["trace", "some-id"], ["replay", "--failed", "--dry-run"]], ids=" ".join)
def test_without_a_store_every_command_refuses_and_creates_nothing(ops_at, tmp_path, argv):
    folder = tmp_path / "not-a-stack"
    run = ops_at(*argv, env={"PHOENIX_SQLITE_PATH": str(folder / "phoenix.sqlite3")})
    assert run.code == 2
    assert run.out == ""
    assert "no store at" in one_line(run.err) and "--data-dir" in run.err
    assert not folder.exists()


def test_the_data_dir_flag_points_at_a_store_and_refuses_an_empty_dir(ops_at, tmp_path, books):
    books.failed("STORAGE_ERROR", retryable=True)
    ok = ops_at("--data-dir", str(books.data_dir), "audit")
    assert (ok.code, ok.out) == (0, "the books balance: every user's balance = grants - debits + refunds\n")
    after = ops_at("audit", "--data-dir", str(books.data_dir))   # after the command works too
    assert after.code == 0

    empty = tmp_path / "empty"
    empty.mkdir()
    run = ops_at("--data-dir", str(empty), "audit")
    assert run.code == 2 and "no store at" in one_line(run.err)
    assert list(empty.iterdir()) == []


def test_a_file_that_is_not_a_store_is_refused(ops_at, tmp_path):
    other = tmp_path / "other.sqlite3"
    import sqlite3

    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    run = ops_at("--sqlite-path", str(other), "audit")
    assert run.code == 2 and "not a phoenix store" in one_line(run.err)


# --- unknown ids and codes -------------------------------------------------------------------------


def test_replay_with_an_unknown_id_exits_2_and_replays_none_of_the_ids(ops_at, books):
    known = books.failed("STORAGE_ERROR", retryable=True)
    before = books.snapshot()
    run = ops_at("--data-dir", str(books.data_dir), "replay", known, "no-such-creation")
    assert run.code == 2
    assert one_line(run.err) == "phoenix ops: no creation no-such-creation"
    assert books.snapshot() == before


@pytest.mark.parametrize("argv", [["replay", "--failed", "--code", "STORAGE_EROR", "--dry-run"],
                                  ["list", "--code", "NOPE"]], ids=" ".join)
def test_an_unknown_error_code_exits_2_naming_it(ops_at, books, argv):
    books.failed("STORAGE_ERROR", retryable=True)
    run = ops_at("--data-dir", str(books.data_dir), *argv)
    assert run.code == 2
    assert "unknown error code" in one_line(run.err) and argv[argv.index("--code") + 1] in run.err
    assert "STORAGE_ERROR" in run.err  # the known codes are listed


# --- --limit counts matches ------------------------------------------------------------------------


def test_limit_counts_matches_after_the_filter(ops_at, books):
    final = [books.failed("CONTENT_POLICY", retryable=False) for _ in range(3)]   # the oldest failures
    storage = [books.failed("STORAGE_ERROR", retryable=True) for _ in range(2)]
    env = {"PHOENIX_SQLITE_PATH": str(books.path)}

    run = ops_at("replay", "--failed", "--code", "STORAGE_ERROR", "--limit", "2", "--dry-run", env=env)
    assert run.code == 0, run.err
    assert {line.split()[2] for line in run.out.splitlines() if line.startswith("  would replay")} == set(storage)
    assert not any(cid in run.out for cid in final)

    one = ops_at("replay", "--failed", "--limit", "1", "--dry-run", env=env)
    assert [line.split()[2] for line in one.out.splitlines() if line.startswith("  would replay")] == [storage[-1]]
    assert "--limit 1 reached: more match" in one.out

    first = ops_at("list", "--status", "failed", "--code", "STORAGE_ERROR", "--limit", "1", env=env)
    assert [line.split()[0] for line in first.out.splitlines() if line.startswith("  ")] == [storage[-1]]
    token = first.out.rsplit("--page-token ", 1)[1].strip()
    second = ops_at("list", "--status", "failed", "--code", "STORAGE_ERROR", "--limit", "1",
                    "--page-token", token, env=env)
    assert [line.split()[0] for line in second.out.splitlines() if line.startswith("  ")] == [storage[0]]


# --- bulk replay honours retryable -----------------------------------------------------------------


def test_bulk_replay_leaves_what_was_recorded_as_not_retryable(ops_at, books):
    told = books.failed("TRIGGER_FAILED", retryable=False)     # what the API records: the user was told
    retry = books.failed("UNKNOWN", retryable=True)
    media = books.failed("MEDIA_ERROR", retryable=False)
    env = {"PHOENIX_SQLITE_PATH": str(books.path)}

    run = ops_at("replay", "--failed", "--dry-run", env=env)
    assert run.code == 0, run.err
    assert run.line_about(retry) == f"  would replay {retry} (attempt 1 -> 2, failed, UNKNOWN)"
    assert told not in run.out and media not in run.out
    assert "left out 2 failed for good (MEDIA_ERROR 1, TRIGGER_FAILED 1)" in run.out

    # Asked for by code, they are listed with why, and still not replayed.
    by_code = ops_at("replay", "--failed", "--code", "TRIGGER_FAILED", "--dry-run", env=env)
    assert by_code.code == 0
    assert "recorded as not retryable" in by_code.line_about(told)
    assert "nothing to replay" in by_code.out


def test_force_is_for_ids_only_and_needs_a_reason(ops_at, books):
    final = books.failed("CONTENT_POLICY", retryable=False)
    before = books.snapshot()
    data = ("--data-dir", str(books.data_dir))
    no_reason = ops_at(*data, "replay", final, "--force")
    assert no_reason.code == 2 and "--force needs --reason" in one_line(no_reason.err)
    bulk = ops_at(*data, "replay", "--failed", "--force", "--reason", "why not")
    assert bulk.code == 2 and "--force replays by id only" in one_line(bulk.err)
    preview = ops_at(*data, "replay", final, "--dry-run")
    assert preview.code == 1
    assert "would not replay: CONTENT_POLICY" in preview.line_about(final) and "--force --reason" in preview.out
    assert books.snapshot() == before


# --- missing Google credentials --------------------------------------------------------------------


def test_missing_google_credentials_is_one_line_and_exit_2(books, tmp_path):
    creation_id = books.failed("STORAGE_ERROR", retryable=True)
    # No credentials anywhere: no key file, an empty gcloud config, and the metadata server's
    # address pointed at a closed loopback port (nothing leaves this machine).
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    metadata = f"127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PHOENIX_", "GOOGLE_", "CLOUDSDK_", "GCE_"))} | {
        "PHOENIX_SQLITE_PATH": str(books.path), "PHOENIX_TRIGGER": "executions",
        "CLOUDSDK_CONFIG": str(gcloud), "GCE_METADATA_HOST": metadata, "GCE_METADATA_IP": metadata,
        "GCE_METADATA_TIMEOUT": "1"}
    run = subprocess.run([sys.executable, "-m", "phoenix.cli", "ops", "trace", creation_id], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    line = one_line(run.stderr)
    assert line.startswith("phoenix ops: no usable Google credentials") and "--data-dir" in line


# --- replay by id and cancel, on the local stack -------------------------------------------------------


def test_replaying_a_content_policy_failure_by_id_refuses_unless_forced_with_a_reason(ops, ops_stack: OpsStack):
    user = ops_stack.new_user(3)
    creation_id = ops_stack.submit(user, f"a #blocked scene {marker()}")
    assert ops_stack.finish(creation_id)["state"] == "FAILED"
    before = ops_stack.creation(creation_id).to_dict()
    assert before["error"]["code"] == "CONTENT_POLICY"

    refused = ops("replay", creation_id)
    assert refused.code == 1
    assert "is not worth replaying: CONTENT_POLICY" in refused.line_about(creation_id)
    assert ops_stack.creation(creation_id).to_dict() == before
    assert ops_stack.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit", f"{creation_id}:1:refund"]

    forced = ops("replay", creation_id, "--force", "--reason", "the filter was fixed, ticket 7", "--actor", "dana")
    assert forced.code == 0, forced.out + forced.err
    assert forced.line_about(creation_id).endswith("(forced)")
    replayed = ops_stack.creation(creation_id)
    assert ops_stack.wait(replayed.execution_ids[-1])["state"] == "FAILED"   # refused again, refunded again
    after = ops_stack.creation(creation_id)
    [action] = after.actions
    assert (action["actor"], action["action"], action["reason"], action["attempt"]) == (
        "dana", "replay (forced)", "the filter was fixed, ticket 7", 2)
    assert ops_stack.ledger_ids(user, creation_id) == [
        f"{creation_id}:1:debit", f"{creation_id}:1:refund", f"{creation_id}:2:debit", f"{creation_id}:2:refund"]
    assert ops_stack.store.balance(user.uid) == user.granted
    # The API reads the creation as before: same shape, no operator detail.
    seen = user.http.get(f"/v1/creations/{creation_id}")
    assert seen.status_code == 200 and "actions" not in seen.json()
    assert seen.json()["error"]["code"] == "CONTENT_POLICY"
    trace = ops("trace", creation_id)
    assert "action " in trace.out and "replay (forced) by dana: the filter was fixed, ticket 7" in trace.out


def test_cancel_stops_the_execution_records_why_and_refunds(ops, ops_stack: OpsStack):
    user = ops_stack.new_user(3)
    tag = marker()
    with ops_stack.held("generate-image", tag) as gate:
        creation_id = ops_stack.submit(user, f"a slow lantern {tag}")
        assert gate.reached.wait(30)
        no_reason = ops("cancel", creation_id)
        assert no_reason.code == 2
        run = ops("cancel", creation_id, "--reason", "stuck behind a provider outage", "--actor", "dana")
        assert run.code == 0, run.out + run.err
        assert "CANCELLED" in run.line_about(creation_id) and "refunded 1 token" in run.out
    execution = ops_stack.wait(ops_stack.execution_name(creation_id))
    assert execution["state"] == "CANCELLED"
    after = ops_stack.creation(creation_id)
    assert after.status is Status.FAILED
    assert [(a["action"], a["actor"]) for a in after.actions] == [("cancel", "dana")]
    assert ops_stack.store.balance(user.uid) == user.granted
    again = ops("cancel", creation_id, "--reason", "twice")
    assert again.code == 2 and "no running execution" in one_line(again.err)


def test_the_operator_preview_names_the_steps_a_replay_skips(ops_stack: OpsStack, stack):
    from test_ops_trace_replay import fail_upload

    from creations.operator import Operator

    user = ops_stack.new_user(3)
    creation_id = fail_upload(stack, user, "a windmill at noon")
    operator = Operator.from_settings(ops_stack.settings, ops_stack.store, storage=ops_stack.stack.storage)
    try:
        preview = operator.preview(creation_id)
    finally:
        operator.close()
    assert preview.worth and preview.charge == ops_stack.settings.cost_image
    assert {s.step: s.will for s in preview.steps} == {
        "debit_check": "run", "mark_processing": "run", "generate": "skip", "thumbnail": "skip",
        "upload": "run", "finalize": "run"}
    assert preview.balance == user.granted


def test_a_page_token_that_is_not_ours_is_a_bad_argument(ops_at, books):
    books.failed("STORAGE_ERROR", retryable=True)
    run = ops_at("--data-dir", str(books.data_dir), "list", "--page-token", "not-a-token")
    assert run.code == 2 and "page_token is not a token this service returned" in one_line(run.err)
