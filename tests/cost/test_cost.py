"""`phoenix cost`: the counts come from executions run here, the arithmetic is checked by hand,
bad parameters get clear errors."""
from __future__ import annotations

import json

import pytest

from devstack.costs import cli, measure, model, plan
from devstack.costs.model import Assumptions, JobRun, JobSize, Profile

POLICY = {"initial_delay": 2.0, "multiplier": 1.5, "max_delay": 15.0}


# --- counted from real executions -------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(firestore_emulator):
    return measure.measure(emulator=firestore_emulator)


def test_every_scenario_ends_as_a_user_would_see_it(measured):
    assert {name: run.status for name, run in measured.runs.items()} == {
        "image": "draft", "video": "draft", "content policy": "failed", "transient retry": "draft"}


def test_a_happy_creation_runs_six_jobs_and_a_refusal_runs_the_refund(measured):
    jobs = {name: [c.job for c in run.jobs] for name, run in measured.runs.items()}
    assert jobs["image"] == ["creation-debit-check", "creation-mark-processing", "creation-generate-image",
                             "creation-thumbnail", "creation-upload", "creation-finalize"]
    assert jobs["video"][2] == "creation-generate-video"
    assert jobs["content policy"] == ["creation-debit-check", "creation-mark-processing",
                                      "creation-generate-image", "creation-refund"]
    # #flaky fails twice with 503: the workflow's retry runs the generation job twice more
    assert jobs["transient retry"].count("creation-generate-image") == 3


def test_step_counts_are_the_executions_own(measured):
    runs = measured.runs
    assert runs["image"].workflow_steps == runs["video"].workflow_steps
    # each retry re-runs the call, its predicate's read and its backoff: more billable steps
    assert runs["transient retry"].workflow_steps > runs["image"].workflow_steps
    assert all(run.executions == 1 for run in runs.values())


def test_firestore_operations_are_counted_on_the_wire(measured):
    image, retry = measured.runs["image"].firestore, measured.runs["transient retry"].firestore
    assert image["reads"] > 0 and image["writes"] > 0
    # two failed generations each record an error (a write) the predicate then reads
    assert retry["writes"] > image["writes"] and retry["reads"] > image["reads"]


def test_the_polling_policy_is_the_yamls(measured):
    assert measured.polling_policy == POLICY


# --- the arithmetic, by hand ------------------------------------------------------------------


def test_polls_follow_the_policy():
    # polls at 0, 2, 5, 9.5, 16.25: a 12 s operation is seen by the fifth, 4.25 s late
    assert model.poll_times(12, POLICY) == [0, 2, 5, 9.5, 16.25]
    assert model.polls(12, POLICY) == 5
    assert model.poll_lag(12, POLICY) == pytest.approx(4.25)
    assert model.polls(0, POLICY) == 1
    # delays 2, 3, 4.5, 6.75, 10.125, then capped at 15: ..., 16.25, 26.375, 41.375
    assert model.poll_times(40, POLICY)[-3:] == [16.25, 26.375, 41.375]


def tiny_prices():
    prices = model.load_prices()
    return cli.no_free_tier(prices)


def test_usage_of_one_creation_by_hand():
    sizes = {"creation-a": JobSize(cpu=1, memory_gib=0.5, task_timeout_seconds=60, secrets=0),
             "creation-generate-image": JobSize(cpu=2, memory_gib=4, task_timeout_seconds=300, secrets=2)}
    profile = Profile("p", "image", workflow_steps=10,
                      jobs=(JobRun("creation-a", 0.75), JobRun("creation-generate-image", 0.75)),
                      firestore_reads=7, firestore_writes=3, executions=1)
    a = Assumptions(job_start_seconds=0, image_seconds=10)
    u = model.usage_of(profile, sizes, POLICY, a, model.load_prices())
    # job a: 0.75 s -> billed 0.8 s; generate: 0.75 + 10 = 10.75 s -> 10.8 s
    assert u.vcpu_seconds == pytest.approx(1 * 0.8 + 2 * 10.8)
    assert u.gib_seconds == pytest.approx(0.5 * 0.8 + 4 * 10.8)
    # polls: 0.75 s -> 2 (0, 2); 10.75 s -> 5 (0, 2, 5, 9.5, 16.25)
    assert u.steps == 10 + 2 + 5
    assert (u.secret_accesses, u.tasks_operations, u.job_runs) == (2, 2, 2)


def test_a_month_is_priced_with_each_free_tier_once():
    prices = model.load_prices()
    u = model.Usage(steps=15_000, vcpu_seconds=240_000 + 1000, gib_seconds=0, firestore_reads=1_500_000 + 100_000,
                    tasks_operations=500_000, secret_accesses=20_000)
    bill = model.price_month(u, prices)
    assert bill.lines["Workflows steps"] == pytest.approx(10 * 0.01)            # 10,000 steps over the free 5,000
    assert bill.lines["Cloud Run jobs"] == pytest.approx(1000 * 0.000018)
    assert bill.lines["Firestore"] == pytest.approx(1 * 0.03)                   # 100k reads over 50k/day x 30
    assert bill.lines["Cloud Tasks"] == 0
    assert bill.lines["Secret Manager"] == pytest.approx(1 * 0.03)              # 10k accesses over the free 10k
    assert bill.total == pytest.approx(0.1 + 0.018 + 0.03 + 0.03)


def test_break_even_is_where_the_cost_reaches_the_fixed_bill():
    # $0.01 a creation: $43 at 4,300 creations
    assert model.break_even(lambda v: sum(v.values()) * 0.01, 43.0, mix={"image": 1.0}) == 4300
    assert model.break_even(lambda v: 0.0, 43.0, mix={"image": 1.0}) is None


def test_capacity_names_what_binds_first():
    profiles = {"image": Profile("image", "image", 35, tuple(JobRun(f"j{i}", 1) for i in range(6)), 0, 0, 1)}
    caps = model.capacity(profiles, {"image": 100}, {"image": 120.0}, Assumptions(job_runs_per_minute=60))
    assert caps["job run requests per minute (quota)"] == pytest.approx(10)     # 60 runs / 6 per creation
    assert caps["running job executions per region"] == pytest.approx(500)     # 1,000 / 2 minutes each
    assert min(caps, key=caps.get) == "job run requests per minute (quota)"


def test_the_replaced_systems_projection_scales_with_the_volume():
    prices = model.load_prices()
    assert model.replaced_month({"image": 5000, "video": 1000}, prices)["projection"] == pytest.approx(3.30)
    assert model.replaced_month({"image": 10000, "video": 2000}, prices)["projection"] == pytest.approx(6.60)
    assert model.replaced_month({}, prices)["fixed"] == 43.0


def test_prices_name_their_source_and_date():
    prices = model.load_prices()
    assert prices["checked"]
    for name, section in prices.items():
        if isinstance(section, dict):
            assert section.get("source"), f"prices.toml [{name}] names no source"


# --- the deploy plan ---------------------------------------------------------------------------


def test_job_sizes_are_read_from_the_deploy_lines():
    sizes = plan.job_sizes(
        "gcloud services enable run.googleapis.com --project p\n"
        "gcloud run jobs deploy creation-generate-video --image i --cpu=2 --memory 4Gi --task-timeout 10m "
        "--set-secrets A=r2-key:latest,B=r2-secret:latest --max-retries 0\n"
        "gcloud run jobs deploy creation-refund --image i --cpu 0.5 --memory 512Mi --task-timeout 300s\n")
    assert sizes == {"creation-generate-video": JobSize(2.0, 4.0, 600.0, 2),
                     "creation-refund": JobSize(0.5, 0.5, 300.0, 0)}


def test_a_deploy_line_without_a_size_is_an_error():
    with pytest.raises(plan.PlanError, match="sets no --cpu"):
        plan.job_sizes("gcloud run jobs deploy creation-x --image i --memory 1Gi\n")
    with pytest.raises(plan.PlanError, match="deploys no Cloud Run job"):
        plan.job_sizes("echo nothing\n")


def test_deploy_sh_deploys_every_job_the_workflow_runs(measured):
    sizes = plan.read()
    ran = {c.job for run in measured.runs.values() for c in run.jobs}
    assert ran <= set(sizes), f"jobs the workflow runs but deploy.sh does not deploy: {ran - set(sizes)}"


def test_the_report_prices_the_measured_scenarios(measured):
    r = cli.report(cli.profiles_from(measured), plan.read(), measured.polling_policy,
                   Assumptions(failure_rate=0.02), model.load_prices(), {"image": 5000, "video": 1000})
    json.dumps(r)  # --json prints it
    assert r["per_creation"]["video"]["vcpu_seconds"] > r["per_creation"]["image"]["vcpu_seconds"]
    assert r["month"]["total"] == pytest.approx(sum(r["month"]["lines"].values()))
    assert r["replaced"]["fixed"] == 43.0
    assert r["binds_first"] in r["capacity_per_minute"]
    text = cli.render(r)
    assert "estimates" in text and "binds first" in text and "break-even" in text


# --- bad parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--failure-rate", "2"], "between 0 and 1"),
    (["--images", "-5"], "give 0 or more"),
    (["--videos", "many"], "not a whole number"),
    (["--job-start-seconds", "nan"], "not a finite number"),
    (["--job-start-seconds", "-1"], "0 or more seconds"),
    (["--job-runs-per-minute", "0"], "1 or more"),
])
def test_bad_parameters_get_a_clear_error(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_documented_commands_parse():
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "costs.md").read_text()
    commands = re.findall(r"phoenix cost([^\n`#]*)", doc)
    assert len(commands) >= 3
    for rest in commands:
        cli._parser().parse_args(shlex.split(rest))
