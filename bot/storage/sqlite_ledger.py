"""Credits in SQLite: balances, payments and the ledger, a part of `SqliteStore`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

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

T = TypeVar("T")

# The value of a keyed spend's marker when a free removal paid (a credit's is the user id).
_FREE = "free"


class Database(Protocol):
    """What the ledger needs of the store's database: whole transactions in its thread."""

    async def run(self, op: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run `op` as one transaction."""
        ...


class SqliteLedger:
    """The credit methods of `SqliteStore`, on the database the store opens."""

    db: Database

    async def _run(self, op: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        return await self.db.run(op, write=write)

    # Credits. Every change is one BEGIN IMMEDIATE transaction: the write lock of the file,
    # so two connections (or processes) never interleave a read and a write of a balance.

    async def credit(
        self, user_id: int, amount: int, charge_id: str, *, stars: int, note: str = ""
    ) -> LedgerEntry | None:
        """Add a payment's credits once per `charge_id`; None if that charge was credited."""

        def op(conn: sqlite3.Connection) -> LedgerEntry | None:
            now = time.time()
            added = conn.execute(
                "INSERT INTO payments (charge_id, user_id, credits, stars, at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (charge_id) DO NOTHING",
                (charge_id, user_id, amount, stars, now),
            ).rowcount
            if not added:
                return None
            return _change(conn, user_id, PURCHASE, amount, now, charge_id, stars, note)

        return await self._run(op)

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

        def op(conn: sqlite3.Connection) -> LedgerEntry | None:
            now = time.time()
            if (
                key is not None
                and conn.execute(
                    "SELECT 1 FROM kv WHERE ns = 'spent' AND key = ? AND expires > ?", (key, now)
                ).fetchone()
            ):
                balance = _balance(conn, user_id)
                return LedgerEntry(user_id, reason, 0, balance, balance, now, note=note)
            row = conn.execute(
                "UPDATE credit_balances SET balance = balance - ? "
                "WHERE user_id = ? AND balance >= ? RETURNING balance",
                (amount, user_id, amount),
            ).fetchone()
            if row is None:
                return None
            after = int(row[0])
            entry = LedgerEntry(user_id, reason, -amount, after + amount, after, now, note=note)
            _insert_entry(conn, entry)
            if key is not None:
                # The marker that a replay of the same request finds (see `StateStore.debit`).
                marker = (
                    "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES ('spent', ?, ?, ?)"
                )
                conn.execute(marker, (key, str(user_id), now + SPEND_KEY_TTL))
            return entry

        return await self._run(op)

    async def note_free_spend(self, user_id: int, key: str) -> None:
        """Remember that `key`'s job used a free removal, beside `debit`'s keyed markers."""
        # The same marker row as a keyed debit's, whose value is the user id: 'free' tells
        # them apart.
        marker = "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES ('spent', ?, ?, ?)"
        await self._run(lambda c: c.execute(marker, (key, _FREE, time.time() + SPEND_KEY_TTL)))

    async def spent_under(self, key: str) -> SpentWith | None:
        """What the job named `key` was paid with (a free removal or a credit), if remembered."""
        row = await self._run(
            lambda c: c.execute(
                "SELECT value FROM kv WHERE ns = 'spent' AND key = ? AND expires > ?",
                (key, time.time()),
            ).fetchone(),
            write=False,
        )
        if row is None:
            return None
        return "free" if row[0] == _FREE else "credit"

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

        def op(conn: sqlite3.Connection) -> LedgerEntry:
            if key is not None:
                conn.execute("DELETE FROM kv WHERE ns = 'spent' AND key = ?", (key,))
            return _change(conn, user_id, reason, amount, time.time(), None, 0, note)

        return await self._run(op)

    async def refund(
        self, charge_id: str, reason: str = REFUND, *, partial: bool = False
    ) -> RefundOutcome:
        """Take a payment's credits back, once; refused if they are spent unless `partial`."""

        def op(conn: sqlite3.Connection) -> RefundOutcome:
            payment = _payment(conn, charge_id)
            if payment is None:
                return RefundOutcome("unknown")
            balance = _balance(conn, payment.user_id)
            if payment.refunded is not None:
                return RefundOutcome("already_refunded", payment, balance=balance)
            if balance < payment.credits and not partial:
                return RefundOutcome("spent", payment, balance=balance)
            now = time.time()
            take = min(balance, payment.credits)
            entry = _change(
                conn, payment.user_id, reason, -take, now, charge_id, payment.stars, ""
            )
            conn.execute("UPDATE payments SET refunded = ? WHERE charge_id = ?", (now, charge_id))
            refunded = Payment(
                payment.charge_id, payment.user_id, payment.credits, payment.stars, payment.at, now
            )
            return RefundOutcome("refunded", refunded, entry, entry.after)

        return await self._run(op)

    async def balance(self, user_id: int) -> int:
        """A user's credits now."""
        return await self._run(lambda c: _balance(c, user_id), write=False)

    async def payment(self, charge_id: str) -> Payment | None:
        """The payment with this charge id, if it was credited."""
        return await self._run(lambda c: _payment(c, charge_id), write=False)

    async def ledger(
        self, *, since: float = 0.0, until: float | None = None, user_id: int | None = None
    ) -> list[LedgerEntry]:
        """Ledger entries in [since, until), oldest first (optionally of one user)."""

        def op(conn: sqlite3.Connection) -> list[LedgerEntry]:
            rows = conn.execute(
                "SELECT user_id, reason, amount, before, after, at, charge_id, stars, note "
                "FROM ledger WHERE at >= ? AND at < ? AND (? IS NULL OR user_id = ?) "
                "ORDER BY id",
                (since, float("inf") if until is None else until, user_id, user_id),
            ).fetchall()
            return [
                LedgerEntry(
                    int(u),
                    str(r),
                    int(a),
                    int(b),
                    int(f),
                    float(t),
                    None if c is None else str(c),
                    int(s),
                    str(n),
                )
                for u, r, a, b, f, t, c, s, n in rows
            ]

        return await self._run(op, write=False)


def _balance(conn: sqlite3.Connection, user_id: int) -> int:
    row = conn.execute(
        "SELECT balance FROM credit_balances WHERE user_id = ?", (user_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _payment(conn: sqlite3.Connection, charge_id: str) -> Payment | None:
    row = conn.execute(
        "SELECT charge_id, user_id, credits, stars, at, refunded FROM payments "
        "WHERE charge_id = ?",
        (charge_id,),
    ).fetchone()
    if row is None:
        return None
    c, u, n, s, a, r = row
    return Payment(str(c), int(u), int(n), int(s), float(a), None if r is None else float(r))


def _insert_entry(conn: sqlite3.Connection, entry: LedgerEntry) -> None:
    conn.execute(
        "INSERT INTO ledger (user_id, reason, amount, before, after, at, charge_id, stars, note) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.user_id,
            entry.reason,
            entry.amount,
            entry.before,
            entry.after,
            entry.at,
            entry.charge_id,
            entry.stars,
            entry.note,
        ),
    )


def _change(
    conn: sqlite3.Connection,
    user_id: int,
    reason: str,
    amount: int,
    now: float,
    charge_id: str | None,
    stars: int,
    note: str,
) -> LedgerEntry:
    """Add `amount` (may be negative, never below zero: CHECK) and write its ledger entry."""
    if amount >= 0:
        row = conn.execute(
            "INSERT INTO credit_balances (user_id, balance) VALUES (?, ?) ON CONFLICT (user_id) "
            "DO UPDATE SET balance = balance + excluded.balance RETURNING balance",
            (user_id, amount),
        ).fetchone()
    else:  # the inserted row's CHECK would refuse a negative start: only ever an UPDATE
        row = conn.execute(
            "UPDATE credit_balances SET balance = balance + ? WHERE user_id = ? RETURNING balance",
            (amount, user_id),
        ).fetchone()
    after = int(row[0])
    entry = LedgerEntry(
        user_id, reason, amount, after - amount, after, now, charge_id, stars, note
    )
    _insert_entry(conn, entry)
    return entry
