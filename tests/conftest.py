"""Shared by every test area: after each test, the ledger of every local stack it used balances."""
from __future__ import annotations

import pytest

from tests.support.stack import touched_stacks


@pytest.fixture(autouse=True)
def _books_balance():
    """Every local stack a test used ends it with clean books: balance = grants - debits + refunds."""
    yield
    for stack in touched_stacks():
        findings = stack.audit()
        assert findings == [], f"the ledger audit found discrepancies: {findings}"
