"""deploy.sh against a fake `gcloud` that keeps a project's state: the first run creates everything,
a second run changes nothing, a change updates only what it touches, --destroy removes what the
script created and nothing else."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from deploy_project import ENV, PROJECT, REPO, make_project

STEP_JOBS = {"creation-debit-check", "creation-mark-processing", "creation-generate-image", "creation-generate-video",
             "creation-thumbnail", "creation-upload", "creation-finalize", "creation-refund"}
ACCOUNTS = {f"phoenix-{role}@{PROJECT}.iam.gserviceaccount.com"
            for role in ("api", "workflow", "jobs-light", "jobs-generate", "jobs-media", "tasks-invoker", "scheduler")}
SECRETS = {"phoenix-r2-access-key-id", "phoenix-r2-secret-access-key"}

# What was there before deploy.sh: it must survive a deploy and a destroy untouched.
UNRELATED = {
    "secrets": {name: {} for name in SECRETS},
    "run.jobs": {"nightly-export": {"labels": {}}},
    "iam.service-accounts": {f"ci-deployer@{PROJECT}.iam.gserviceaccount.com": {}},
}
UNRELATED_POLICIES = {
    f"project:{PROJECT}": ["roles/owner\tuser:owner@example.com"],
    "secrets:phoenix-r2-secret-access-key": ["roles/secretmanager.admin\tuser:owner@example.com"],
}


@pytest.fixture
def project(tmp_path):
    p = make_project(tmp_path)
    p.install_fake_gcloud({"resources": UNRELATED, "policies": UNRELATED_POLICIES, "apis": ["logging.googleapis.com"]})
    return p


def changed(changes: list[dict]) -> Counter:
    return Counter((c["op"], c["kind"]) for c in changes)


def test_first_run_creates_everything_and_a_second_run_creates_nothing(project):
    first = project.run()
    made = project.take_changes()
    state = project.state()["resources"]
    assert set(state["run.jobs"]) == STEP_JOBS | {"phoenix-reconcile", "nightly-export"}
    assert set(state["run.services"]) == {"creations-api"}
    assert set(state["workflows"]) == {"creation"}
    assert set(state["tasks.queues"]) == {"creations-image", "creations-video"}
    assert set(state["scheduler.jobs"]) == {"phoenix-reconcile"}
    assert set(state["iam.service-accounts"]) == ACCOUNTS | {f"ci-deployer@{PROJECT}.iam.gserviceaccount.com"}
    assert set(state["artifacts.repositories"]) == {"phoenix"}
    assert set(state["firestore.databases"]) == {"(default)"}
    assert len(project.state()["images"]) == 4
    counts = changed(made)
    assert counts[("create", "run.jobs")] == 9 and counts[("create", "iam.service-accounts")] == 7
    assert counts[("grant", f"project:{PROJECT}")] == 9
    indexes = json.loads((REPO / "firestore.indexes.json").read_text())["indexes"]
    assert counts[("create", "firestore.indexes.composite")] == len(indexes)
    assert counts[("update", "firestore.indexes.fields")] == 4
    assert not any(
        c["op"] in ("update", "delete", "revoke") and c["kind"] not in ("firestore.indexes.fields",) for c in made
    )
    assert "created" in first.stderr and "API: https://creations-api-fake.a.run.app" in first.stderr

    second = project.run()
    assert project.take_changes() == []
    lines = [line for line in second.stderr.splitlines() if line.startswith("  ") and not line.startswith("  API:")]
    assert lines and all(line.rstrip().endswith("up to date") for line in lines), second.stderr
    for name in STEP_JOBS | {
        "creations-api",
        "creation",
        "creations-video",
        "phoenix-scheduler@demo-project.iam.gserviceaccount.com",
    }:
        assert any(name in line for line in lines), name


def test_a_change_updates_only_the_resources_it_touches(project):
    project.run()
    project.take_changes()
    # A new image tag: the images are built, every container rolls out; queues, IAM, workflow stay.
    project.env = {**ENV, "IMAGE_TAG": "fedcba987654"}
    project.run()
    assert changed(project.take_changes()) == Counter({("build", "image"): 4, ("update", "run.jobs"): 9,
                                                       ("update", "run.services"): 1})
    job = project.state()["resources"]["run.jobs"]["creation-generate-video"]
    assert job["flags"]["--image"].endswith("/steps:fedcba987654")
    # An API-only setting: only the API service.
    project.env = {**project.env, "MAX_ACTIVE_PER_USER": "7"}
    project.run()
    assert changed(project.take_changes()) == Counter({("update", "run.services"): 1})
    api = project.state()["resources"]["run.services"]["creations-api"]
    assert "PHOENIX_MAX_ACTIVE_PER_USER=7" in api["flags"]["--set-env-vars"]
    # A setting every container reads: every container, nothing else.
    project.env = {**project.env, "R2_BUCKET": "phoenix-media-2"}
    project.run()
    assert changed(project.take_changes()) == Counter({("update", "run.jobs"): 9, ("update", "run.services"): 1})


def test_a_queue_changed_by_hand_is_put_back(project):
    project.run()
    project.take_changes()
    state = project.state()
    state["resources"]["tasks.queues"]["creations-video"]["json"]["rateLimits"]["maxConcurrentDispatches"] = 50
    (project.state_dir / "state.json").write_text(__import__("json").dumps(state))
    project.run()
    assert [(c["op"], c["kind"], c["name"]) for c in project.take_changes()] == [
        ("update", "tasks.queues", "creations-video")
    ]


def test_a_missing_secret_stops_the_deploy_before_anything_is_created(project):
    state = project.state()
    del state["resources"]["secrets"]["phoenix-r2-secret-access-key"]
    (project.state_dir / "state.json").write_text(__import__("json").dumps(state))
    result = project.run(check=False)
    assert result.returncode == 1
    assert "secret phoenix-r2-secret-access-key not found in Secret Manager" in result.stderr
    assert project.take_changes() == []


def test_destroy_removes_what_it_created_and_nothing_else(project):
    before = project.state()
    project.run()
    project.take_changes()
    refused = project.run("--destroy", stdin="not-the-project\n", check=False)
    assert refused.returncode == 2 and "confirmation did not match" in refused.stderr
    assert project.take_changes() == []

    project.run("--destroy", stdin=f"{PROJECT}\n")
    after = project.state()
    res = after["resources"]
    assert set(res["run.jobs"]) == {"nightly-export"}
    assert res["run.services"] == {} and res["workflows"] == {} and res["tasks.queues"] == {}
    assert res["scheduler.jobs"] == {} and res["artifacts.repositories"] == {}
    assert set(res["iam.service-accounts"]) == {f"ci-deployer@{PROJECT}.iam.gserviceaccount.com"}
    assert set(res["secrets"]) == SECRETS
    # Kept: the data (Firestore database and its indexes) and the enabled APIs.
    assert set(res["firestore.databases"]) == {"(default)"}
    assert "run.googleapis.com" in after["apis"]
    policies = {k: v for k, v in after["policies"].items() if v}
    assert policies == UNRELATED_POLICIES == {k: v for k, v in before["policies"].items() if v}

    assert all(c["op"] in ("delete", "revoke") for c in project.take_changes())
    again = project.run("--destroy", "--yes")
    assert project.take_changes() == []
    assert "not there" in again.stderr


def test_destroy_deletes_the_database_only_when_told(project):
    project.run()
    project.run("--destroy", "--yes", "--delete-data")
    assert project.state()["resources"]["firestore.databases"] == {}
