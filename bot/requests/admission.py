"""Per-user rate limits on top of the `limits` library's async API."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerDay
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from bot.i18n import messages
from bot.requests.spending import DailyBudget, seconds_to_utc_midnight
from bot.storage.base import StorageUnavailable


def async_storage(
    storage_url: str, *, prefix: str = "nobg:", sqlite_synchronous: str = "normal"
) -> Storage:
    """Build the async `limits` storage for a `STORAGE_URL` such as `memory://`."""
    uri = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
    if uri.startswith("async+sqlite://"):
        # `limits` has no SQLite storage: ours implements its async interface.
        from bot.storage.sqlite_store import SqliteLimitsStorage, sqlite_path, synchronous_mode

        return SqliteLimitsStorage(
            path=sqlite_path(uri), synchronous=synchronous_mode(sqlite_synchronous)
        )
    options: dict[str, Any] = {}
    if uri.startswith(("async+redis://", "async+rediss://")):
        # redis-py (already a dependency) rather than coredis; counters under our prefix.
        options = {"implementation": "redispy", "key_prefix": f"{prefix}limits"}
    storage = storage_from_string(uri, **options)
    if not isinstance(storage, Storage):  # pragma: no cover - guarded by the async+ scheme
        raise TypeError(f"{uri} is not an async storage")
    return storage


async def close_counters(storage: Storage) -> None:
    """Release what a counters storage holds (SQLite's connection thread)."""
    close = getattr(storage, "aclose", None)
    if close is not None:
        await close()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused and when the next one will be allowed."""

    retry_after: float
    limit: RateLimitItem
    scope: str = "user"
    # Scope `credits`, for many images asked together: how many credits they lack.
    missing: int = 0

    def wait_text(self) -> str:
        """Human wording of the wait, e.g. `42 seconds` or `3 minutes`."""
        return format_wait(self.retry_after)


class RateLimited(Exception):
    """A new Freepik job would exceed a limit."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"rate limited for {refusal.retry_after:.0f}s")
        self.refusal = refusal


class RateLimiter:
    """Moving-window limits per identity; several limits all have to allow a request."""

    def __init__(
        self, items: Sequence[RateLimitItem], storage: Storage, *, namespace: str
    ) -> None:
        self._items = list(items)
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._namespace = namespace

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured."""
        return bool(self._items)

    @property
    def items(self) -> tuple[RateLimitItem, ...]:
        """The limits, tightest first as configured."""
        return tuple(self._items)

    async def acquire(self, identity: str | int) -> Refusal | None:
        """Count one request for `identity`, or return a `Refusal` without counting it."""
        try:
            return await self._acquire(str(identity))
        except StorageUnavailable:
            raise
        except Exception as err:
            # limits raises the backend's own errors (redis-py's when Redis is down).
            raise StorageUnavailable(f"rate-limit storage failed: {type(err).__name__}") from err

    async def _acquire(self, key: str) -> Refusal | None:
        # Test every limit before hitting any, so a refusal consumes nothing.
        test = self._limiter.test
        refusals = [item for item in self._items if not await test(item, self._namespace, key)]
        if not refusals:
            hits = [await self._limiter.hit(item, self._namespace, key) for item in self._items]
            if all(hits):
                return None
            refusals = [item for item, ok in zip(self._items, hits, strict=True) if not ok]
        return await self._refusal(refusals, key)

    async def peek(self, identity: str | int) -> Refusal | None:
        """Whether a request would be refused now, without counting it."""
        key = str(identity)
        test = self._limiter.test
        try:
            refusals = [item for item in self._items if not await test(item, self._namespace, key)]
            return await self._refusal(refusals, key) if refusals else None
        except Exception as err:
            raise StorageUnavailable(f"rate-limit storage failed: {type(err).__name__}") from err

    async def remaining(self, identity: str | int) -> tuple[int, float | None]:
        """Requests left now under the tightest limit, and seconds until one more comes back."""
        key = str(identity)
        now = time.time()
        left: int | None = None
        back_in: float | None = None
        try:
            for item in self._items:
                stats = await self._limiter.get_window_stats(item, self._namespace, key)
                if left is None or stats.remaining < left:
                    left = int(stats.remaining)
                    back_in = (
                        max(0.0, stats.reset_time - now) if stats.remaining < item.amount else None
                    )
        except Exception as err:
            raise StorageUnavailable(f"rate-limit storage failed: {type(err).__name__}") from err
        return (0 if left is None else left), back_in

    @property
    def storage(self) -> Storage:
        """The counters' storage."""
        return self._storage

    async def ping(self) -> bool:
        """Whether the counters' storage answers."""
        try:
            return bool(await self._storage.check())
        except Exception:
            return False

    async def _refusal(self, items: list[RateLimitItem], key: str) -> Refusal:
        now = time.time()
        worst: Refusal | None = None
        for item in items:
            stats = await self._limiter.get_window_stats(item, self._namespace, key)
            wait = max(1.0, stats.reset_time - now)
            if worst is None or wait > worst.retry_after:
                worst = Refusal(wait, item, self._namespace)
        assert worst is not None
        return worst


def _budget_refusal() -> Refusal:
    item = RateLimitItemPerDay(1)
    return Refusal(seconds_to_utc_midnight(), item, BUDGET_SCOPE)


def format_wait(seconds: float) -> str:
    """Round a wait up to a friendly unit, in the current request's language."""
    return messages.format_wait(seconds)


BUDGET_SCOPE = "budget"


@dataclass(frozen=True, slots=True)
class Admission:
    """The per-user limits (admins exempt), in groups the per-chat limits, and the budget."""

    users: RateLimiter
    chats: RateLimiter
    admin_ids: frozenset[int] = frozenset()
    budget: DailyBudget | None = None

    async def admit(self, user_id: int, group_chat_id: int | None = None) -> RateLimited | None:
        """Count one new job (and its first Freepik call), or return the refusal to raise."""
        refusal = await self._admit(user_id, group_chat_id)
        return RateLimited(refusal) if refusal is not None else None

    async def _admit(self, user_id: int, group_chat_id: int | None) -> Refusal | None:
        budget = self.budget
        if user_id in self.admin_ids:
            if budget is not None:
                await budget.spend()  # admins are never refused, but their calls cost the same
            return None
        if budget is not None and not await budget.available():
            return _budget_refusal()
        refusal = await self._limits(user_id, group_chat_id)
        if refusal is not None:
            return refusal
        if budget is not None and not await budget.spend():
            return _budget_refusal()  # another replica took the last call meanwhile
        return None

    async def _limits(self, user_id: int, group_chat_id: int | None) -> Refusal | None:
        """The rate limits; a refusal consumes nothing from either limit."""
        if group_chat_id is not None and self.chats.enabled:
            # Check the chat first without counting, so a refused user costs the group nothing.
            refusal = await self.chats.peek(group_chat_id)
            if refusal is not None:
                return refusal
        refusal = await self.users.acquire(user_id)
        if refusal is not None:
            return refusal
        if group_chat_id is not None and self.chats.enabled:
            return await self.chats.acquire(group_chat_id)
        return None


class HintGate:
    """Explanations to a user who keeps sending unusable messages: a few, then quiet a while."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        # Users known to be over the limit, until when: a flood of 900 messages then costs
        # one dictionary lookup each instead of a round trip to the counters' storage.
        self._quiet_until: dict[int, float] = {}

    async def allow(self, user_id: int) -> bool:
        """Whether `user_id` may get one more hint now (counted); storage trouble says yes."""
        if not self._limiter.enabled:
            return True
        now = time.monotonic()
        if self._quiet_until.get(user_id, 0.0) > now:
            return False
        try:
            refusal = await self._limiter.acquire(user_id)
        except StorageUnavailable:
            return True
        if refusal is None:
            return True
        if len(self._quiet_until) > 10_000:
            self._quiet_until = {u: t for u, t in self._quiet_until.items() if t > now}
        self._quiet_until[user_id] = now + refusal.retry_after
        return False
