"""The store interface: creations, users' balances and the ledger, with the money-safety rules.

Two adapters implement it (SQLite, Firestore) and one contract test suite runs against both.
Every method that moves money is a single transaction and idempotent by ledger-entry id.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

from ..model import Creation, CreationError, LedgerEntry, Status


@dataclass(frozen=True)
class CreateResult:
    creation: Creation
    balance: int          # the user's balance after the debit
    replayed: bool        # True when an idempotency key matched an earlier identical request


@dataclass(frozen=True)
class AuditFinding:
    uid: str
    balance: int
    expected: int         # grants - debits + refunds
    detail: str


class Store(abc.ABC):
    """All persistence of the pipeline. Implementations must be safe across threads and processes."""

    # --- creations and money -------------------------------------------------------------

    @abc.abstractmethod
    def create_with_debit(
        self,
        creation: Creation,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        max_active: int | None = None,
    ) -> CreateResult:
        """In ONE transaction: (idempotency check) -> (active-limit check) -> balance check ->
        write the creation (attempt 1, status pending, charge.debited["1"] = True) -> write ledger
        entry `{id}:1:debit` -> decrement the user's tokens by `creation.cost`.

        - Same (uid, idempotency_key) and same request_hash as before: returns the first creation
          with replayed=True and the current balance; debits nothing.
        - Same key, different hash: raises IdempotencyConflict; writes nothing.
        - More than `max_active` creations of this user pending/processing: TooManyActive.
        - Not enough tokens: raises InsufficientTokens; writes nothing.
        - Keys are per user (the same key from two users is two keys). A replay whose first
          creation was deleted raises NotFound. An id that was ever used raises a CreationsError
          with code ALREADY_EXISTS.
        The creation is written as given except: status pending, attempt 1, charge
        {debited: {"1": True}, refunded: {}}, timestamps in UTC.
        """

    @abc.abstractmethod
    def get_creation(self, creation_id: str) -> Creation | None: ...

    @abc.abstractmethod
    def list_creations(
        self, uid: str, *, status: Status | None = None, limit: int = 20, page_token: str | None = None
    ) -> tuple[list[Creation], str | None]:
        """The user's creations, newest first (created_at desc, id desc); returns (items, next_page_token).
        A page token this store did not return, or a limit outside 1..100: InvalidOptions."""

    @abc.abstractmethod
    def update_creation(self, creation_id: str, mutate: Callable[[Creation], Creation | None]) -> Creation:
        """Read-modify-write in one transaction. `mutate` gets the current creation and returns the
        new one (or None: no write). It may raise (StaleAttempt, IllegalTransition, ...) to abort.
        The function may be called more than once (transaction retries): it must be pure.
        Raises NotFound if the creation does not exist. Changing id, uid, cost, created_at or
        charge, or lowering attempt, raises ValueError (money moves only through debit/refund).
        updated_at is stamped now unless `mutate` set it itself."""

    @abc.abstractmethod
    def delete_creation(self, creation_id: str) -> None:
        """Remove the creation record (ledger entries stay: the audit still balances; a later
        refund of its debit still works). Deleting a missing creation is a no-op."""

    @abc.abstractmethod
    def debit(self, creation_id: str, attempt: int) -> bool:
        """Take `cost` tokens for `attempt` (a replay pays again after its refund). Idempotent by
        `{id}:{attempt}:debit`. Returns True if it debited now, False if it already had.
        Raises InsufficientTokens (nothing written) or StaleAttempt if attempt != creation.attempt."""

    @abc.abstractmethod
    def refund(self, creation_id: str, attempt: int, *, fail_with: CreationError | None = None) -> bool:
        """Give back the debit of `attempt`, at most once (`{id}:{attempt}:refund`), in one transaction
        with charge.refunded[attempt] = True. Returns True if it refunded now; False if already
        refunded, nothing was debited for that attempt, or the creation is a draft of that attempt
        (a draft is never refunded). The amount is the debit's, from the ledger, so a deleted
        creation's debit is still refunded. With `fail_with`, a current attempt not yet terminal is
        marked failed in the same transaction (its recorded error kept, else `fail_with`)."""

    # --- users and the ledger --------------------------------------------------------------

    @abc.abstractmethod
    def grant(self, uid: str, amount: int, entry_id: str) -> int:
        """Add tokens (a ledger `grant` entry; idempotent by entry_id). Returns the new balance.
        `amount` must be positive (ValueError); an entry_id already used for another move raises
        IdempotencyConflict."""

    @abc.abstractmethod
    def balance(self, uid: str) -> int:
        """The user's tokens; 0 for an unknown user."""

    @abc.abstractmethod
    def ledger(self, uid: str) -> list[LedgerEntry]:
        """The user's ledger entries, oldest first."""

    @abc.abstractmethod
    def audit(self) -> list[AuditFinding]:
        """For every user: balance == grants - debits + refunds, and no creation has a refund
        without a debit. Returns the discrepancies (empty when the books balance): balances off
        the ledger, refunds without a debit, an attempt debited or refunded more than once (or
        refunded more than debited), and charge maps that disagree with the ledger."""

    # --- operations ------------------------------------------------------------------------

    @abc.abstractmethod
    def find_creations(self, *, statuses: list[Status], updated_before=None, limit: int = 100) -> list[Creation]:
        """Creations in the given statuses (any user), oldest update first; for the reconciler and
        bulk replay."""

    @abc.abstractmethod
    def search_creations(
        self,
        *,
        statuses: list[Status] | None = None,
        uid: str | None = None,
        created_from=None,
        created_before=None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> tuple[list[Creation], str | None]:
        """Any user's creations, newest first (created_at desc, id desc), for operators: in
        `statuses` (any when None), of `uid`, created in [created_from, created_before).
        Returns (items, next_page_token); `limit` 1..1000; a page token this store did not
        return: InvalidOptions."""

    def count_creations(self, *, uid: str | None = None, created_from=None, created_before=None,
                        types: list[str] | None = None, codes: list[str] | None = None) -> dict[str, int]:
        """How many creations there are per status (any user, or `uid`), created in
        [created_from, created_before), of one of `types`, with an error of one of `codes` (any
        when None): for operators' counts. This default pages through search_creations; the
        adapters count in the database."""
        counts: dict[str, int] = {s.value: 0 for s in Status}
        token = None
        while True:
            page, token = self.search_creations(uid=uid, created_from=created_from, created_before=created_before,
                                                limit=1000, page_token=token)
            for creation in page:
                if types is not None and creation.type.value not in types:
                    continue
                if codes is not None and (creation.error is None or creation.error.code not in codes):
                    continue
                counts[creation.status.value] += 1
            if token is None:
                return counts

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
