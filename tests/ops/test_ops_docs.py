"""docs/operations.md says only what `phoenix ops` does: its session is run against the local
stack (each line's exit status as documented), and every command and flag the CLI has is
documented (and nothing documented is missing from the CLI)."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
from ops_stack import OpsStack, marker
from test_ops_trace_replay import fail_upload

from phoenix.ops import EXIT_NEEDS_OPERATOR, EXIT_OK, EXIT_USAGE, _parser

pytestmark = pytest.mark.xdist_group("ops")

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def session() -> list[tuple[str, int, list[str]]]:
    """(command line, documented exit status, output lines shown under it) of the doc's session."""
    text = DOC.read_text()
    block = text.split("## A session", 1)[1].split("```console", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, int, list[str]]] = []
    for line in block.strip().splitlines():
        if line.startswith("$ phoenix ops"):
            command, _, status = line[2:].partition("# exit")
            steps.append((command.strip(), int(status), []))
        else:
            assert steps, f"output before any command: {line!r}"
            steps[-1][2].append(line)
    return steps


def test_the_documented_session_runs_as_documented(ops, ops_stack: OpsStack, stack):
    user = ops_stack.new_user(10)
    draft = ops_stack.submit(user, "a lighthouse for the docs")
    assert ops_stack.finish(draft)["state"] == "SUCCEEDED"
    outage = fail_upload(stack, user, "a harbour for the docs")
    blocked = ops_stack.submit(user, f"a #blocked scene for the docs {marker()}")
    assert ops_stack.finish(blocked)["state"] == "FAILED"
    values = {"$DATA": str(ops_stack.stack.config.data_dir), "$ENGINE": ops_stack.stack.urls["executions"],
              "$DRAFT": draft, "$OUTAGE": outage, "$BLOCKED": blocked}

    steps = session()
    assert len(steps) >= 10
    for command, status, shown in steps:
        argv = shlex.split(command)
        assert argv[:2] == ["phoenix", "ops"]
        argv = [values.get(a, a) for a in argv[2:]]
        run = ops(*argv)
        assert run.code == status, f"{command}: exit {run.code}, documented {status}\n{run.out}{run.err}"
        for line in shown:
            assert line.strip() in (run.out + run.err), f"{command}: {line!r} not printed:\n{run.out}{run.err}"
    # The documented replay of $OUTAGE started attempt 2: let it finish (the books must balance).
    assert ops_stack.finish(outage)["state"] == "SUCCEEDED"


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_and_flag_is_documented_and_every_documented_command_exists():
    text = DOC.read_text()
    commands = _commands()
    for name, sub in commands.items():
        assert f"phoenix ops {name}" in text, f"`phoenix ops {name}` is not documented"
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in text, f"`{name} {flag}` is not documented"
    documented = set(re.findall(r"phoenix ops (?:--\S+ \S+ )*([a-z]+)", text))
    assert documented <= set(commands), f"documented but not a command: {documented - set(commands)}"


def test_the_exit_status_table_is_the_cli_s():
    text = DOC.read_text()
    table = dict(re.findall(r"^\| (\d) \| (.+) \|$", text, re.M))
    assert set(table) == {str(EXIT_OK), str(EXIT_NEEDS_OPERATOR), str(EXIT_USAGE)}
    assert table[str(EXIT_OK)].startswith("done")
    assert table[str(EXIT_USAGE)].startswith("bad arguments")


def test_help_lists_every_documented_command(capsys):
    from phoenix.ops import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in _commands():
        assert name in out
