"""`limits`' async storages for every STORAGE_URL scheme, against the same expectations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import limits
import pytest
from limits.aio.storage import MovingWindowSupport, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from bot.requests.admission import RateLimiter, async_storage, close_counters
from bot.storage.sqlite_store import SqliteLimitsStorage


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def counters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'limits.sqlite3'}"
    else:
        url = request.getfixturevalue("redis_url")
    storage = async_storage(url, prefix="test:")
    yield storage
    await storage.reset()
    await close_counters(storage)


async def test_fixed_window_counter(counters: Storage) -> None:
    assert await counters.get("k") == 0
    assert await counters.incr("k", 1) == 1
    assert await counters.incr("k", 1, amount=2) == 3
    assert await counters.get("k") == 3
    expiry = await counters.get_expiry("k")
    assert time.time() < expiry <= time.time() + 1.01
    await asyncio.sleep(1.1)
    assert await counters.get("k") == 0, "the window is over"
    assert await counters.incr("k", 1) == 1, "a new window starts at the next hit"
    await counters.clear("k")
    assert await counters.get("k") == 0


async def test_moving_window_entries(counters: Storage) -> None:
    assert isinstance(counters, MovingWindowSupport)
    assert await counters.acquire_entry("m", limit=2, expiry=1)
    first_at = time.time()
    assert await counters.acquire_entry("m", limit=2, expiry=1)
    assert not await counters.acquire_entry("m", limit=2, expiry=1)
    assert not await counters.acquire_entry("other", limit=1, expiry=1, amount=2)
    start, count = await counters.get_moving_window("m", limit=2, expiry=1)
    assert count == 2
    assert first_at - 0.5 <= start <= first_at + 0.05
    await asyncio.sleep(1.1)
    _, count = await counters.get_moving_window("m", limit=2, expiry=1)
    assert count == 0
    assert await counters.acquire_entry("m", limit=2, expiry=1), "the window moved on"


async def test_strategies_on_top(counters: Storage) -> None:
    item = limits.parse("2/second")
    moving = MovingWindowRateLimiter(counters)
    fixed = FixedWindowRateLimiter(counters)
    assert await moving.hit(item, "a")
    assert await moving.hit(item, "a")
    assert not await moving.hit(item, "a")
    assert await fixed.hit(item, "b")
    assert await fixed.hit(item, "b")
    assert not await fixed.hit(item, "b")
    stats = await moving.get_window_stats(item, "a")
    assert stats.remaining == 0


async def test_rate_limiter_refusal_and_reset(counters: Storage) -> None:
    limiter = RateLimiter(limits.parse_many("1/minute"), counters, namespace="user")
    assert await limiter.acquire(1) is None
    refusal = await limiter.acquire(1)
    assert refusal is not None
    assert 55 <= refusal.retry_after <= 60
    assert await limiter.acquire(2) is None
    assert await limiter.ping()
    assert await counters.reset() is not None
    assert await limiter.acquire(1) is None


async def test_sqlite_counters_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "limits.sqlite3"
    item = limits.parse("1/hour")
    first = SqliteLimitsStorage(path=path)
    assert await MovingWindowRateLimiter(first).hit(item, "user", "1")
    await first.aclose()
    second = SqliteLimitsStorage(uri=f"async+sqlite://{path}")
    try:
        assert not await MovingWindowRateLimiter(second).hit(item, "user", "1")
    finally:
        await second.aclose()
