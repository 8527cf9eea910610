"""`phoenix workflow run|check` as a developer runs it: a real subprocess, exit codes, stdout
and stderr."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]

GREETER = """\
main:
  params: [args]
  steps:
    - say:
        call: sys.log
        args:
          text: ${"greeting " + args.name}
          severity: INFO
    - build:
        assign:
          - greeting: ${sys.get_env("PREFIX") + " " + args.name}
    - done:
        return:
          greeting: ${greeting}
          count: ${len(args.items)}
"""


def phoenix(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phoenix.cli", "workflow", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_run_prints_the_result_as_json(tmp_path: Path):
    flow = tmp_path / "greeter.yaml"
    flow.write_text(GREETER)
    done = phoenix("run", str(flow), "--data", '{"name": "Ann", "items": [1, 2]}',
                   "--env", "PREFIX=Hello")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "Hello Ann", "count": 2}
    assert "[INFO] greeting Ann" in done.stderr


def test_run_with_data_file_and_trace(tmp_path: Path):
    flow = tmp_path / "greeter.yaml"
    flow.write_text(GREETER)
    data = tmp_path / "data.json"
    data.write_text('{"name": "Bo", "items": []}')
    done = phoenix("run", str(flow), "--data-file", str(data), "--env", "PREFIX=Hi", "--trace",
                   "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "Hi Bo", "count": 0}
    lines = done.stderr.splitlines()
    assert "greeting" not in done.stderr.split("step entries:")[0]   # --quiet hid the log
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("say", "STEP_STD_LIB_CALL", "STATE_SUCCEEDED"),
        ("build", "STEP_ASSIGN", "STATE_SUCCEEDED"),
        ("done", "STEP_RETURN", "STATE_SUCCEEDED"),
    ]
    assert all(r[3].endswith("s") for r in rows)


def test_failed_execution_prints_error_payload_and_exits_1(tmp_path: Path):
    flow = tmp_path / "fail.yaml"
    flow.write_text("- boom:\n    raise:\n      code: 3\n      message: no tokens\n")
    done = phoenix("run", str(flow))
    assert done.returncode == 1
    assert done.stdout == ""
    assert json.loads(done.stderr) == {"code": 3, "message": "no tokens"}


def test_file_that_does_not_load_exits_2_with_every_problem(tmp_path: Path):
    flow = tmp_path / "creation.yaml"
    flow.write_text("main:\n  steps:\n    - a:\n        asign: []\n    - b:\n        next: zz\n")
    done = phoenix("run", str(flow))
    assert done.returncode == 2
    assert "creation.yaml:4 step 'a': unknown key 'asign' (did you mean 'assign'?)" in done.stderr
    assert "creation.yaml:6 step 'b': next: 'zz' is not a step" in done.stderr
    checked = phoenix("check", str(flow))
    assert checked.returncode == 2 and "unknown key 'asign'" in checked.stderr
    missing = phoenix("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read the workflow file" in missing.stderr


def test_bad_flags_exit_2_with_a_clear_message(tmp_path: Path):
    flow = tmp_path / "ok.yaml"
    flow.write_text("- r:\n    return: 1\n")
    cases = [
        (["run", str(flow), "--data", "{broken"], "--data is not valid JSON"),
        (["run", str(flow), "--env", "NOVALUE"], "--env 'NOVALUE': expected KEY=VALUE"),
        (["run", str(flow), "--env", "GOOGLE_THING=1"], "names starting with GOOGLE"),
        (["run", str(flow), "--data", "{}", "--data-file", "x.json"], "not allowed with"),
        (["run", str(flow), "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["run"], "the following arguments are required: file"),
        (["launch", str(flow)], "invalid choice: 'launch'"),
    ]
    for args, message in cases:
        done = phoenix(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)


def test_check_accepts_a_valid_file(tmp_path: Path):
    flow = tmp_path / "ok.yaml"
    flow.write_text("main:\n  steps:\n    - r:\n        return: 1\nhelper:\n  steps:\n"
                    "    - r:\n        return: 2\n")
    done = phoenix("check", str(flow))
    assert done.returncode == 0
    assert "OK (2 workflow(s): main, helper)" in done.stdout


def test_serve_deploys_files_and_answers_rest_calls(tmp_path: Path):
    flow = tmp_path / "doubler.yaml"
    flow.write_text("main:\n  params: [args]\n  steps:\n    - r:\n        return: "
                    "${args.n * 2}\n")
    proc = subprocess.Popen([sys.executable, "-m", "phoenix.cli", "workflow", "serve",
                             str(flow)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith(
            "deployed projects/phoenix-local/locations/us-central1/workflows/doubler")
        banner = proc.stdout.readline()
        assert banner.startswith("serving the Executions API: REST http://127.0.0.1:")
        base = banner.split()[5]
        parent = "projects/phoenix-local/locations/us-central1/workflows/doubler"
        created = httpx.post(f"{base}/v1/{parent}/executions", json={"argument": '{"n": 4}'},
                             timeout=10).json()
        for _ in range(500):
            execution = httpx.get(f"{base}/v1/{created['name']}", timeout=10).json()
            if execution["state"] == "SUCCEEDED":
                break
        assert execution["state"] == "SUCCEEDED" and execution["result"] == "8"
    finally:
        proc.terminate()
        proc.wait(10)
