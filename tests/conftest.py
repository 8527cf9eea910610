"""Shared by every test area: after each test, the ledger of every local stack it used balances."""
from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _books_balance():
    """Every local stack a test used ends it with clean books: balance = grants - debits + refunds."""
    yield
    support = sys.modules.get("tests.support.stack")
    if support is None:
        return          # no stack was started in this process
    for stack in support.touched_stacks():
        findings = stack.audit()
        assert findings == [], f"the ledger audit found discrepancies: {findings}"
