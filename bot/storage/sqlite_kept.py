"""The request kept until a payment, in SQLite (`keep_request` ...), a part of `SqliteStore`.

The request is a `kv` row of namespace `kept`; the runner that claimed it (the payment running
it) a row of namespace `kept_run` expiring with it. Each method is one transaction, so a
claim, a newer request and the removal after the reply never interleave.
"""

from __future__ import annotations

import sqlite3
import time

from bot.storage.sqlite_ledger import Database


class SqliteKept:
    """The kept-request methods of `SqliteStore`, on the database the store opens."""

    db: Database

    async def keep_request(self, user_id: int, record: str, ttl: float) -> None:
        """Keep one request of a user's for `ttl` seconds (one per user: the newest wins)."""

        def op(conn: sqlite3.Connection) -> None:
            key = str(user_id)
            conn.execute(
                "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES ('kept', ?, ?, ?)",
                (key, record, time.time() + ttl),
            )
            # A new request: nobody runs it yet (a payment running the old one keeps its copy).
            conn.execute("DELETE FROM kv WHERE ns = 'kept_run' AND key = ?", (key,))

        await self.db.run(op)

    async def claim_request(self, user_id: int, runner: str) -> str | None:
        """The user's kept request, for `runner` to run; None if none, or another runs it."""

        def op(conn: sqlite3.Connection) -> str | None:
            key, now = str(user_id), time.time()
            row = conn.execute(
                "SELECT value, expires FROM kv WHERE ns = 'kept' AND key = ? AND expires > ?",
                (key, now),
            ).fetchone()
            if row is None:
                return None
            running = conn.execute(
                "SELECT value FROM kv WHERE ns = 'kept_run' AND key = ? AND expires > ?",
                (key, now),
            ).fetchone()
            if running is not None and str(running[0]) != runner:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES ('kept_run', ?, ?, ?)",
                (key, runner, float(row[1])),
            )
            return str(row[0])

        return await self.db.run(op)

    async def drop_request(self, user_id: int, record: str) -> bool:
        """Remove the user's kept request if it is still `record` (a newer one stays)."""

        def op(conn: sqlite3.Connection) -> bool:
            key = str(user_id)
            removed = conn.execute(
                "DELETE FROM kv WHERE ns = 'kept' AND key = ? AND value = ?", (key, record)
            ).rowcount
            if removed:
                conn.execute("DELETE FROM kv WHERE ns = 'kept_run' AND key = ?", (key,))
            return removed > 0

        return await self.db.run(op)
