"""`phoenix ops audit`, in-process and as the real `phoenix` command (exit statuses included)."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import ROOT
from tests.support.stack import Stack

pytestmark = pytest.mark.xdist_group("ops")


@contextlib.contextmanager
def tampered_balance(stack: Stack, uid: str, extra: int) -> Iterator[None]:
    """The user's balance raised behind the ledger's back, straight in the SQLite file; put back after."""
    def add(amount: int) -> None:
        with contextlib.closing(sqlite3.connect(stack.settings.sqlite_path, timeout=30)) as db, db:
            changed = db.execute("UPDATE users SET tokens = tokens + ? WHERE uid = ?", (amount, uid)).rowcount
        assert changed == 1

    add(extra)
    try:
        yield
    finally:
        add(-extra)


def test_audit_passes_on_clean_books_and_names_the_user_whose_balance_was_tampered_with(ops, stack):
    user = stack.new_user(4)
    creation_id = stack.submit(user, "a stack of books")
    assert stack.finish(creation_id).state == "SUCCEEDED"

    clean = ops("audit")
    assert (clean.code, clean.out) == (0, "the books balance: every user's balance = grants - debits + refunds\n")

    spent = user.granted - stack.settings.cost_image
    with tampered_balance(stack, user.uid, 7):
        run = ops("audit")
        assert run.code == 1
        assert [line for line in run.out.splitlines() if user.uid in line] == [
            f"  {user.uid}: balance {spent + 7}, ledger says {spent}: "
            + next(f.detail for f in stack.store.audit() if f.uid == user.uid)]
    assert ops("audit").code == 0


def phoenix_command() -> list[str]:
    """The `phoenix` console script of this environment, else the module it runs."""
    script = Path(sys.executable).with_name("phoenix")
    return [str(script)] if script.exists() else [sys.executable, "-m", "phoenix.cli"]


def test_the_phoenix_command_exits_0_1_and_2(stack, ops_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")} | ops_env

    def phoenix(*argv: str, command: list[str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*(command or [sys.executable, "-m", "phoenix.cli"]), "ops", *argv], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    clean = phoenix("audit")
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("the books balance")

    user = stack.new_user(2)
    with tampered_balance(stack, user.uid, 1):
        broken = phoenix("audit", command=phoenix_command())
    assert broken.returncode == 1, broken.stderr
    assert f"  {user.uid}: balance 3, ledger says 2" in broken.stdout

    usage = phoenix("replay", "some-id", "--code", "CONTENT_POLICY")
    assert usage.returncode == 2
    assert "--code goes with --failed" in usage.stderr
