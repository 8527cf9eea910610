"""The console's actions: a preview first, then a CSRF-checked form with a reason, recorded with
who did it; the same rules as `phoenix ops` (the operator layer underneath)."""
from __future__ import annotations

import re
import time

import pytest

from creations.model import Status
from tests.console.conftest import OPERATOR
from tests.support.stack import Stack, marker

pytestmark = pytest.mark.xdist_group("console")


def csrf_of(client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def fail_upload(stack: Stack, user, prompt: str) -> str:
    tag = marker()
    with stack.upload_outage(tag):
        creation_id = stack.submit(user, f"{prompt} {tag}")
        assert stack.finish(creation_id).state == "FAILED"
    assert stack.creation(creation_id).error.code == "STORAGE_ERROR"
    return creation_id


def blocked(stack: Stack, user) -> str:
    creation_id = stack.submit(user, f"a #blocked scene {marker()}")
    stack.finish(creation_id)
    assert stack.creation(creation_id).error.code == "CONTENT_POLICY"
    return creation_id


# --- CSRF --------------------------------------------------------------------------------------


def test_a_post_without_the_pages_token_or_from_another_origin_is_refused(client, stack):
    user = stack.new_user(3)
    creation_id = fail_upload(stack, user, "a kite")
    url = f"/creations/{creation_id}/replay"
    token = csrf_of(client, url)
    no_token = client.post(url, data={"reason": "outage over"})
    assert no_token.status_code == 403 and "reload the page" in no_token.text
    wrong = client.post(url, data={"reason": "outage over", "csrf": "x" * 43})
    assert wrong.status_code == 403
    elsewhere = client.post(url, data={"reason": "outage over", "csrf": token},
                            headers={"Origin": "http://evil.example"})
    assert elsewhere.status_code == 403 and "http://evil.example" in elsewhere.text
    # Nothing moved.
    after = stack.creation(creation_id)
    assert (after.status, after.attempt, after.actions) == (Status.FAILED, 1, [])


def test_a_request_for_another_host_name_is_refused(client):
    # DNS rebinding: a page at evil.example, its name made to resolve to 127.0.0.1.
    page = client.get("/creations", headers={"Host": "evil.example:8090"})
    assert page.status_code == 403 and "answers on 127.0.0.1 or localhost" in page.text
    assert client.get("/creations", headers={"Host": "localhost:8090"}).status_code == 200


def test_the_csrf_cookie_is_strict_and_http_only(client):
    response = client.get("/creations")
    cookie = response.headers["set-cookie"].lower()
    assert "phoenix_console_csrf=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


# --- replay ------------------------------------------------------------------------------------


def test_replay_previews_the_charge_and_the_skipped_steps_then_records_who_and_why(client, stack):
    user = stack.new_user(3)
    creation_id = fail_upload(stack, user, "a red kite over the downs")
    url = f"/creations/{creation_id}/replay"
    preview = client.get(url).text
    assert "Worth replaying" in preview and "STORAGE_ERROR is retryable" in preview
    assert re.search(r'id="charge">1<', preview)
    plan = dict(re.findall(r'<tr class="will-(\w+)"><td>(\w+)</td>', preview)[i][::-1] for i in range(6))
    assert plan == {"debit_check": "run", "mark_processing": "run", "generate": "skip", "thumbnail": "skip",
                    "upload": "run", "finalize": "run"}
    token = re.search(r'name="csrf" value="([^"]+)"', preview).group(1)

    missing = client.post(url, data={"csrf": token, "attempt": "1", "reason": "  "})
    assert missing.status_code == 400 and "say why" in missing.text
    done = client.post(url, data={"csrf": token, "attempt": "1", "reason": "storage is back"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith(f"/creations/{creation_id}?done=")
    stack.finish(creation_id)
    after = stack.creation(creation_id)
    assert (after.status, after.attempt) == (Status.DRAFT, 2)
    [action] = after.actions
    assert (action["actor"], action["action"], action["reason"], action["attempt"]) == \
        (OPERATOR, "replay", "storage is back", 2)
    assert stack.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit", f"{creation_id}:1:refund",
                                                   f"{creation_id}:2:debit"]
    page = client.get(f"/creations/{creation_id}").text
    assert "storage is back" in page and OPERATOR in page
    # A second replay of the same attempt (a stale form) is refused, not run twice.
    again = client.post(url, data={"csrf": token, "attempt": "1", "reason": "again"})
    assert again.status_code == 409 and "not replayed" in again.text


def test_a_failure_that_is_final_is_not_replayed_unless_forced_with_a_reason(client, stack):
    user = stack.new_user(3)
    creation_id = blocked(stack, user)
    url = f"/creations/{creation_id}/replay"
    preview = client.get(url).text
    assert "Not worth replaying" in preview and "CONTENT_POLICY" in preview and 'name="force"' in preview
    token = re.search(r'name="csrf" value="([^"]+)"', preview).group(1)
    refused = client.post(url, data={"csrf": token, "attempt": "1", "reason": "try again"})
    assert refused.status_code == 409 and "not worth replaying" in refused.text
    assert stack.creation(creation_id).attempt == 1
    assert stack.store.balance(user.uid) == 3

    forced = client.post(url, data={"csrf": token, "attempt": "1", "reason": "provider fixed its filter",
                                    "force": "yes"}, follow_redirects=False)
    assert forced.status_code == 303
    stack.finish(creation_id)
    after = stack.creation(creation_id)
    assert after.attempt == 2 and after.actions[-1]["action"] == "replay (forced)"
    assert after.actions[-1]["reason"] == "provider fixed its filter"
    assert stack.store.balance(user.uid) == 3  # refused again by the provider: refunded again


# --- bulk replay -------------------------------------------------------------------------------


def test_bulk_replay_by_filter_lists_what_is_not_worth_it_then_shows_progress_and_a_summary(client, stack):
    user = stack.new_user(5)
    retryable = [fail_upload(stack, user, f"a boat {n}") for n in range(2)]
    final = blocked(stack, user)
    url = f"/bulk-replay?status=failed&uid={user.uid}"
    preview = client.get(url).text
    assert re.search(r'id="worth-count">2<', preview) and re.search(r'id="not-worth-count">1<', preview)
    assert final[:12] in preview and "CONTENT_POLICY: the provider refused the prompt" in preview
    token = re.search(r'name="csrf" value="([^"]+)"', preview).group(1)
    started = client.post("/bulk-replay", data={"csrf": token, "status": "failed", "uid": user.uid,
                                                "limit": "2", "reason": "storage outage over"},
                          follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"].startswith("/jobs/")
    job_url = started.headers["location"]
    deadline = time.monotonic() + 60
    while "done</span>" not in (page := client.get(job_url).text):
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    assert "started: 2" in page and "not worth replaying: 1" in page
    for creation_id in retryable:
        stack.finish(creation_id)
        after = stack.creation(creation_id)
        assert (after.status, after.attempt, after.actions[-1]["reason"]) == (Status.DRAFT, 2, "storage outage over")
    assert stack.creation(final).attempt == 1


def test_bulk_replay_of_drafts_is_refused(client):
    page = client.get("/bulk-replay?status=draft")
    assert page.status_code == 400 and "only failed creations can be replayed" in page.text


# --- cancel and reconcile ----------------------------------------------------------------------


def test_cancel_a_running_execution_fails_and_refunds_it_and_records_why(client, stack):
    user = stack.new_user(3)
    tag = marker()
    with stack.held("generate-image", tag) as gate:
        creation_id = stack.submit(user, f"a kettle on a stove {tag}")
        assert gate.reached.wait(30)
        url = f"/creations/{creation_id}/cancel"
        preview = client.get(url).text
        assert "ACTIVE" in preview and 'id="cancel-form"' in preview
        token = re.search(r'name="csrf" value="([^"]+)"', preview).group(1)
        done = client.post(url, data={"csrf": token, "reason": "stuck on a bad provider region"},
                           follow_redirects=False)
        assert done.status_code == 303, done.text
    assert stack.wait(stack.execution_name(creation_id))["state"] == "CANCELLED"
    after = stack.creation(creation_id)
    assert after.status is Status.FAILED and after.charge["refunded"] == {"1": True}
    assert after.actions[-1]["action"] == "cancel" and after.actions[-1]["actor"] == OPERATOR
    assert stack.store.balance(user.uid) == 3
    # Nothing left to cancel.
    assert 'id="cancel-form"' not in client.get(f"/creations/{creation_id}/cancel").text


def test_reconcile_previews_then_fails_and_refunds_a_stuck_creation_once(client, stack):
    user = stack.new_user(3)
    tag = marker()
    with stack.held("generate-image", tag) as gate:
        creation_id = stack.submit(user, f"a clock tower {tag}")
        assert gate.reached.wait(30)
        name = stack.execution_name(creation_id)
        # Cancelled behind the console's back: no refund step runs, the creation stays processing.
        assert stack.engine.cancel(name, timeout=30)["state"] == "CANCELLED"
    assert stack.creation(creation_id).status is Status.PROCESSING
    preview = client.get("/reconcile", params={"older_than": "0"}).text
    row = next(line for line in preview.split("<tr>") if creation_id[:12] in line)
    assert "would compensate" in row and "CANCELLED" in row
    assert stack.creation(creation_id).status is Status.PROCESSING  # a preview changes nothing
    token = re.search(r'name="csrf" value="([^"]+)"', preview).group(1)
    applied = client.post("/reconcile", data={"csrf": token, "older_than": "0", "reason": "nightly sweep"})
    assert applied.status_code == 200 and "compensated" in applied.text
    after = stack.creation(creation_id)
    assert after.status is Status.FAILED and stack.refunds(user, creation_id) == 1
    assert (after.actions[-1]["action"], after.actions[-1]["reason"]) == ("reconcile", "nightly sweep")
    again = client.post("/reconcile", data={"csrf": token, "older_than": "0", "reason": "again"})
    assert creation_id[:12] not in again.text and stack.refunds(user, creation_id) == 1
