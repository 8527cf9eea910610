"""deploy.sh --dry-run: the whole plan for an empty project, printed in order, checked against a
reviewed snapshot; preflight refusals; what the plan says about jobs, secrets and the workflow."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from deploy_project import ENV, REPO, make_project

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
# The plan's configuration hashes change with any file they cover (creation.yaml, ...): the snapshot
# keeps their place, not their value.
HASH = re.compile(r"phoenix-config[= ][0-9a-f]{16}")


def normalized(lines: list[str]) -> str:
    return "".join(HASH.sub("phoenix-config=<hash>", line) + "\n" for line in lines)


def check_snapshot(name: str, lines: list[str]) -> None:
    path = SNAPSHOTS / name
    text = normalized(lines)
    if os.environ.get("PHOENIX_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}: run with PHOENIX_UPDATE_SNAPSHOTS=1 and review it"
    assert text == path.read_text(), (
        f"the plan differs from {path.name}; "
        "if intended, regenerate with PHOENIX_UPDATE_SNAPSHOTS=1 and review the diff"
    )


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def first(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


def last(lines: list[str], prefix: str) -> int:
    return max(i for i, line in enumerate(lines) if line.startswith(prefix))


def test_the_dry_run_prints_the_reviewed_plan_for_an_empty_project(project):
    check_snapshot("dry-run.txt", project.plan())


def test_the_destroy_dry_run_prints_the_reviewed_plan(project):
    check_snapshot("destroy-dry-run.txt", project.plan("--destroy", "--delete-data"))


def test_the_plan_runs_checks_then_apis_then_resources_and_accounts_before_their_grants(project):
    plan = project.plan()
    assert all(line.startswith("gcloud ") for line in plan)
    assert first(plan, "gcloud services enable") > last(plan, "gcloud secrets describe")
    changes = [
        i for i, line in enumerate(plan) if re.search(r" (create|deploy|submit|update|add-iam-policy-binding) ", line)
    ]
    assert min(changes) == first(plan, "gcloud services enable") + 2  # the registry is next (after its describe)
    assert last(plan, "gcloud iam service-accounts create") < first(plan, "gcloud projects add-iam-policy-binding")
    assert last(plan, "gcloud iam service-accounts create") < first(plan, "gcloud secrets add-iam-policy-binding")
    assert first(plan, "gcloud artifacts repositories create") < first(plan, "gcloud builds submit")
    assert first(plan, "gcloud builds submit") < first(plan, "gcloud run jobs deploy")
    assert last(plan, "gcloud run jobs deploy creation-") < first(plan, "gcloud run jobs add-iam-policy-binding")
    assert last(plan, "gcloud tasks queues create") < first(plan, "gcloud tasks queues add-iam-policy-binding")
    assert first(plan, "gcloud firestore databases create") < first(plan, "gcloud firestore indexes composite create")
    assert last(plan, "gcloud run jobs deploy creation-") < first(plan, "gcloud workflows deploy")
    assert first(plan, "gcloud run jobs deploy phoenix-reconcile") < first(plan, "gcloud scheduler jobs create")


def _workflow_jobs() -> set[str]:
    """The job names creation.yaml runs (`job:` of each run_step call; generate-<type> per type)."""
    doc = yaml.safe_load((REPO / "workflows" / "creation.yaml").read_text())
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("call") == "run_step":
                job = node["args"]["job"]
                if "generate-" in job and "${" in job:
                    names.update({"generate-image", "generate-video"})
                else:
                    names.add(job)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return names


def _job_deploys(plan: list[str]) -> dict[str, list[str]]:
    return {shlex.split(line)[4]: shlex.split(line) for line in plan if line.startswith("gcloud run jobs deploy ")}


def _flag(args: list[str], name: str) -> str:
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {args}")


def test_there_is_one_job_per_step_the_workflow_runs_each_with_no_platform_retries(project):
    plan = project.plan()
    jobs = _job_deploys(plan)
    init = (REPO / "workflows" / "creation.yaml").read_text()
    prefix = re.search(r'default\(sys\.get_env\("JOB_PREFIX"\), "([^"]+)"\)', init).group(1)
    assert {name for name in jobs if name != "phoenix-reconcile"} == {prefix + job for job in _workflow_jobs()}
    for name, args in jobs.items():
        assert _flag(args, "--max-retries") == "0", name
    # The figures of the system this replaces; light steps get the smallest size.
    assert [_flag(jobs["creation-generate-video"], f) for f in ("--cpu", "--memory", "--task-timeout")] == [
        "2",
        "4Gi",
        "600s",
    ]
    assert [_flag(jobs["creation-generate-image"], f) for f in ("--cpu", "--memory", "--task-timeout")] == [
        "1",
        "1Gi",
        "300s",
    ]
    for light in ("debit-check", "mark-processing", "finalize", "refund"):
        args = jobs[prefix + light]
        assert [_flag(args, "--cpu"), _flag(args, "--memory")] == ["1", "512Mi"]
        assert int(_flag(args, "--task-timeout").rstrip("s")) >= 300
    # Each job runs its own step module; the reconcile job runs the operator CLI.
    assert _flag(jobs["creation-refund"], "--command") == "python,-m,steps.refund"
    assert _flag(jobs["phoenix-reconcile"], "--args") == "ops,reconcile"


def test_the_workflow_gets_the_env_vars_its_init_reads(project):
    plan = project.plan()
    deploy = shlex.split(plan[first(plan, "gcloud workflows deploy")])
    env = dict(pair.split("=", 1) for pair in _flag(deploy, "--set-env-vars").split(","))
    source = (REPO / "workflows" / "creation.yaml").read_text()
    read = set(re.findall(r'sys\.get_env\("([A-Z_]+)"\)', source)) - {
        "GOOGLE_CLOUD_PROJECT_ID",
        "GOOGLE_CLOUD_LOCATION",
    }
    assert set(env) == read == {"JOBS_LOCATION", "JOB_PREFIX", "FIRESTORE_DATABASE"}
    assert env["JOB_PREFIX"] == "creation-" and env["JOBS_LOCATION"] == "us-central1"
    assert _flag(deploy, "--service-account").startswith("phoenix-workflow@")
    assert _flag(deploy, "--call-log-level") == "log-errors-only"


def test_secrets_are_mounted_from_secret_manager_and_never_appear_in_the_plan(project):
    plan = project.plan()
    for line in plan:
        assert "SECRET_ACCESS_KEY=" not in line.replace(
            "PHOENIX_S3_SECRET_ACCESS_KEY=phoenix-r2-secret-access-key:latest", ""
        )
    api = shlex.split(plan[first(plan, "gcloud run deploy creations-api")])
    assert _flag(api, "--set-secrets") == ("PHOENIX_S3_ACCESS_KEY_ID=phoenix-r2-access-key-id:latest,"
                                           "PHOENIX_S3_SECRET_ACCESS_KEY=phoenix-r2-secret-access-key:latest")
    env = dict(pair.split("=", 1) for pair in _flag(api, "--set-env-vars").split(","))
    assert (
        env["PHOENIX_STORE"] == "firestore"
        and env["PHOENIX_AUTH_MODE"] == "firebase"
        and env["PHOENIX_TRIGGER"] == "tasks"
    )
    assert env["PHOENIX_TASKS_SERVICE_ACCOUNT"].startswith("phoenix-tasks-invoker@")
    # Light jobs touch only Firestore: no secrets mounted.
    assert "--set-secrets" not in " ".join(_job_deploys(plan)["creation-refund"])


def test_a_secret_in_the_env_file_is_refused_and_nothing_is_planned(project):
    result = project.run("--dry-run", env_values={**ENV, "R2_SECRET_ACCESS_KEY": "abc"}, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "R2_SECRET_ACCESS_KEY looks like a credential" in result.stderr
    assert "Secret Manager" in result.stderr


def test_each_missing_setting_gets_one_line_and_nothing_is_planned(project):
    result = project.run("--dry-run", env_values={"IMAGE_TAG": "x1"}, check=False)
    assert result.returncode == 1 and result.stdout == ""
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, result.stderr
    for key in ("R2_ENDPOINT_URL", "R2_BUCKET", "FIREBASE_PROJECT_ID", "PUBLIC_BASE_URL"):
        assert sum(key in p for p in problems) == 1, key
    missing = project.run("--dry-run", "--env-file", "nope.env", check=False)
    assert missing.returncode == 1 and "nope.env not found: cp deploy.env.example nope.env" in missing.stderr


def test_bad_arguments_are_refused_with_the_reason(project):
    assert "unknown part 'queue'" in project.run("--dry-run", "--only", "queue", check=False).stderr
    assert "not a region" in project.run("--dry-run", "--region", "mars", check=False).stderr
    assert "unknown argument '--force'" in project.run("--dry-run", "--force", check=False).stderr


def test_only_plans_the_named_parts_in_order(project):
    plan = project.plan("--only", "workflow", "queues")
    changes = [line for line in plan if " create " in line or " deploy " in line]
    assert [line.split()[1:3] for line in changes] == [
        ["tasks", "queues"],
        ["tasks", "queues"],
        ["workflows", "deploy"],
    ]


def test_the_dry_run_runs_no_gcloud(project, tmp_path):
    marker = tmp_path / "gcloud-was-called"
    bin_dir = tmp_path / "trap-bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (bin_dir / "gcloud").chmod(0o755)
    project.path_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    assert len(project.plan()) > 50
    assert len(project.plan("--destroy")) > 30
    assert not marker.exists()


def test_security_rules_are_released_only_when_the_file_exists(project):
    assert not any("firebaserules" in line for line in project.plan())
    (project.root / "firestore.rules").write_text("rules_version = '2';\n")
    plan = project.plan()
    assert "firebaserules.googleapis.com" in plan[first(plan, "gcloud services enable")]
    assert any(line.startswith("curl ") and "/rulesets" in line for line in plan)
    assert first(plan, "gcloud firestore databases create") < first(plan, "curl ")


def test_the_example_env_file_plans_on_a_fresh_checkout():
    import subprocess

    result = subprocess.run(["bash", "deploy.sh", "--dry-run", "--project", "demo-project", "--region", "us-central1",
                             "--env-file", "deploy.env.example"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PATH": os.environ["PATH"]}, timeout=120)
    if "uncommitted changes" in result.stderr:
        pytest.skip("the checkout has uncommitted changes: images are tagged with the commit")
    assert result.returncode == 0, result.stderr
    assert any(
        line.startswith("gcloud scheduler jobs create http phoenix-reconcile") for line in result.stdout.splitlines()
    )
