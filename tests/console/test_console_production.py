"""The console's production readers: Firestore (Google's emulator) and the Executions REST API
(a loopback stand-in serving the step entries of a real local execution), as `phoenix console`
reads them against a Google Cloud project."""
from __future__ import annotations

import json
import re
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from creations.model import Creation, CreationError, CreationType
from phoenix.console.cli import Console
from tests.console.executions_rest_fake import MAX_PAGE, ExecutionsRestFake
from tests.support.firestore import (  # noqa: F401
    emulator_settings,
    firestore_emulator,
    firestore_project,
    firestore_store,
)
from tests.support.stack import marker

pytestmark = pytest.mark.xdist_group("console")

PROJECT = "phoenix-prod"
WORKFLOW = f"projects/{PROJECT}/locations/europe-west1/workflows/creation"


@pytest.fixture(scope="module")
def down_run(stack):
    """A real `#down` execution of the local stack: its execution and step entries."""
    user = stack.new_user(2)
    creation_id = stack.submit(user, f"a harbour #down {marker()}")
    outcome = stack.finish(creation_id)
    return outcome.execution, outcome.entries


@pytest.fixture
def fake():
    server = ExecutionsRestFake().start()
    yield server
    server.stop()


def test_against_a_project_the_console_reads_firestore_and_the_executions_api(
        down_run, fake, firestore_store, firestore_project):  # noqa: F811
    execution, entries = down_run
    # The same execution, as Google would name it in the project.
    local_name = execution["name"]
    name = f"{WORKFLOW}/executions/{local_name.rsplit('/', 1)[1]}"
    execution = json.loads(json.dumps(execution).replace(local_name, name))
    entries = json.loads(json.dumps(entries).replace(local_name, name))
    assert len(entries) > 2 * MAX_PAGE, "the step entries span several pages"

    uid = "user-prod-1"
    firestore_store.grant(uid, 5, f"grant:{uid}")
    creation = Creation(id=Creation.new_id(), uid=uid, type=CreationType.IMAGE, prompt="a harbour",
                        options={}, cost=1)
    execution["labels"]["creation-id"] = creation.id
    fake.add(execution, entries)
    firestore_store.create_with_debit(creation)

    def record(c: Creation) -> Creation:
        c.execution_ids = [name]
        return c

    firestore_store.update_creation(creation.id, record)
    error = CreationError(code="PROVIDER_UNAVAILABLE", message="image generation failed: 503", step="generate",
                          retryable=True)
    firestore_store.refund(creation.id, 1, fail_with=error)

    settings = emulator_settings(firestore_project, trigger="executions", executions_endpoint=fake.url,
                                 gcp_project=PROJECT, gcp_region="europe-west1", workflow_name="creation")
    console = Console(settings, store=firestore_store, operator="ops@phoenix-prod.iam.gserviceaccount.com")
    try:
        http = TestClient(console.app, base_url="http://127.0.0.1:8090")
        listing = http.get("/creations", params={"status": "failed"})
        assert listing.status_code == 200
        assert re.findall(r'<tr data-id="([0-9a-f]+)">', listing.text) == [creation.id]
        assert f"project {PROJECT}" in listing.text
        # An execution id finds its creation through the API's creation-id label.
        by_execution = http.get("/creations", params={"q": name.rsplit("/", 1)[1]})
        assert re.findall(r'<tr data-id="([0-9a-f]+)">', by_execution.text) == [creation.id]

        page = http.get(f"/creations/{creation.id}").text
        assert "PROVIDER_UNAVAILABLE" in page and "attempt 1: paid, <b>refunded</b>" in page
        assert page.count('class="trow k-retry') == 2
        # Production job logs live in Cloud Logging: links filtered on the creation and on the job
        # execution that failed.
        links = [unquote(u) for u in re.findall(r'href="(https://console.cloud.google.com/logs/query;[^"]+)"', page)]
        assert any(f'jsonPayload.creationId="{creation.id}"' in u and f"project={PROJECT}" in u for u in links)
        assert any('labels."run.googleapis.com/execution_name"="creation-generate-image-' in u for u in links)

        doc = http.get(f"/creations/{creation.id}/trace.json").json()
        assert doc["executions"][0]["stepEntries"] == entries  # every page followed
        assert f"GET /v1/{name}/stepEntries?pageSize=1000" in fake.requests

        user = http.get(f"/users/{uid}").text
        assert re.search(r'id="balance">5<', user) and "This user's books balance." in user
    finally:
        console.close()


def test_an_execution_the_api_cannot_serve_is_named_not_hidden(fake, firestore_store, firestore_project):  # noqa: F811
    uid = "user-prod-2"
    firestore_store.grant(uid, 2, f"grant:{uid}")
    creation = Creation(id=Creation.new_id(), uid=uid, type=CreationType.IMAGE, prompt="x", options={}, cost=1)
    firestore_store.create_with_debit(creation)
    gone = f"{WORKFLOW}/executions/gone-0001"
    firestore_store.update_creation(creation.id, lambda c: (setattr(c, "execution_ids", [gone]), c)[1])
    settings = emulator_settings(firestore_project, trigger="executions", executions_endpoint=fake.url,
                                 gcp_project=PROJECT, gcp_region="europe-west1")
    console = Console(settings, store=firestore_store, operator="tester")
    try:
        page = TestClient(console.app, base_url="http://127.0.0.1:8090").get(f"/creations/{creation.id}").text
        assert "the execution could not be read" in page and "not found" in page
    finally:
        console.close()
    firestore_store.refund(creation.id, 1, fail_with=CreationError("UNKNOWN", "test over", "test", True))
