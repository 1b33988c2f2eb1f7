"""Credits in memory: balances, payments and the ledger, a part of `MemoryStore`."""

from __future__ import annotations

import time
from dataclasses import replace

from bot.storage.base import (
    GIVE_BACK,
    PURCHASE,
    REFUND,
    SPEND,
    SPEND_KEY_TTL,
    LedgerEntry,
    Payment,
    RefundOutcome,
    SpentWith,
)


class MemoryLedger:
    """The credit methods of `MemoryStore`."""

    def __init__(self) -> None:
        super().__init__()
        self._balances: dict[int, int] = {}
        self._payments: dict[str, Payment] = {}
        self._ledger: list[LedgerEntry] = []
        # Keyed spends (`debit(key=...)`, `note_free_spend`) -> when they are forgotten, and
        # what paid.
        self._spent: dict[str, tuple[float, SpentWith]] = {}

    # Credits: no await between reading and writing a balance, so each call is atomic.

    def _change(
        self,
        user_id: int,
        reason: str,
        amount: int,
        *,
        charge_id: str | None = None,
        stars: int = 0,
        note: str = "",
    ) -> LedgerEntry:
        before = self._balances.get(user_id, 0)
        entry = LedgerEntry(
            user_id, reason, amount, before, before + amount, time.time(), charge_id, stars, note
        )
        self._balances[user_id] = entry.after
        self._ledger.append(entry)
        return entry

    async def credit(
        self, user_id: int, amount: int, charge_id: str, *, stars: int, note: str = ""
    ) -> LedgerEntry | None:
        """Add a payment's credits once per `charge_id`; None if that charge was credited."""
        if charge_id in self._payments:
            return None
        entry = self._change(
            user_id, PURCHASE, amount, charge_id=charge_id, stars=stars, note=note
        )
        self._payments[charge_id] = Payment(charge_id, user_id, amount, stars, entry.at)
        return entry

    async def debit(
        self,
        user_id: int,
        reason: str = SPEND,
        *,
        amount: int = 1,
        note: str = "",
        key: str | None = None,
    ) -> LedgerEntry | None:
        """Take `amount` credits if the balance has them (atomically); None if it has not."""
        now = time.time()
        if key is not None and self._spent.get(key, (0.0, "credit"))[0] > now:
            balance = self._balances.get(user_id, 0)
            return LedgerEntry(user_id, reason, 0, balance, balance, now, note=note)
        if self._balances.get(user_id, 0) < amount:
            return None
        if key is not None:
            self._remember(key, "credit", now)
        return self._change(user_id, reason, -amount, note=note)

    def _remember(self, key: str, paid: SpentWith, now: float) -> None:
        if len(self._spent) > 10_000:
            self._spent = {k: v for k, v in self._spent.items() if v[0] > now}
        self._spent[key] = (now + SPEND_KEY_TTL, paid)

    async def note_free_spend(self, user_id: int, key: str) -> None:
        """Remember that `key`'s job used a free removal, beside `debit`'s keyed markers."""
        self._remember(key, "free", time.time())

    async def spent_under(self, key: str) -> SpentWith | None:
        """What the job named `key` was paid with (a free removal or a credit), if remembered."""
        until, paid = self._spent.get(key, (0.0, "credit"))
        return paid if until > time.time() else None

    async def give_back(
        self,
        user_id: int,
        reason: str = GIVE_BACK,
        *,
        amount: int = 1,
        note: str = "",
        key: str | None = None,
    ) -> LedgerEntry:
        """Return credits taken for a job that failed (and forget the `key` they were under)."""
        if key is not None:
            self._spent.pop(key, None)
        return self._change(user_id, reason, amount, note=note)

    async def refund(
        self, charge_id: str, reason: str = REFUND, *, partial: bool = False
    ) -> RefundOutcome:
        """Take a payment's credits back, once; refused if they are spent unless `partial`."""
        payment = self._payments.get(charge_id)
        if payment is None:
            return RefundOutcome("unknown")
        balance = self._balances.get(payment.user_id, 0)
        if payment.refunded is not None:
            return RefundOutcome("already_refunded", payment, balance=balance)
        if balance < payment.credits and not partial:
            return RefundOutcome("spent", payment, balance=balance)
        take = min(balance, payment.credits)
        entry = self._change(
            payment.user_id, reason, -take, charge_id=charge_id, stars=payment.stars
        )
        payment = replace(payment, refunded=entry.at)
        self._payments[charge_id] = payment
        return RefundOutcome("refunded", payment, entry, entry.after)

    async def balance(self, user_id: int) -> int:
        """A user's credits now."""
        return self._balances.get(user_id, 0)

    async def payment(self, charge_id: str) -> Payment | None:
        """The payment with this charge id, if it was credited."""
        return self._payments.get(charge_id)

    async def ledger(
        self, *, since: float = 0.0, until: float | None = None, user_id: int | None = None
    ) -> list[LedgerEntry]:
        """Ledger entries in [since, until), oldest first (optionally of one user)."""
        return [
            e
            for e in self._ledger
            if e.at >= since
            and (until is None or e.at < until)
            and (user_id is None or e.user_id == user_id)
        ]
