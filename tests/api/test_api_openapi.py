"""The published OpenAPI document is what the API does: schemathesis generates requests from
/openapi.json (valid and invalid), sends them with a valid bearer token, and checks every answer
against the documented status codes and bodies; no request may produce a 5xx."""
from __future__ import annotations

import httpx
import pytest
import schemathesis
from api_stack import SECRET, UvicornThread, api_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.auth import make_local_token
from api.main import create_app
from creations.settings import Settings
from creations.storage import MediaStorage
from creations.store.sqlite import SqliteStore

UID = "fuzz-user"
AUTH = {"Authorization": f"Bearer {make_local_token(UID, SECRET)}"}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, s3, executions):
    config = api_settings(tmp_path_factory.mktemp("fuzz"), s3, local_engine_url=executions.url,
                          max_active_per_user=1_000_000,
                          events_max_stream_seconds=0.5)  # event streams end soon: each case is read whole
    store = SqliteStore(config.sqlite_path)
    store.grant(UID, 10**9, "fuzz-grant")
    storage = MediaStorage.from_settings(config)
    storage.ensure_bucket()
    server = UvicornThread(create_app(config, store=store, storage=storage)).start()
    yield server
    server.stop()
    store.close()


def published_document() -> dict:
    """/openapi.json of the app as configured for production (building it opens nothing)."""
    app = create_app(Settings(auth_mode="firebase", firebase_project_id="phoenix-docs"), store=object(),
                     trigger=object(), storage=object())
    return TestClient(app).get("/openapi.json").json()


# The schema is loaded when the module is; each generated case is sent to the fixture's server.
# One pytest item per operation and mode (not `schema.parametrize()`, whose per-operation
# subtests lose their failures under pytest-xdist).
schema = schemathesis.openapi.from_dict(published_document())
OPERATIONS = [result.ok() for result in schema.get_all_operations()]
# Invalid requests can be made only where there is something to get wrong.
CASES = [(op, mode) for op in OPERATIONS for mode in GenerationMode
         if mode is GenerationMode.POSITIVE or op.body or op.query or op.path_parameters or op.headers]


@pytest.mark.parametrize("operation,mode", CASES, ids=[f"{op.label}-{mode.value}" for op, mode in CASES])
def test_openapi_conformance(operation, mode, fuzz_server):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        # Every check but "schema-valid request accepted": which options (and prompts) a model
        # takes depends on the type and lives in creations.options, beyond what a JSON schema
        # states, and a made-up pageToken is rightly refused; both answer a documented 422.
        case.call_and_validate(base_url=fuzz_server.url, headers=AUTH,
                               excluded_checks=[positive_data_acceptance])

    check()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_openapi_coverage_cases(operation, fuzz_server):
    """Schemathesis' coverage phase: boundary values, missing and wrong-typed parameters, and
    the methods an operation does not take (405 with an accurate Allow header)."""
    config = schema.config.generation_for(operation=operation)
    cases = list(schema.iter_coverage_cases(operation, generation_modes=list(GenerationMode),
                                            generation_config=config))
    assert cases
    for case in cases:
        case.call_and_validate(base_url=fuzz_server.url, headers=AUTH, excluded_checks=[positive_data_acceptance])


def test_openapi_documents_the_errors(fuzz_server):
    document = httpx.get(f"{fuzz_server.url}/openapi.json").json()
    assert document == published_document()
    post = document["paths"]["/v1/creations"]["post"]
    assert {"202", "401", "402", "409", "422", "429", "503"} <= set(post["responses"])
    assert post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/CreationAccepted")
    assert document["paths"]["/v1/creations/{creation_id}"]["delete"]["responses"].keys() >= {"204", "404", "409"}
    assert "HTTPBearer" in document["components"]["securitySchemes"]
