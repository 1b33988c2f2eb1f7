"""The in-process implementation of `StateStore`, for a single bot process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from bot.storage.base import (
    RECENT_LIMIT,
    WAIT_LINGER,
    PendingUpdate,
    ProcessClaims,
    StoredCutout,
    studio_owner,
)
from bot.storage.memory_ledger import MemoryLedger


class MemoryStore(MemoryLedger, ProcessClaims):
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
        # user -> (expires, record, who runs it now)
        self._kept: dict[int, tuple[float, str, str | None]] = {}
        self._waits: dict[str, tuple[float, str]] = {}

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

    async def accept_updates(self, records: Sequence[tuple[int, str]], ttl: float) -> list[bool]:
        """`accept_update` for several (update id, payload) at once."""
        return [
            await self.accept_update(update_id, payload, ttl) for update_id, payload in records
        ]

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

    async def note_update(self, update_id: int, note: str, *, held: bool = False) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note)."""
        pending = self._inbox.get(update_id)
        if pending is not None:
            self._inbox[update_id] = replace(pending, note=note)

    async def keep_request(self, user_id: int, record: str, ttl: float) -> None:
        """Keep one request of a user's for `ttl` seconds (one per user: the newest wins)."""
        now = time.monotonic()
        if len(self._kept) > 10_000:
            self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
        self._kept[user_id] = (now + ttl, record, None)

    async def claim_request(self, user_id: int, runner: str) -> str | None:
        """The user's kept request, for `runner` to run; None if none, or another runs it."""
        entry = self._kept.get(user_id)
        if entry is None or entry[0] <= time.monotonic() or entry[2] not in (None, runner):
            return None
        self._kept[user_id] = (entry[0], entry[1], runner)
        return entry[1]

    async def drop_request(self, user_id: int, record: str) -> bool:
        """Remove the user's kept request if it is still `record` (a newer one stays)."""
        entry = self._kept.get(user_id)
        if entry is None or entry[1] != record:
            return False
        del self._kept[user_id]
        return entry[0] > time.monotonic()

    async def put_wait(self, key: str, record: str, until: float) -> None:
        """Wait for a user's next message until `until` (epoch seconds); replaces any earlier."""
        now = time.time()
        if len(self._waits) > 10_000:
            self._waits = {k: v for k, v in self._waits.items() if v[0] + WAIT_LINGER > now}
        self._waits[key] = (until, record)

    async def get_wait(self, key: str) -> str | None:
        """The wait under `key`, whether its time ran out or not."""
        entry = self._waits.get(key)
        if entry is None or entry[0] + WAIT_LINGER <= time.time():
            return None
        return entry[1]

    async def take_wait(self, key: str) -> str | None:
        """The wait under `key`, removed in the same step (so only one caller gets it)."""
        entry = self._waits.pop(key, None)
        if entry is None or entry[0] + WAIT_LINGER <= time.time():
            return None
        return entry[1]

    async def due_waits(self, now: float, limit: int = 100) -> list[str]:
        """Keys of waits whose time ran out by `now` and that nobody has taken yet."""
        due = [k for k, (until, _r) in self._waits.items() if until <= now < until + WAIT_LINGER]
        return due[:limit]

    async def forget_user(self, user_id: int) -> None:
        """Delete what is kept about a user (language, recents, studio, kept request, waits)."""
        self._languages.pop(user_id, None)
        self._recent.pop(user_id, None)
        self._kept.pop(user_id, None)
        self._waits = {k: v for k, v in self._waits.items() if not k.endswith(f":{user_id}")}
        self._studio = {
            token: entry
            for token, entry in self._studio.items()
            if studio_owner(entry[1]) != user_id
        }

    async def upgrade(self) -> None:
        """Nothing to upgrade: records die with the process."""

    @property
    def durable(self) -> bool:
        """Records die with the process."""
        return False

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
