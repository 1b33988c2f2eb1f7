"""Shared state behind one small interface: result cache, recent cutouts, claims, requests."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

RECENT_LIMIT = 20


@dataclass(frozen=True, slots=True)
class StoredCutout:
    """A cutout Telegram already holds: it can be re-sent by `file_id` at no cost."""

    file_id: str
    file_name: str
    created: float

    def to_dict(self) -> dict[str, Any]:
        """Plain form for serialising backends."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredCutout:
        """Inverse of `to_dict`."""
        return cls(str(data["file_id"]), str(data["file_name"]), float(data["created"]))


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """An update accepted but not yet answered: the request record resumed after a crash."""

    update_id: int
    payload: str
    accepted: float
    attempts: int
    # What the request left in the chat (status messages), for the resumed run to clean up.
    note: str | None = None


class StateStore(Protocol):
    """What the bot keeps between requests; memory now, Redis for several replicas."""

    async def get_cutout(self, key: str) -> StoredCutout | None:
        """The cached cutout for a source key, if any and not expired."""
        ...

    async def put_cutout(self, key: str, cutout: StoredCutout, ttl: float) -> None:
        """Cache a cutout for `ttl` seconds (0 = do not cache)."""
        ...

    async def drop_cutout(self, key: str, file_id: str) -> None:
        """Forget the cached cutout for `key` if it is still `file_id` (Telegram rejected it)."""
        ...

    async def push_recent(self, user_id: int, cutout: StoredCutout) -> None:
        """Remember a cutout a user received (newest first, at most `RECENT_LIMIT`)."""
        ...

    async def recent(self, user_id: int, limit: int = RECENT_LIMIT) -> list[StoredCutout]:
        """A user's recent cutouts, newest first."""
        ...

    async def drop_recent(self, user_id: int, file_id: str) -> None:
        """Forget one of a user's recent cutouts (Telegram rejected its file id)."""
        ...

    async def claim(self, key: str, ttl: float) -> bool:
        """Become the one worker for `key` (True) unless someone else holds it (False)."""
        ...

    async def release(self, key: str) -> None:
        """Give up a claim."""
        ...

    async def renew_claim(self, key: str, ttl: float) -> None:
        """Extend a claim we hold to `ttl` seconds from now (a live holder's heartbeat)."""
        ...

    async def put_relay(self, token: str, file_id: str, ttl: float) -> None:
        """Map a relay link token to a Telegram file id for `ttl` seconds."""
        ...

    async def get_relay(self, token: str) -> str | None:
        """The Telegram file id behind a relay token, if it has not expired."""
        ...

    async def get_language(self, user_id: int) -> str | None:
        """The locale a user picked with /language, if any."""
        ...

    async def set_language(self, user_id: int, locale: str) -> None:
        """Remember the locale a user picked with /language."""
        ...

    async def put_studio(self, token: str, record: str, ttl: float) -> None:
        """Keep a studio keyboard's record (who may press, which cutouts) for `ttl` seconds."""
        ...

    async def get_studio(self, token: str) -> str | None:
        """The record behind a studio keyboard's token, if it has not expired."""
        ...

    async def accept_update(self, update_id: int, payload: str, ttl: float) -> bool:
        """Record an update before any work on it; False if it was seen before (redelivery)."""
        ...

    async def finish_update(self, update_id: int) -> None:
        """The update got its reply: drop its record, remember its id until `ttl` ends."""
        ...

    async def pending_updates(self) -> list[PendingUpdate]:
        """Updates accepted but not finished, oldest first."""
        ...

    async def note_update(self, update_id: int, note: str) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note)."""
        ...

    async def count_attempt(self, update_id: int) -> int:
        """Count one more attempt at an unfinished update; return the attempts so far."""
        ...

    @property
    def durable(self) -> bool:
        """Whether records outlive this process (a restart resumes them)."""
        ...

    async def ping(self) -> bool:
        """Whether the backend is reachable."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class StorageUnavailable(Exception):
    """The storage backend cannot be reached right now."""


class ProcessClaims:
    """Job claims held in this process's memory (for stores that serve a single process)."""

    def __init__(self) -> None:
        self._claims: dict[str, float] = {}

    async def claim(self, key: str, ttl: float) -> bool:
        """Become the one worker for `key` (True) unless someone else holds it (False)."""
        now = time.monotonic()
        expires = self._claims.get(key)
        if expires is not None and expires > now:
            return False
        if len(self._claims) > 10_000:  # forget expired claims of jobs that never released them
            self._claims = {k: t for k, t in self._claims.items() if t > now}
        self._claims[key] = now + ttl
        return True

    async def release(self, key: str) -> None:
        """Give up a claim."""
        self._claims.pop(key, None)

    async def renew_claim(self, key: str, ttl: float) -> None:
        """Extend a claim we hold to `ttl` seconds from now (a live holder's heartbeat)."""
        if key in self._claims:
            self._claims[key] = time.monotonic() + ttl


class MemoryStore(ProcessClaims):
    """In-process state with TTLs; for a single bot process."""

    def __init__(self, *, max_cached: int = 100_000) -> None:
        super().__init__()
        self._cutouts: OrderedDict[str, tuple[float, StoredCutout]] = OrderedDict()
        self._recent: dict[int, list[StoredCutout]] = {}
        self._relays: dict[str, tuple[float, str]] = {}
        self._languages: dict[int, str] = {}
        self._studio: dict[str, tuple[float, str]] = {}
        self._max_cached = max_cached
        self._inbox: dict[int, PendingUpdate | None] = {}
        self._seen_expiry: dict[int, float] = {}

    async def get_cutout(self, key: str) -> StoredCutout | None:
        """The cached cutout for a source key, if any and not expired."""
        entry = self._cutouts.get(key)
        if entry is None:
            return None
        expires, cutout = entry
        if expires <= time.monotonic():
            del self._cutouts[key]
            return None
        self._cutouts.move_to_end(key)
        return cutout

    async def put_cutout(self, key: str, cutout: StoredCutout, ttl: float) -> None:
        """Cache a cutout for `ttl` seconds (0 = do not cache)."""
        if ttl <= 0:
            return
        self._cutouts[key] = (time.monotonic() + ttl, cutout)
        self._cutouts.move_to_end(key)
        while len(self._cutouts) > self._max_cached:
            self._cutouts.popitem(last=False)

    async def drop_cutout(self, key: str, file_id: str) -> None:
        """Forget the cached cutout for `key` if it is still `file_id` (Telegram rejected it)."""
        entry = self._cutouts.get(key)
        if entry is not None and entry[1].file_id == file_id:
            del self._cutouts[key]

    async def push_recent(self, user_id: int, cutout: StoredCutout) -> None:
        """Remember a cutout a user received (newest first, at most `RECENT_LIMIT`)."""
        items = [c for c in self._recent.get(user_id, []) if c.file_id != cutout.file_id]
        self._recent[user_id] = [cutout, *items][:RECENT_LIMIT]

    async def recent(self, user_id: int, limit: int = RECENT_LIMIT) -> list[StoredCutout]:
        """A user's recent cutouts, newest first."""
        return list(self._recent.get(user_id, [])[:limit])

    async def drop_recent(self, user_id: int, file_id: str) -> None:
        """Forget one of a user's recent cutouts (Telegram rejected its file id)."""
        items = [c for c in self._recent.get(user_id, []) if c.file_id != file_id]
        self._recent[user_id] = items

    async def put_relay(self, token: str, file_id: str, ttl: float) -> None:
        """Map a relay link token to a Telegram file id for `ttl` seconds."""
        now = time.monotonic()
        # Drop expired links now and then, so the map cannot grow without bound.
        if len(self._relays) > 1000:
            self._relays = {k: v for k, v in self._relays.items() if v[0] > now}
        self._relays[token] = (now + ttl, file_id)

    async def get_relay(self, token: str) -> str | None:
        """The Telegram file id behind a relay token, if it has not expired."""
        entry = self._relays.get(token)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    async def get_language(self, user_id: int) -> str | None:
        """The locale a user picked with /language, if any."""
        return self._languages.get(user_id)

    async def set_language(self, user_id: int, locale: str) -> None:
        """Remember the locale a user picked with /language."""
        self._languages[user_id] = locale

    async def put_studio(self, token: str, record: str, ttl: float) -> None:
        """Keep a studio keyboard's record (who may press, which cutouts) for `ttl` seconds."""
        now = time.monotonic()
        if len(self._studio) > 10_000:
            self._studio = {k: v for k, v in self._studio.items() if v[0] > now}
        self._studio[token] = (now + ttl, record)

    async def get_studio(self, token: str) -> str | None:
        """The record behind a studio keyboard's token, if it has not expired."""
        entry = self._studio.get(token)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    async def accept_update(self, update_id: int, payload: str, ttl: float) -> bool:
        """Record an update before any work on it; False if it was seen before (redelivery)."""
        now = time.monotonic()
        if len(self._seen_expiry) > 10_000:  # forget finished ids whose time is up
            for old in [u for u, t in self._seen_expiry.items() if t <= now]:
                if self._inbox.get(old) is None:
                    self._inbox.pop(old, None)
                    del self._seen_expiry[old]
        if update_id in self._inbox and self._seen_expiry.get(update_id, 0) > now:
            return False
        self._inbox[update_id] = PendingUpdate(update_id, payload, time.time(), 0)
        self._seen_expiry[update_id] = now + ttl
        return True

    async def finish_update(self, update_id: int) -> None:
        """The update got its reply: drop its record, remember its id until `ttl` ends."""
        if update_id in self._inbox:
            self._inbox[update_id] = None

    async def pending_updates(self) -> list[PendingUpdate]:
        """Updates accepted but not finished, oldest first."""
        return sorted((p for p in self._inbox.values() if p), key=lambda p: p.update_id)

    async def count_attempt(self, update_id: int) -> int:
        """Count one more attempt at an unfinished update; return the attempts so far."""
        pending = self._inbox.get(update_id)
        if pending is None:
            return 0
        self._inbox[update_id] = replace(pending, attempts=pending.attempts + 1)
        return pending.attempts + 1

    async def note_update(self, update_id: int, note: str) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note)."""
        pending = self._inbox.get(update_id)
        if pending is not None:
            self._inbox[update_id] = replace(pending, note=note)

    @property
    def durable(self) -> bool:
        """Records die with the process."""
        return False

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


def create_store(
    storage_url: str,
    *,
    prefix: str = "nobg:",
    sqlite_synchronous: str = "normal",
    exclusive: bool = True,
) -> StateStore:
    """The store for a `STORAGE_URL`: `sqlite://PATH`, `memory://` or `redis://host:port/db`."""
    url = storage_url.removeprefix("async+")
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from bot.storage.sqlite_store import SqliteStore, sqlite_path, synchronous_mode

        return SqliteStore(
            sqlite_path(url), synchronous=synchronous_mode(sqlite_synchronous), exclusive=exclusive
        )
    if scheme in ("redis", "rediss"):
        from bot.storage.redis_store import RedisStore  # only deployments with Redis need redis-py

        return RedisStore(url, prefix=prefix)
    raise ValueError(f"unsupported storage scheme {scheme!r}")
