"""The console in a real browser: headless Chromium (Debian's package) driven by Playwright.

An operator filters to failed creations, opens the `#down` one, reads its timeline with the
retries, replays it once the generation outage is over, watches it reach draft on the live page,
and sees the ledger show debit, refund, debit. On failure every page visited is screenshotted
under the test's temp dir.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from creations.model import Status
from tests.support.stack import Stack, marker

pytestmark = pytest.mark.xdist_group("console")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def console_url(console) -> str:
    """The console served over real HTTP on 127.0.0.1 (a free port), as `phoenix console` serves it."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(console.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the console did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def set_generation_outage(stack: Stack, down: bool) -> None:
    response = httpx.post(f"{stack.stack.urls['generation']}/_local/outage", json={"down": down}, timeout=10)
    assert response.status_code == 200, response.text


def test_an_operator_finds_the_down_failure_reads_its_timeline_and_replays_it_to_draft(
        browser, console_url, stack: Stack, tmp_path):
    user = stack.new_user(5)
    tag = marker()
    image = stack.submit(user, f"a lighthouse at dawn {tag}")
    refused = stack.submit(user, f"a storm #blocked {tag}")
    down = stack.submit(user, f"a harbour #down {tag}")
    for creation_id in (image, refused, down):
        stack.finish(creation_id)
    assert stack.creation(down).status is Status.FAILED

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(frame.url) if frame == page.main_frame else None)
    try:
        page.goto(f"{console_url}/creations")
        page.select_option("select[name=status]", "failed")
        page.fill("input[name=uid]", user.uid)
        page.click("#filters button[type=submit]")
        page.wait_for_url("**/creations?*status=failed*")
        rows = page.locator("#creations tbody tr[data-id]")
        assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.id)")) == sorted([refused, down])

        page.click(f"tr[data-id='{down}'] a.mono")
        page.wait_for_url(f"**/creations/{down}")
        assert "PROVIDER_UNAVAILABLE" in page.inner_text("#error")
        retries = page.locator(".trow.k-retry")
        assert retries.count() == 2
        assert "waits 15.0 s" in retries.nth(0).inner_text() and "waits 60.0 s" in retries.nth(1).inner_text()
        assert page.locator(".trow[data-step=generate_media][data-kind=run]").count() == 3

        set_generation_outage(stack, down=False)
        page.click("#replay")
        page.wait_for_selector("#replay-form")
        assert page.inner_text("#charge") == "1"
        page.fill("#replay-form input[name=reason]", "generation is back")
        page.click("#replay-form button[type=submit]")
        page.wait_for_url(f"**/creations/{down}?done=*")
        # The page refreshes itself while the creation runs, until it is a draft.
        page.wait_for_selector("h1 .status.s-draft", timeout=60_000)
        kinds = page.locator("#ledger tr td:nth-child(2)").all_inner_texts()
        assert kinds == ["debit", "refund", "debit"]
        assert "generation is back" in page.inner_text("#operator-actions")
        assert page.locator("#media img").count() == 2
        page.screenshot(path=str(tmp_path / "creation.png"), full_page=True)
    except BaseException:
        _screenshots(page, visited, tmp_path)
        raise
    finally:
        set_generation_outage(stack, down=True)
        page.close()
    after = stack.creation(down)
    assert (after.status, after.attempt) == (Status.DRAFT, 2)
    assert stack.ledger_ids(user, down) == [f"{down}:1:debit", f"{down}:1:refund", f"{down}:2:debit"]


def _screenshots(page, visited: list[str], directory: Path) -> None:
    """The page as it is, then each page visited, as PNGs under `directory`."""
    try:
        page.screenshot(path=str(directory / "failure-current.png"), full_page=True)
        for i, url in enumerate(dict.fromkeys(visited)):
            page.goto(url)
            page.screenshot(path=str(directory / f"failure-{i:02d}.png"), full_page=True)
        print(f"screenshots of the pages visited are in {directory}")
    except Exception as exc:  # noqa: BLE001 - the test's own failure is what matters
        print(f"could not take screenshots: {exc}")
