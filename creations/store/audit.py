"""The books check both adapters run: balances against the ledger, and the ledger against charges.

Pure: the adapter reads balances, ledger entries and creations' charge maps; this finds what does
not add up.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..model import EntryKind, LedgerEntry
from .base import AuditFinding


@dataclass(frozen=True)
class ChargeRecord:
    """A live creation's charge map: which attempts it says were debited / refunded."""

    creation_id: str
    uid: str
    debited: Mapping[str, bool]
    refunded: Mapping[str, bool]


def find_discrepancies(
    balances: Mapping[str, int], entries: Iterable[LedgerEntry], charges: Iterable[ChargeRecord]
) -> list[AuditFinding]:
    grants: dict[str, int] = defaultdict(int)
    debits_total: dict[str, int] = defaultdict(int)
    refunds_total: dict[str, int] = defaultdict(int)
    debits: dict[tuple[str, int], list[LedgerEntry]] = defaultdict(list)
    refunds: dict[tuple[str, int], list[LedgerEntry]] = defaultdict(list)
    for e in entries:
        if e.kind is EntryKind.GRANT:
            grants[e.uid] += e.amount
        elif e.kind is EntryKind.DEBIT:
            debits_total[e.uid] += e.amount
            debits[(e.creation_id or "", e.attempt or 0)].append(e)
        else:
            refunds_total[e.uid] += e.amount
            refunds[(e.creation_id or "", e.attempt or 0)].append(e)

    uids = set(balances) | set(grants) | set(debits_total) | set(refunds_total)
    expected = {u: grants[u] - debits_total[u] + refunds_total[u] for u in uids}
    findings: list[AuditFinding] = []

    def finding(uid: str, detail: str) -> None:
        findings.append(AuditFinding(uid=uid, balance=balances.get(uid, 0), expected=expected.get(uid, 0),
                                     detail=detail))

    for uid in sorted(uids):
        if balances.get(uid, 0) != expected[uid]:
            finding(uid, f"balance {balances.get(uid, 0)} but the ledger gives {expected[uid]} "
                         f"(grants {grants[uid]} - debits {debits_total[uid]} + refunds {refunds_total[uid]})")

    for (cid, attempt), items in sorted(debits.items()):
        if len(items) > 1:
            finding(items[0].uid, f"creation {cid} attempt {attempt} was debited {len(items)} times "
                                  f"(entries {', '.join(sorted(e.id for e in items))})")
    for (cid, attempt), items in sorted(refunds.items()):
        uid = items[0].uid
        if len(items) > 1:
            finding(uid, f"creation {cid} attempt {attempt} was refunded {len(items)} times "
                         f"(entries {', '.join(sorted(e.id for e in items))})")
        paid = debits.get((cid, attempt))
        if not paid:
            finding(uid, f"creation {cid} attempt {attempt} has a refund without a debit")
        elif sum(e.amount for e in items) > sum(e.amount for e in paid):
            finding(uid, f"creation {cid} attempt {attempt} refunded {sum(e.amount for e in items)} "
                         f"but was debited {sum(e.amount for e in paid)}")

    debited_attempts: dict[str, set[int]] = defaultdict(set)
    for cid, attempt in debits:
        debited_attempts[cid].add(attempt)
    refunded_attempts: dict[str, set[int]] = defaultdict(set)
    for cid, attempt in refunds:
        refunded_attempts[cid].add(attempt)
    for c in charges:
        for attempt, flag in sorted(c.debited.items()):
            has = (c.creation_id, int(attempt)) in debits
            if flag and not has:
                finding(c.uid, f"creation {c.creation_id} says attempt {attempt} was debited; the ledger has no debit")
        for attempt, flag in sorted(c.refunded.items()):
            has = (c.creation_id, int(attempt)) in refunds
            if flag and not has:
                finding(
                    c.uid, f"creation {c.creation_id} says attempt {attempt} was refunded; the ledger has no refund"
                )
            if flag and not c.debited.get(attempt):
                finding(c.uid, f"creation {c.creation_id} says attempt {attempt} was refunded but not debited")
        for attempt in sorted(debited_attempts.get(c.creation_id, ())):
            if not c.debited.get(str(attempt)):
                finding(c.uid, f"the ledger debited creation {c.creation_id} attempt {attempt}; "
                               "its charge map does not say so")
        for attempt in sorted(refunded_attempts.get(c.creation_id, ())):
            if not c.refunded.get(str(attempt)):
                finding(c.uid, f"the ledger refunded creation {c.creation_id} attempt {attempt}; "
                               "its charge map does not say so")
    return findings
