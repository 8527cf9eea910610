"""docs/api.md's example session runs as written against a local stack: every command of its
console block, in order, through the shell, with the documented answers (ids, URLs and elided
parts aside)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.stack import running_stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOC_ID = re.compile(r"\b[0-9a-f]{32}\b")
UNCHECKED = {"id", "url", "thumbnailUrl", "bytes", "createdAt", "updatedAt"}   # differ on every run


def session() -> list[tuple[str, str]]:
    """(command, expected output) pairs of the console block that follows 'An example session'."""
    text = DOC.read_text()
    block = text[text.index("An example session"):]
    block = block[block.index("```console\n") + len("```console\n"):]
    block = block[:block.index("\n```")]
    pairs: list[tuple[str, str]] = []
    command = None
    for line in block.splitlines():
        if line.startswith("$ "):
            command = line[2:]
            pairs.append((command, ""))
        elif command is not None and pairs[-1][0].endswith("\\"):
            pairs[-1] = (pairs[-1][0][:-1] + line.strip(), "")
        else:
            pairs[-1] = (pairs[-1][0], (pairs[-1][1] + "\n" + line).strip())
    return pairs


def documented_pairs(expected: str) -> dict[str, object]:
    """The "key": scalar pairs an expected answer shows (it may be elided with '...')."""
    pairs = {}
    for key, raw in re.findall(r'"(\w+)":("(?:[^"\\]|\\.)*"|-?\d+|true|false|null)', expected):
        value = json.loads(raw)
        if key not in UNCHECKED and not (isinstance(value, str) and "..." in value):
            pairs[key] = value
    return pairs


def found_pairs(answer: object) -> dict[str, list]:
    out: dict[str, list] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                out.setdefault(k, []).append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(answer)
    return out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_example_session_runs_as_documented(tmp_path):
    pairs = session()
    assert len(pairs) >= 8, "docs/api.md's example session lost its commands"
    with running_stack(tmp_path / ".data", jobs_mode="inprocess", clock="real", instant_generation=True) as stack:
        api = stack.urls["api"].removeprefix("http://")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        ids: dict[str, str] = {}
        state = "set -e"                             # and the shell variables the session sets (TOKEN, H)
        for command, expected in pairs:
            for doc_id in DOC_ID.findall(command):
                command = command.replace(doc_id, ids[doc_id])
                _wait_settled(stack.urls["api"], ids[doc_id], env, state, tmp_path)
            command = command.replace("localhost:8080", api)
            out = subprocess.run(["bash", "-c", f"{state}\n{command}"], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 0, f"{command!r} failed: {out.stderr}"
            if "=" in command.split()[0]:            # an assignment: keep it for the next commands
                state = f"{state}\n{command}"
                continue
            _check(command, expected, out.stdout.strip(), ids)


def _check(command: str, expected: str, actual: str, ids: dict[str, str]) -> None:
    if not expected.startswith("{"):
        assert actual == expected, f"{command!r} printed {actual!r}, the docs say {expected!r}"
        return
    answer = json.loads(actual)
    for doc_id in DOC_ID.findall(expected):           # an id the docs use later: the one made now
        if isinstance(answer, dict) and "id" in answer and doc_id not in ids:
            ids[doc_id] = answer["id"]
    found = found_pairs(answer)
    for key, value in documented_pairs(expected).items():
        assert value in found.get(key, []), f"{command!r}: {key} is {found.get(key)}, the docs say {value!r}"
    for key, value in re.findall(r'"(\w+)":"([^"]*)\.\.\."', expected):   # elided messages: their start
        if key in UNCHECKED:
            continue
        assert any(str(v).startswith(value) for v in found.get(key, [])), f"{command!r}: {key} starts otherwise"


def _wait_settled(api_url: str, creation_id: str, env: dict, state: str, cwd: Path) -> None:
    """The session reads a creation after its pipeline ran: wait for it to leave pending/processing."""
    token = subprocess.run(["bash", "-c", f"{state}\necho \"$TOKEN\""], cwd=cwd, env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = httpx.get(f"{api_url}/v1/creations/{creation_id}",
                           headers={"Authorization": f"Bearer {token}"}).json().get("status")
        if status in ("draft", "failed"):
            return
        time.sleep(0.1)
    raise AssertionError(f"creation {creation_id} did not settle within 60 s")
