"""Freepik spending across replicas: the request rate cap and the daily budget.

Both live in the `limits` storage (`STORAGE_URL`), so every replica shares them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from bot.storage.base import StorageUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

RATE_NAMESPACE = "freepik-rate"
BUDGET_NAMESPACE = "freepik-budget"
# Longest single sleep while waiting for a rate slot: re-check often, another replica's
# window may free a slot earlier than this one's view says.
MAX_RATE_SLEEP = 0.25


class BudgetExhausted(Exception):
    """Today's Freepik budget is spent; a retry or re-run would go over it."""


def rate_item(per_second: float) -> RateLimitItem:
    """`per_second` as a `limits` item: 10 -> 10 per 1 s, 0.5 -> 1 per 2 s, 2.5 -> 5 per 2 s."""
    if per_second >= 1 and float(per_second).is_integer():
        return RateLimitItemPerSecond(int(per_second), 1)
    for seconds in range(1, 61):
        amount = per_second * seconds
        if amount >= 1 and abs(amount - round(amount)) < 1e-6:
            return RateLimitItemPerSecond(round(amount), seconds)
    seconds = max(1, math.ceil(1 / per_second)) if per_second < 1 else 1
    return RateLimitItemPerSecond(max(1, math.floor(per_second * seconds)), seconds)


def utc_day() -> str:
    """Today's UTC date, the budget's window."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def seconds_to_utc_midnight() -> float:
    """Seconds until the budget resets."""
    now = dt.datetime.now(dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


async def _guarded(what: str, op: Awaitable[T]) -> T:
    try:
        return await op
    except StorageUnavailable:
        raise
    except Exception as err:
        # limits raises the backend's own errors (redis-py's when Redis is down).
        raise StorageUnavailable(f"{what} storage failed: {type(err).__name__}") from err


class RateCap:
    """At most `FREEPIK_MAX_RATE` POSTs per second over all replicas; callers queue in order."""

    def __init__(self, per_second: float, storage: Storage) -> None:
        self._item = rate_item(per_second) if per_second > 0 else None
        self._limiter = MovingWindowRateLimiter(storage)
        # asyncio.Lock wakes waiters first come, first served: jobs keep their order here.
        self._turn = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        """Whether a cap is configured."""
        return self._item is not None

    async def wait(self) -> float:
        """Wait for a slot; return the seconds waited."""
        item = self._item
        if item is None:
            return 0.0
        started = time.monotonic()
        async with self._turn:
            while not await _guarded("rate-cap", self._limiter.hit(item, RATE_NAMESPACE)):
                stats = await _guarded(
                    "rate-cap", self._limiter.get_window_stats(item, RATE_NAMESPACE)
                )
                await asyncio.sleep(min(MAX_RATE_SLEEP, max(0.01, stats.reset_time - time.time())))
        waited = time.monotonic() - started
        if waited > 0.05:
            logger.debug("Waited %.2fs for a Freepik rate slot", waited)
        return waited


class DailyBudget:
    """At most `FREEPIK_DAILY_BUDGET` Freepik calls per UTC day over all replicas."""

    def __init__(
        self,
        budget: int | None,
        storage: Storage,
        *,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self._budget = budget
        self._limiter = FixedWindowRateLimiter(storage)
        self._on_change = on_change or (lambda remaining: None)

    @property
    def budget(self) -> int | None:
        """The configured budget (None = no budget)."""
        return self._budget

    def _item(self) -> RateLimitItem:
        assert self._budget is not None
        return RateLimitItemPerDay(self._budget)

    async def available(self) -> bool:
        """Whether a new job may start now (counts nothing)."""
        if self._budget is None:
            return True
        return await self.remaining() > 0

    async def spend(self) -> bool:
        """Count one call; False (and nothing should be sent) when it goes over the budget."""
        if self._budget is None:
            return True
        ok = await _guarded("budget", self._limiter.hit(self._item(), BUDGET_NAMESPACE, utc_day()))
        await self.remaining()
        return ok

    async def remaining(self) -> int:
        """Calls left today (0 when there is no budget)."""
        if self._budget is None:
            return 0
        stats = await _guarded(
            "budget", self._limiter.get_window_stats(self._item(), BUDGET_NAMESPACE, utc_day())
        )
        self._on_change(stats.remaining)
        return int(stats.remaining)

    async def used(self) -> int:
        """Calls counted today."""
        if self._budget is None:
            return 0
        return self._budget - await self.remaining()


class FreepikGate:
    """What runs before every Freepik POST: wait for the rate cap, count retries in the budget.

    A job's first POST is counted when the job is admitted (`Admission`); its retries and a
    re-run count here, and are not made once today's budget is spent.
    """

    def __init__(self, rate: RateCap, budget: DailyBudget) -> None:
        self.rate = rate
        self.budget = budget

    async def before_post(self, attempt: int) -> None:
        """Called by the Freepik client with the POST's number for this image."""
        if attempt > 1 and not await self.budget.spend():
            raise BudgetExhausted("today's Freepik budget is spent; not retrying")
        await self.rate.wait()
