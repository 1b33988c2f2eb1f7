"""The embedded SQLite implementation of `StateStore`, and of `limits`' async storage.

One database file in `DATA_DIR`, one connection per object, used from one worker thread:
each operation is a whole short transaction run in that thread, so the event loop only waits
for a thread hop. (aiosqlite hops once per statement and cannot keep a multi-statement
transaction atomic without a lock held across awaits; a one-thread executor does both.)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from limits.aio.storage import MovingWindowSupport, Storage

from bot.storage.base import (
    RECENT_LIMIT,
    PendingUpdate,
    ProcessClaims,
    StorageUnavailable,
    StoredCutout,
)
from bot.storage.sqlite_kept import SqliteKept
from bot.storage.sqlite_ledger import SqliteLedger
from bot.storage.sqlite_waits import SqliteWaits

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_FILE = "nobg.sqlite3"
# Recent lists outlive cache entries (as in Redis): Telegram file ids stay valid.
RECENT_TTL = 90 * 24 * 3600
LANGUAGE_TTL = 365 * 24 * 3600
SWEEP_INTERVAL = 60.0
CHECKPOINT_INTERVAL = 1.0
MAX_CACHED = 100_000
Synchronous = Literal["normal", "full"]


def synchronous_mode(value: str) -> Synchronous:
    """`normal` or `full` (anything else is `normal`)."""
    return "full" if value == "full" else "normal"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires);
CREATE TABLE IF NOT EXISTS recent (
    user_id INTEGER NOT NULL, file_id TEXT NOT NULL, file_name TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (user_id, file_id)
);
CREATE INDEX IF NOT EXISTS recent_expires ON recent (expires);
CREATE TABLE IF NOT EXISTS inbox (
    update_id INTEGER PRIMARY KEY, payload TEXT, accepted REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, expires REAL NOT NULL, note TEXT
);
CREATE INDEX IF NOT EXISTS inbox_expires ON inbox (expires);
CREATE TABLE IF NOT EXISTS limit_counters (
    key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS limit_events (
    key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS limit_events_key ON limit_events (key, at);
CREATE INDEX IF NOT EXISTS limit_events_expires ON limit_events (expires);
CREATE TABLE IF NOT EXISTS credit_balances (
    user_id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS payments (
    charge_id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, credits INTEGER NOT NULL,
    stars INTEGER NOT NULL, at REAL NOT NULL, refunded REAL
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL, reason TEXT NOT NULL,
    amount INTEGER NOT NULL, before INTEGER NOT NULL, after INTEGER NOT NULL, at REAL NOT NULL,
    charge_id TEXT, stars INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger (at);
CREATE INDEX IF NOT EXISTS ledger_user ON ledger (user_id, at);
"""


class DataDirError(Exception):
    """The data directory cannot be created, written or locked; the message says why."""


def sqlite_path(storage_url: str) -> Path:
    """The database file of a `sqlite://PATH` URL (`sqlite:///abs/file`, `sqlite://rel/file`)."""
    path = storage_url.removeprefix("async+").removeprefix("sqlite://")
    if not path:
        raise ValueError("sqlite:// needs a file path, e.g. sqlite:///data/nobg.sqlite3")
    return Path(path)


def prepare_data_dir(directory: Path) -> None:
    """Create `directory` if missing and prove it is writable, or raise `DataDirError`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise DataDirError(
            f"data directory {directory} is not writable ({err.strerror or err}); "
            "set DATA_DIR to a writable directory (in Docker, mount a volume on /data)"
        ) from None


class SqliteDatabase:
    """One connection to the database file, driven from a single worker thread."""

    def __init__(self, path: Path, *, synchronous: Synchronous = "normal") -> None:
        prepare_data_dir(path.parent)
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._last_sweep = 0.0
        try:
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            # auto_vacuum must be chosen before the first table exists; freed pages go back.
            self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._conn.execute("PRAGMA journal_size_limit = 8388608")
            # Checkpoints flush the WAL into the database file with fsyncs that can take
            # many milliseconds: they run from a second connection in a thread of their own
            # (PASSIVE: never in the writer's way), not inside some request's write.
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn.executescript(_SCHEMA)
            self._checkpoint_conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._checkpoint_conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        except sqlite3.Error as err:
            raise DataDirError(f"cannot open the database {path}: {err}") from None
        self._checkpoints = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ckpt")
        self._last_checkpoint = time.monotonic()
        self._checkpointing = False

    async def run(self, op: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run `op` as one transaction in the database thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._transaction, op, write)
        except sqlite3.Error as err:
            raise StorageUnavailable(f"SQLite failed: {type(err).__name__}: {err}") from err

    def _transaction(self, op: Callable[[sqlite3.Connection], T], write: bool) -> T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = op(conn)
            if write:
                self._maybe_sweep(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if write:
            self._maybe_checkpoint()
        return result

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if self._checkpointing or now - self._last_checkpoint < CHECKPOINT_INTERVAL:
            return
        self._checkpointing = True
        self._last_checkpoint = now
        self._checkpoints.submit(self._checkpoint)

    def _checkpoint(self, mode: str = "PASSIVE") -> None:
        try:
            self._checkpoint_conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error as err:
            logger.warning("SQLite checkpoint failed: %s", err)
        finally:
            self._checkpointing = False

    def _maybe_sweep(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._last_sweep < SWEEP_INTERVAL:
            return
        self._last_sweep = now
        removed = 0
        for table in ("kv", "recent", "limit_counters", "limit_events"):
            removed += conn.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,)).rowcount  # noqa: S608
        # Unfinished requests stay until they are answered or given up, however old.
        removed += conn.execute(
            "DELETE FROM inbox WHERE payload IS NULL AND expires <= ?", (now,)
        ).rowcount
        # The cache is also bounded by count: the entries closest to expiry go first.
        over = conn.execute("SELECT count(*) - ? FROM kv WHERE ns = 'cutout'", (MAX_CACHED,))
        excess = int(over.fetchone()[0])
        if excess > 0:
            removed += conn.execute(
                "DELETE FROM kv WHERE ns = 'cutout' AND key IN "
                "(SELECT key FROM kv WHERE ns = 'cutout' ORDER BY expires LIMIT ?)",
                (excess,),
            ).rowcount
        if removed:
            logger.debug("SQLite sweep removed %d expired rows", removed)

    async def sweep(self) -> None:
        """Delete expired rows now and give free pages back to the file system."""
        self._last_sweep = 0.0
        await self.run(lambda conn: None)
        await self.run(lambda conn: conn.execute("PRAGMA incremental_vacuum").fetchall())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpoints, self._checkpoint, "TRUNCATE")

    def close(self) -> None:
        """Finish pending work, fold the WAL into the database and close the connections."""
        self._executor.shutdown(wait=True)
        self._checkpoints.shutdown(wait=True)
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            self._checkpoint_conn.close()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()


class SqliteStore(SqliteLedger, SqliteWaits, SqliteKept, ProcessClaims):
    """`StateStore` in one SQLite file: survives restarts of its single bot process."""

    # Claims stay in memory: they coordinate the jobs of one process (the database belongs to
    # one process), and a dead process's claims must not hold up the jobs it will resume.

    db: SqliteDatabase

    def __init__(
        self, path: Path, *, synchronous: Synchronous = "normal", exclusive: bool = True
    ) -> None:
        # `exclusive=False` is for the doctor, which looks at a running bot's file.
        super().__init__()
        self._lock = _lock_data_dir(path) if exclusive else None
        self.db = SqliteDatabase(path, synchronous=synchronous)

    async def _get(self, ns: str, key: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM kv WHERE ns = ? AND key = ? AND expires > ?",
                (ns, key, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(op, write=False)

    async def _put(self, ns: str, key: str, value: str, ttl: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES (?, ?, ?, ?)",
                (ns, key, value, time.time() + ttl),
            )

        await self._run(op)

    async def get_cutout(self, key: str) -> StoredCutout | None:
        """The cached cutout for a source key, if any and not expired."""
        raw = await self._get("cutout", key)
        return StoredCutout.from_dict(json.loads(raw)) if raw else None

    async def put_cutout(self, key: str, cutout: StoredCutout, ttl: float) -> None:
        """Cache a cutout for `ttl` seconds (0 = do not cache)."""
        if ttl > 0:
            await self._put("cutout", key, json.dumps(cutout.to_dict()), ttl)

    async def drop_cutout(self, key: str, file_id: str) -> None:
        """Forget the cached cutout for `key` if it is still `file_id` (Telegram rejected it)."""
        await self._run(
            lambda c: c.execute(
                "DELETE FROM kv WHERE ns = 'cutout' AND key = ? "
                "AND json_extract(value, '$.file_id') = ?",
                (key, file_id),
            )
        )

    async def push_recent(self, user_id: int, cutout: StoredCutout) -> None:
        """Remember a cutout a user received (newest first, at most `RECENT_LIMIT`)."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO recent VALUES (?, ?, ?, ?, ?)",
                (
                    user_id,
                    cutout.file_id,
                    cutout.file_name,
                    cutout.created,
                    time.time() + RECENT_TTL,
                ),
            )
            conn.execute(
                "DELETE FROM recent WHERE user_id = ? AND file_id NOT IN (SELECT file_id FROM "
                "recent WHERE user_id = ? ORDER BY created DESC LIMIT ?)",
                (user_id, user_id, RECENT_LIMIT),
            )

        await self._run(op)

    async def recent(self, user_id: int, limit: int = RECENT_LIMIT) -> list[StoredCutout]:
        """A user's recent cutouts, newest first."""

        def op(conn: sqlite3.Connection) -> list[StoredCutout]:
            rows = conn.execute(
                "SELECT file_id, file_name, created FROM recent WHERE user_id = ? "
                "AND expires > ? ORDER BY created DESC LIMIT ?",
                (user_id, time.time(), limit),
            ).fetchall()
            return [StoredCutout(str(f), str(n), float(c)) for f, n, c in rows]

        return await self._run(op, write=False)

    async def drop_recent(self, user_id: int, file_id: str) -> None:
        """Forget one of a user's recent cutouts (Telegram rejected its file id)."""
        await self._run(
            lambda c: c.execute(
                "DELETE FROM recent WHERE user_id = ? AND file_id = ?", (user_id, file_id)
            )
        )

    async def put_relay(self, token: str, file_id: str, ttl: float) -> None:
        """Map a relay link token to a Telegram file id for `ttl` seconds."""
        await self._put("relay", token, file_id, ttl)

    async def get_relay(self, token: str) -> str | None:
        """The Telegram file id behind a relay token, if it has not expired."""
        return await self._get("relay", token)

    async def get_language(self, user_id: int) -> str | None:
        """The locale a user picked with /language, if any."""
        return await self._get("lang", str(user_id))

    async def set_language(self, user_id: int, locale: str) -> None:
        """Remember the locale a user picked with /language (a year, as in Redis)."""
        await self._put("lang", str(user_id), locale, LANGUAGE_TTL)

    async def put_studio(self, token: str, record: str, ttl: float) -> None:
        """Keep a studio keyboard's record (who may press, which cutouts) for `ttl` seconds."""
        await self._put("studio", token, record, ttl)

    async def get_studio(self, token: str) -> str | None:
        """The record behind a studio keyboard's token, if it has not expired."""
        return await self._get("studio", token)

    async def accept_update(self, update_id: int, payload: str, ttl: float) -> bool:
        """Record an update before any work on it; False if it was seen before (redelivery)."""
        (accepted,) = await self.accept_updates([(update_id, payload)], ttl)
        return accepted

    async def accept_updates(self, records: Sequence[tuple[int, str]], ttl: float) -> list[bool]:
        """`accept_update` for several (update id, payload) at once, in one transaction."""

        def op(conn: sqlite3.Connection) -> list[bool]:
            now = time.time()
            return [
                conn.execute(
                    "INSERT INTO inbox (update_id, payload, accepted, attempts, expires) "
                    "VALUES (?, ?, ?, 0, ?) ON CONFLICT (update_id) DO UPDATE SET "
                    "payload = excluded.payload, accepted = excluded.accepted, attempts = 0, "
                    "note = NULL, expires = excluded.expires "
                    "WHERE inbox.payload IS NULL AND inbox.expires <= ?",
                    (update_id, payload, now, now + ttl, now),
                ).rowcount
                > 0
                for update_id, payload in records
            ]

        return await self._run(op) if records else []

    async def finish_update(self, update_id: int) -> None:
        """The update got its reply: drop its payload, remember its id until it expires."""
        await self._run(
            lambda c: c.execute(
                "UPDATE inbox SET payload = NULL WHERE update_id = ?", (update_id,)
            )
        )

    async def pending_updates(self) -> list[PendingUpdate]:
        """Updates accepted but not finished, oldest first."""

        def op(conn: sqlite3.Connection) -> list[PendingUpdate]:
            rows = conn.execute(
                "SELECT update_id, payload, accepted, attempts, note FROM inbox "
                "WHERE payload IS NOT NULL ORDER BY update_id"
            ).fetchall()
            return [
                PendingUpdate(int(u), str(p), float(a), int(n), None if t is None else str(t))
                for u, p, a, n, t in rows
            ]

        return await self._run(op, write=False)

    async def note_update(self, update_id: int, note: str, *, held: bool = False) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note)."""
        await self._run(
            lambda c: c.execute(
                "UPDATE inbox SET note = ? WHERE update_id = ? AND payload IS NOT NULL",
                (note, update_id),
            )
        )

    async def count_attempt(self, update_id: int) -> int:
        """Count one more attempt at an unfinished update; return the attempts so far."""

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE inbox SET attempts = attempts + 1 "
                "WHERE update_id = ? AND payload IS NOT NULL RETURNING attempts",
                (update_id,),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(op)

    async def forget_user(self, user_id: int) -> None:
        """Delete what is kept about a user (language, recents, studio, kept request, waits)."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM kv WHERE ns IN ('lang', 'kept', 'kept_run') AND key = ?",
                (str(user_id),),
            )
            conn.execute("DELETE FROM recent WHERE user_id = ?", (user_id,))
            conn.execute(
                "DELETE FROM kv WHERE ns = 'studio' AND json_valid(value) "
                "AND json_extract(value, '$.owner') = ?",
                (user_id,),
            )

        await self._run(op)
        await self._forget_waits(user_id)

    async def upgrade(self) -> None:
        """Nothing to upgrade: the schema is brought up to date when the database opens."""

    async def ping(self) -> bool:
        """Whether the database answers."""
        try:
            return bool(await self._run(lambda c: c.execute("SELECT 1").fetchone(), write=False))
        except StorageUnavailable:
            return False

    async def aclose(self) -> None:
        """Close the connection and the data directory lock."""
        await asyncio.to_thread(self.db.close)
        if self._lock is not None:
            self._lock.close()

    @property
    def durable(self) -> bool:
        """Records survive the process."""
        return True


def _lock_data_dir(path: Path) -> IO[bytes]:
    # Two processes polling the same token fail anyway; two processes sharing one file
    # would resume each other's jobs. One bot process per database file.
    prepare_data_dir(path.parent)
    handle = open(path.with_name(path.name + ".lock"), "wb")  # noqa: SIM115 - held open
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DataDirError(
            f"another bot process is using {path}; give each process its own DATA_DIR "
            "(several replicas share state through STORAGE_URL=redis://...)"
        ) from None
    return handle


class SqliteLimitsStorage(Storage, MovingWindowSupport):
    """`limits`' async storage (fixed and moving windows) in the bot's SQLite file."""

    STORAGE_SCHEME = ["async+sqlite"]  # noqa: RUF012 - declared so by limits' base class

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        path: Path | None = None,
        synchronous: Synchronous = "normal",
        **options: Any,
    ) -> None:
        if path is None:
            if uri is None:
                raise ValueError("SqliteLimitsStorage needs a path or an async+sqlite:// URI")
            path = sqlite_path(uri)
        self.db = SqliteDatabase(path, synchronous=synchronous)
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """Errors the `limits` wrapper may turn into its StorageError."""
        return (sqlite3.Error, StorageUnavailable)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to a fixed-window counter, starting a window of `expiry` if none."""

        def op(conn: sqlite3.Connection) -> int:
            now = time.time()
            row = conn.execute(
                "INSERT INTO limit_counters (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "value = CASE WHEN expires <= ? THEN excluded.value "
                "ELSE value + excluded.value END, "
                "expires = CASE WHEN expires <= ? THEN excluded.expires ELSE expires END "
                "RETURNING value",
                (key, amount, now + expiry, now, now),
            ).fetchone()
            return int(row[0])

        return await self.db.run(op)

    async def get(self, key: str) -> int:
        """The counter's value (0 if none or expired)."""

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT value FROM limit_counters WHERE key = ? AND expires > ?",
                (key, time.time()),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self.db.run(op, write=False)

    async def get_expiry(self, key: str) -> float:
        """When the counter's window ends (now if there is none)."""

        def op(conn: sqlite3.Connection) -> float:
            now = time.time()
            row = conn.execute(
                "SELECT expires FROM limit_counters WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            return now if row is None else float(row[0])

        return await self.db.run(op, write=False)

    async def check(self) -> bool:
        """Whether the database answers."""
        try:
            return bool(await self.db.run(lambda c: c.execute("SELECT 1").fetchone(), write=False))
        except StorageUnavailable:
            return False

    async def reset(self) -> int | None:
        """Forget every counter and window."""

        def op(conn: sqlite3.Connection) -> int:
            counters = conn.execute("DELETE FROM limit_counters").rowcount
            keys = conn.execute("SELECT count(DISTINCT key) FROM limit_events").fetchone()[0]
            conn.execute("DELETE FROM limit_events")
            return max(counters, int(keys))

        return await self.db.run(op)

    async def clear(self, key: str) -> None:
        """Forget one key's counter and window."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM limit_counters WHERE key = ?", (key,))
            conn.execute("DELETE FROM limit_events WHERE key = ?", (key,))

        await self.db.run(op)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Take `amount` entries in the moving window unless that would exceed `limit`."""
        if amount > limit:
            return False

        def op(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute("DELETE FROM limit_events WHERE key = ? AND at < ?", (key, now - expiry))
            (taken,) = conn.execute(
                "SELECT count(*) FROM limit_events WHERE key = ?", (key,)
            ).fetchone()
            if int(taken) + amount > limit:
                return False
            conn.executemany(
                "INSERT INTO limit_events (key, at, expires) VALUES (?, ?, ?)",
                [(key, now, now + expiry)] * amount,
            )
            return True

        return await self.db.run(op)

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(start of the window, entries in it)."""

        def op(conn: sqlite3.Connection) -> tuple[float, int]:
            now = time.time()
            rows = conn.execute(
                "SELECT at FROM limit_events WHERE key = ? AND at >= ? ORDER BY at DESC LIMIT ?",
                (key, now - expiry, limit),
            ).fetchall()
            if not rows:
                return now, 0
            return float(rows[-1][0]), len(rows)

        return await self.db.run(op, write=False)

    async def aclose(self) -> None:
        """Close the connection."""
        await asyncio.to_thread(self.db.close)
