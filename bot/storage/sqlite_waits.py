"""Waits for a user's next message in SQLite (`put_wait` ...), a part of `SqliteStore`.

A wait is a `kv` row of namespace `wait` whose `expires` is its deadline plus `WAIT_LINGER`, so
the store's sweep drops it an hour after it ran out and `due_waits` finds it before that.
"""

from __future__ import annotations

import sqlite3
import time

from bot.storage.base import WAIT_LINGER
from bot.storage.sqlite_ledger import Database


class SqliteWaits:
    """The wait methods of `SqliteStore`, on the database the store opens."""

    db: Database

    async def put_wait(self, key: str, record: str, until: float) -> None:
        """Wait for a user's next message until `until` (epoch seconds); replaces any earlier."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES ('wait', ?, ?, ?)",
                (key, record, until + WAIT_LINGER),
            )

        await self.db.run(op)

    async def get_wait(self, key: str) -> str | None:
        """The wait under `key`, whether its time ran out or not."""

        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM kv WHERE ns = 'wait' AND key = ? AND expires > ?",
                (key, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.db.run(op, write=False)

    async def take_wait(self, key: str) -> str | None:
        """The wait under `key`, removed in the same step (so only one caller gets it)."""

        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "DELETE FROM kv WHERE ns = 'wait' AND key = ? RETURNING value, expires", (key,)
            ).fetchone()
            return None if row is None or float(row[1]) <= time.time() else str(row[0])

        return await self.db.run(op)

    async def due_waits(self, now: float, limit: int = 100) -> list[str]:
        """Keys of waits whose time ran out by `now` and that nobody has taken yet."""

        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT key FROM kv WHERE ns = 'wait' AND expires <= ? AND expires > ? "
                "ORDER BY expires LIMIT ?",
                (now + WAIT_LINGER, time.time(), limit),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self.db.run(op, write=False)

    async def _forget_waits(self, user_id: int) -> None:
        await self.db.run(
            lambda c: c.execute(
                "DELETE FROM kv WHERE ns = 'wait' AND key LIKE ?", (f"%:{user_id}",)
            )
        )
