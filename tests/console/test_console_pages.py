"""The console's pages over a running local stack: what an operator sees."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from creations.model import Status
from creations.store.sqlite import SqliteStore
from phoenix.console.cli import Console
from tests.support.stack import Stack, User, marker

pytestmark = pytest.mark.xdist_group("console")


def listed(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([0-9a-f]+)">', html)


def count_of(html: str, status: str) -> int:
    return int(re.search(rf'class="count s-{status}">{status} <b>(\d+)</b>', html).group(1))


@pytest.fixture(scope="module")
def three(stack: Stack) -> tuple[User, dict[str, str]]:
    """One user's image that became a draft, a #blocked one and a #down one (both failed)."""
    user = stack.new_user(10)
    tag = marker()
    ids = {name: stack.submit(user, f"{prompt} {tag}") for name, prompt in
           (("draft", "a lighthouse at dawn"), ("blocked", "a storm #blocked"), ("down", "a harbour #down"))}
    for creation_id in ids.values():
        stack.finish(creation_id)
    assert stack.creation(ids["draft"]).status is Status.DRAFT
    assert stack.creation(ids["down"]).status is Status.FAILED
    return user, ids


# --- Creations -------------------------------------------------------------------------------


def test_creations_are_listed_newest_first_with_counts_per_status(client, three):
    user, ids = three
    page = client.get("/creations", params={"uid": user.uid})
    assert page.status_code == 200
    assert listed(page.text) == [ids["down"], ids["blocked"], ids["draft"]]
    assert (count_of(page.text, "draft"), count_of(page.text, "failed"), count_of(page.text, "pending")) == (1, 2, 0)


def test_filters_narrow_the_list_by_status_error_code_type_and_id(client, stack, three):
    user, ids = three
    failed = client.get("/creations", params={"uid": user.uid, "status": "failed"})
    assert listed(failed.text) == [ids["down"], ids["blocked"]]
    # The counts keep every status, so the other tabs stay one click away.
    assert count_of(failed.text, "draft") == 1
    by_code = client.get("/creations", params={"code": "content_policy", "uid": user.uid})
    assert listed(by_code.text) == [ids["blocked"]]
    assert listed(client.get("/creations", params={"uid": user.uid, "type": "video"}).text) == []
    assert listed(client.get("/creations", params={"q": ids["draft"]}).text) == [ids["draft"]]
    execution = stack.execution_name(ids["down"])
    assert listed(client.get("/creations", params={"q": execution.rsplit("/", 1)[1]}).text) == [ids["down"]]
    assert listed(client.get("/creations", params={"q": execution}).text) == [ids["down"]]
    assert listed(client.get("/creations", params={"q": "no-such-id"}).text) == []


def test_a_time_range_before_the_creations_lists_none_of_them(client, three):
    user, _ = three
    page = client.get("/creations", params={"uid": user.uid, "until": "2020-01-01T00:00"})
    assert page.status_code == 200 and listed(page.text) == []


@pytest.mark.parametrize("params, message", [
    ({"status": "done"}, "status must be one of pending, processing, draft, failed"),
    ({"type": "gif"}, "type must be one of image, video"),
    ({"code": "NO_SUCH_CODE"}, "unknown error code NO_SUCH_CODE"),
    ({"since": "yesterday"}, "since must be a date and time"),
    ({"since": "2026-02-01T00:00", "until": "2026-01-01T00:00"}, "the time range is empty"),
    ({"page": "not-a-token"}, "page_token is not a token this service returned"),
    ({"size": "0"}, "size must be between 1 and 500"),
])
def test_a_bad_filter_answers_400_saying_what_to_fix(client, params, message):
    page = client.get("/creations", params=params)
    assert page.status_code == 400
    assert message in page.text


def test_pages_follow_one_another_without_gaps_or_repeats(client, stack):
    user = stack.new_user(10)
    made = [stack.submit(user, f"a pebble {n} {marker()}") for n in range(5)]
    for creation_id in made:
        stack.finish(creation_id)
    seen, url, params = [], "/creations", {"uid": user.uid, "size": "2"}
    for _ in range(5):
        page = client.get(url, params=params)
        seen += listed(page.text)
        more = re.search(r'id="next-page" href="([^"]+)"', page.text)
        if not more:
            break
        url, params = more.group(1).replace("&amp;", "&"), None
    assert seen == list(reversed(made))


# --- Creation --------------------------------------------------------------------------------


def test_the_creation_page_of_a_down_failure_shows_the_error_the_retries_and_the_refund(client, stack, three):
    user, ids = three
    page = client.get(f"/creations/{ids['down']}")
    assert page.status_code == 200
    html = page.text
    # The recorded error, up front, before the timeline.
    error = html.index('id="error"')
    assert error < html.index('class="timeline"')
    assert "PROVIDER_UNAVAILABLE" in html[error:error + 400] and "at step generate" in html[error:error + 400]
    assert "retryable" in html[error:error + 600]
    # The timeline: three runs of generate_media with two retry waits between them, 15 s then 60 s.
    rows = re.findall(r'<div class="trow k-(\w+) st-(\w+)" data-step="(\w+)"', html)
    generate = [(kind, state) for kind, state, step in rows if step == "generate_media"]
    assert generate == [("run", "FAILED"), ("retry", "SUCCEEDED"), ("run", "FAILED"), ("retry", "SUCCEEDED"),
                        ("run", "FAILED")]
    assert "waits 15.0 s" in html and "waits 60.0 s" in html
    assert re.search(r"\d+ polls?", html), "connector polls are shown"
    assert ("refund_tokens", "SUCCEEDED") in [(step, state) for _, state, step in rows]
    # The money: paid, refunded, with both ledger entries.
    assert "attempt 1: paid, <b>refunded</b>" in html
    assert f"{ids['down']}:1:debit" in html and f"{ids['down']}:1:refund" in html
    # The step jobs' log lines (local job logs).
    assert "job log (" in html and "refund done: refunded 1 tokens of attempt 1" in html
    # A replay is offered, and worth it.
    assert 'id="replay"' in html and "worth it: PROVIDER_UNAVAILABLE is retryable" in html


def test_the_creation_page_of_a_draft_previews_its_media_and_checkpoints(client, three):
    _, ids = three
    html = client.get(f"/creations/{ids['draft']}").text
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 2, "the image and its thumbnail"
    assert all(src.startswith("http://127.0.0.1:") for src in images)
    for step in ("generate", "thumbnail", "upload"):
        assert f"<td>{step}</td><td>1</td>" in html
    assert 'id="replay"' not in html and 'id="cancel"' not in html


def test_the_json_download_holds_the_creation_its_executions_and_every_step_entry(client, stack, three):
    _, ids = three
    response = client.get(f"/creations/{ids['down']}/trace.json")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="creation-{ids["down"]}.json"'
    doc = json.loads(response.text)
    assert doc["creation"]["id"] == ids["down"] and doc["creation"]["error"]["code"] == "PROVIDER_UNAVAILABLE"
    [execution] = doc["executions"]
    name = stack.execution_name(ids["down"])
    assert execution["execution"]["name"] == name and execution["execution"]["state"] == "FAILED"
    assert execution["stepEntries"] == stack.engine.step_entries(name)
    assert [e["id"] for e in doc["ledger"]] == [f"{ids['down']}:1:debit", f"{ids['down']}:1:refund"]


def test_an_unknown_creation_answers_404(client):
    page = client.get("/creations/no-such-creation")
    assert page.status_code == 404 and "no creation no-such-creation" in page.text
    assert client.get("/creations/no-such-creation/trace.json").status_code == 404


# --- Users and Overview ----------------------------------------------------------------------


def test_the_user_page_shows_balance_ledger_and_audit(client, three):
    user, ids = three
    html = client.get(f"/users/{user.uid}").text
    assert re.search(r'id="balance">(\d+)<', html).group(1) == "9"  # 10 - 1 (the draft); both failures refunded
    assert "This user's books balance." in html
    assert f"grant:{user.uid}" in html and f"{ids['down']}:1:refund" in html
    assert client.get("/users", params={"uid": user.uid}).headers.get("location") is None  # followed


def test_the_overview_counts_statuses_error_codes_and_times_steps(client, three):
    html = client.get("/").text
    assert 'class="banner good" id="audit"' in html
    assert "CONTENT_POLICY" in html and "PROVIDER_UNAVAILABLE" in html
    steps = re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>", html)
    assert {"generate_media", "refund_tokens", "upload_media"} <= {s[0] for s in steps}


def test_the_overview_banner_turns_red_when_the_books_do_not_balance(stack, tmp_path):
    from fastapi.testclient import TestClient

    store = SqliteStore(tmp_path / "phoenix.sqlite3")
    uid = f"user-{uuid.uuid4().hex[:8]}"
    store.grant(uid, 5, f"grant:{uid}")
    db = store._db()
    db.execute("UPDATE users SET tokens = 7 WHERE uid = ?", (uid,))  # tokens from nowhere
    console = Console(stack.settings, store=store, data_dir=tmp_path, operator="tester")
    try:
        http = TestClient(console.app, base_url="http://127.0.0.1:8090")
        html = http.get("/").text
        assert 'class="banner bad" id="audit"' in html and "The books do not balance" in html
        assert "balance 7 but the ledger gives 5" in html
        user_page = http.get(f"/users/{uid}").text
        assert 'class="banner bad" id="audit"' in user_page and "balance 7 but the ledger gives 5" in user_page
    finally:
        console.close()
        store.close()
