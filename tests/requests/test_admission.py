"""Per-user rate limits."""

from __future__ import annotations

import asyncio

import limits

from bot.requests.admission import RateLimiter, async_storage, format_wait
from bot.transport.telegram_rate import FairGate


def limiter(spec: str) -> RateLimiter:
    return RateLimiter(limits.parse_many(spec), async_storage("memory://"), namespace="user")


async def test_third_request_over_two_per_minute_is_refused() -> None:
    rl = limiter("2/minute")
    assert await rl.acquire(1) is None
    assert await rl.acquire(1) is None
    refusal = await rl.acquire(1)
    assert refusal is not None
    assert 55 <= refusal.retry_after <= 60
    assert refusal.wait_text() in ("60 seconds", "59 seconds", "58 seconds", "57 seconds")


async def test_users_are_independent() -> None:
    rl = limiter("1/minute")
    assert await rl.acquire(1) is None
    assert await rl.acquire(2) is None
    assert await rl.acquire(1) is not None


async def test_refusal_by_one_limit_does_not_consume_the_other() -> None:
    rl = limiter("3/day;1/minute")
    assert await rl.acquire(7) is None
    for _ in range(5):
        assert await rl.acquire(7) is not None
    # Only one hit counted against 3/day: after the minute window, two remain.
    storage_limiter = rl._limiter
    stats = await storage_limiter.get_window_stats(limits.parse("3/day"), "user", "7")
    assert stats.remaining == 2


async def test_the_longest_wait_is_reported() -> None:
    rl = limiter("1/hour;1/minute")
    assert await rl.acquire(3) is None
    refusal = await rl.acquire(3)
    assert refusal is not None
    assert refusal.retry_after > 3000


async def test_no_limits_means_unlimited() -> None:
    rl = limiter("1/minute")
    free = RateLimiter([], async_storage("memory://"), namespace="user")
    assert not free.enabled
    assert rl.enabled
    for _ in range(50):
        assert await free.acquire(1) is None


def test_format_wait() -> None:
    assert format_wait(0.2) == "1 second"
    assert format_wait(42.1) == "43 seconds"
    assert format_wait(600) == "10 minutes"
    assert format_wait(86400) == "24 hours"


async def test_fair_gate_serves_waiting_keys_in_turns() -> None:
    gate = FairGate(rate=50)
    order: list[str] = []

    async def take(key: str) -> None:
        await gate.acquire(key)
        order.append(key)

    flood = [asyncio.create_task(take("a")) for _ in range(100)]
    while gate.waiting < 40:  # the burst is spent; the rest of "a" waits in line
        await asyncio.sleep(0)
    served_before = len(order)
    late = asyncio.create_task(take("b"))
    await asyncio.gather(*flood, late)
    assert order.count("a") == 100
    # "b" is served after at most one more "a" (its turn), not behind the whole backlog.
    assert order.index("b") <= served_before + 5, (order.index("b"), served_before)
