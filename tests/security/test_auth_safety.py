"""Production-safe configuration: nobody can be anybody.

Local (HMAC) tokens exist only when asked for with a secret of the deployment's own; the API and
the step jobs refuse to start on unsafe mixes of production and local settings, with one line
naming the variable to set; every uid passes one rule wherever it enters.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_stack import SECRET

from api.auth import make_local_token
from creations.uids import uid_problem
from devstack import cli as dev_cli
from devstack.stack import local_auth_secret

ROOT = Path(__file__).resolve().parents[2]
STRONG = "k" * 43


def _clean_env(**values: str) -> dict[str, str]:
    """The caller's environment without any PHOENIX_* or Cloud Run variable, plus `values`."""
    drop = ("PHOENIX_", "K_SERVICE", "FIRESTORE_EMULATOR_HOST", "PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(command: list[str], env: dict[str, str], port: int) -> tuple[int | None, str]:
    """Run a server command; (exit status, stderr) if it exits, (None, "") if it serves /healthz."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc.returncode, proc.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    return None, ""
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"{command} neither served nor exited")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        proc.stderr.close()


def _local(**extra: str) -> dict[str, str]:
    return {"PHOENIX_AUTH_MODE": "local", "PHOENIX_LOCAL_AUTH_SECRET": STRONG, **extra}


# Each unsafe configuration, and the variable the refusal must name.
UNSAFE = {
    "nothing set (was: local tokens with a public secret)": ({}, "PHOENIX_FIREBASE_PROJECT_ID"),
    "local auth without a secret": ({"PHOENIX_AUTH_MODE": "local"}, "PHOENIX_LOCAL_AUTH_SECRET"),
    "local auth with the once-public secret": (
        {"PHOENIX_AUTH_MODE": "local", "PHOENIX_LOCAL_AUTH_SECRET": "phoenix-local-dev-secret"},
        "PHOENIX_LOCAL_AUTH_SECRET"),
    "local auth with a short secret": (
        {"PHOENIX_AUTH_MODE": "local", "PHOENIX_LOCAL_AUTH_SECRET": "short"}, "PHOENIX_LOCAL_AUTH_SECRET"),
    "local auth bound outside loopback": (_local(PHOENIX_HOST="0.0.0.0"), "PHOENIX_AUTH_MODE"),
    "local auth with the Firestore store": (_local(PHOENIX_STORE="firestore"), "PHOENIX_AUTH_MODE"),
    "local auth with the Cloud Tasks trigger": (_local(PHOENIX_TRIGGER="tasks"), "PHOENIX_AUTH_MODE"),
    "local auth on Cloud Run": (_local(K_SERVICE="creations-api"), "PHOENIX_AUTH_MODE"),
    "local engine trigger with the Firestore store": (
        {"PHOENIX_FIREBASE_PROJECT_ID": "p", "PHOENIX_STORE": "firestore", "PHOENIX_TRIGGER": "local"},
        "PHOENIX_TRIGGER"),
    "SQLite store on Cloud Run": (
        {"PHOENIX_FIREBASE_PROJECT_ID": "p", "PHOENIX_TRIGGER": "tasks", "K_SERVICE": "creations-api"},
        "PHOENIX_STORE"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_the_api_refuses_to_start_on_unsafe_settings_with_one_line_naming_the_variable(case, tmp_path):
    values, variable = UNSAFE[case]
    port = _free_port()
    env = _clean_env(PORT=str(port), PHOENIX_SQLITE_PATH=str(tmp_path / "db.sqlite3"), **values)
    status, stderr = _serve([sys.executable, "-m", "api"], env, port)
    assert status == 2, f"{case}: the API started (or crashed otherwise): {stderr}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and lines[0].startswith("phoenix api: refusing to start"), stderr


def test_uvicorn_serving_the_module_app_refuses_too(tmp_path):
    port = _free_port()
    env = _clean_env(PHOENIX_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    status, stderr = _serve([sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)], env, port)
    assert status not in (None, 0)
    assert "refusing to start" in stderr and "PHOENIX_FIREBASE_PROJECT_ID" in stderr
    assert "Traceback" not in stderr


def test_explicit_local_settings_on_loopback_serve(tmp_path):
    port = _free_port()
    env = _clean_env(PORT=str(port), PHOENIX_SQLITE_PATH=str(tmp_path / "db.sqlite3"), **_local())
    status, stderr = _serve([sys.executable, "-m", "api"], env, port)
    assert status is None, stderr


def _non_loopback_address() -> str | None:
    for target in ("10.255.255.255", "192.0.2.1", "8.8.8.8"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((target, 9))  # UDP: no packet is sent, this only picks the interface
            except OSError:
                continue
            address = probe.getsockname()[0]
        if not address.startswith("127.") and address != "0.0.0.0":
            return address
    return None


def test_local_tokens_are_refused_on_a_non_loopback_address_when_the_bind_was_not_checked(tmp_path):
    # `uvicorn api.main:app --host 0.0.0.0` cannot tell the app where it listens; the edge refuses
    # local tokens on any connection that did not come in over loopback.
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    port = _free_port()
    env = _clean_env(PHOENIX_SQLITE_PATH=str(tmp_path / "db.sqlite3"), **_local())
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        auth = {"Authorization": f"Bearer {make_local_token('alice', STRONG)}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                local = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers=auth, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "the API did not start"
                time.sleep(0.1)
        assert local.status_code == 200
        remote = httpx.get(f"http://{address}:{port}/v1/me", headers=auth, timeout=5)
        assert remote.status_code == 401
        assert "loopback" in remote.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_api_image_sets_production_settings_and_serves_with_the_limits():
    dockerfile = (ROOT / "api" / "Dockerfile").read_text()
    env = dict(re.findall(r"\b(PHOENIX_[A-Z_]+)=(\S+)", dockerfile.split("\nENV", 1)[1].split("\n\n", 1)[0]))
    assert env == {"PHOENIX_AUTH_MODE": "firebase", "PHOENIX_STORE": "firestore", "PHOENIX_TRIGGER": "tasks",
                   "PHOENIX_HOST": "0.0.0.0"}
    assert re.search(r'^CMD \["python", "-m", "api"\]$', dockerfile, re.M)


def test_the_api_image_without_deployment_values_refuses_to_start(tmp_path):
    port = _free_port()
    image_env = {"PHOENIX_AUTH_MODE": "firebase", "PHOENIX_STORE": "firestore", "PHOENIX_TRIGGER": "tasks",
                 "PHOENIX_HOST": "0.0.0.0", "K_SERVICE": "creations-api"}
    status, stderr = _serve([sys.executable, "-m", "api"], _clean_env(PORT=str(port), **image_env), port)
    assert status == 2 and "PHOENIX_FIREBASE_PROJECT_ID" in stderr


@pytest.mark.parametrize("values, variable", [
    ({"PHOENIX_STORE": "firestore", "PHOENIX_GENAI_BASE_URL": "http://127.0.0.1:9"}, "PHOENIX_GENAI_BASE_URL"),
    ({"PHOENIX_STORE": "firestore", "PHOENIX_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, "PHOENIX_S3_ENDPOINT_URL"),
])
def test_a_step_job_refuses_unsafe_settings_before_touching_anything(values, variable, tmp_path):
    env = _clean_env(PHOENIX_SQLITE_PATH=str(tmp_path / "db.sqlite3"), **values)
    done = subprocess.run([sys.executable, "-m", "steps.debit_check", "--creation-id", "c1", "--attempt", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to run" in done.stdout and variable in done.stdout
    assert not (tmp_path / "db.sqlite3").exists()


# --- the local secret ---------------------------------------------------------------------------


def test_each_data_dir_gets_its_own_private_random_secret(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    secret = local_auth_secret(first)
    assert local_auth_secret(first) == secret  # stable across restarts of the stack
    assert local_auth_secret(second) != secret
    assert len(secret) >= 32
    assert stat.S_IMODE((first / "local-auth-secret").stat().st_mode) == 0o600


def test_dev_token_signs_with_the_data_dirs_secret_and_needs_one(tmp_path, capsys):
    assert dev_cli.main(["token", "alice", "--data-dir", str(tmp_path / "never-started")]) == 2
    assert "phoenix dev --data-dir" in capsys.readouterr().err
    secret = local_auth_secret(tmp_path / "stack")
    assert dev_cli.main(["token", "alice", "--data-dir", str(tmp_path / "stack")]) == 0
    assert capsys.readouterr().out.strip() == make_local_token("alice", secret)


def test_a_token_signed_with_the_once_public_secret_is_refused(api):
    token = make_local_token("alice", "phoenix-local-dev-secret")
    response = httpx.get(f"{api.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


# --- bearer tokens and uids ---------------------------------------------------------------------


def _signed(uid_bytes: bytes) -> str:
    """A local token for any uid bytes, signed with the test API's secret (as a forger who knew
    the secret, or an old minting tool, would make it)."""
    b64 = base64.urlsafe_b64encode(uid_bytes).rstrip(b"=").decode()
    payload = f"local.{b64}"
    signature = base64.urlsafe_b64encode(hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature.rstrip(b'=').decode()}"


@pytest.mark.parametrize("raw", [
    "Bearer local.YWxpY2U.é".encode(),     # the signature part is compared: it must not raise
    "Bearer local.YWxpY2U.é".encode("latin-1"),
    b"Bearer local.YWxpY2U.\xff\xfe",
    "Bearer local.é.x".encode(),
    b"Bearer " + "ключ".encode(),
])
def test_a_non_ascii_bearer_token_is_401_not_500(api, raw):
    response = httpx.get(f"{api.url}/v1/me", headers={"Authorization": raw})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("uid", ["..", ".", "__admin__", "a/b", "x" * 129, "tab\there"])
def test_a_validly_signed_token_for_an_unusable_uid_is_401_not_500(api, uid):
    response = httpx.get(f"{api.url}/v1/me", headers={"Authorization": f"Bearer {_signed(uid.encode())}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


def test_a_token_for_a_usable_uid_signed_the_same_way_is_accepted(api):
    response = httpx.get(f"{api.url}/v1/me", headers={"Authorization": f"Bearer {_signed(b'alice.smith')}"})
    assert response.status_code == 200 and response.json()["uid"] == "alice.smith"


@pytest.mark.parametrize("uid", ["..", ".", "__admin__", "a/b", "x" * 129, "nul\x00", "\ud800"])
def test_one_uid_rule_for_local_tokens_and_grants(uid, tmp_path):
    assert uid_problem(uid) is not None
    with pytest.raises(ValueError):
        make_local_token(uid, STRONG)
    with pytest.raises(SystemExit) as exited:
        dev_cli.main(["grant", uid, "5", "--data-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert not (tmp_path / "phoenix.sqlite3").exists()


@pytest.mark.parametrize("uid", ["alice", "user-1", "9f8e7d6c5b4a", "a" * 128, "dot.ted", "émile"])
def test_usable_uids_pass_the_rule(uid):
    assert uid_problem(uid) is None
