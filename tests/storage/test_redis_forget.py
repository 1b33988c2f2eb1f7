"""/forget on Redis: found through each user's index, never by scanning everyone's records."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from bot.storage.redis_store import RedisStore
from tests.conftest import BOT_TOKEN, StartBot


def studio(owner: int, chat: int = 1) -> str:
    return json.dumps({"owner": owner, "chat": chat, "items": []})


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore(redis_url, prefix="test:")
    yield redis_store
    await redis_store.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.Redis]:
    client: redis.Redis = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def no_scans(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def scan(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("/forget scanned the keyspace")

    for name in ("scan", "scan_iter", "keys"):
        monkeypatch.setattr(store._redis, name, scan)


async def command_calls(raw: redis.Redis) -> dict[str, int]:
    """Calls of each command since the last CONFIG RESETSTAT, as the server counted them."""
    stats: dict[str, Any] = await raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


async def test_forget_reads_the_users_index_not_everyones_records(
    store: RedisStore, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    for user in range(100, 160):  # a busy bot: many users' records
        await store.put_studio(f"other-{user}", studio(user), ttl=60)
        await store.put_wait(f"-5:{user}", "wait", time.time() + 60)
    await store.put_studio("mine-1", studio(7), ttl=60)
    await store.put_studio("mine-2", studio(7, chat=-5), ttl=60)
    await store.put_wait("-5:7", "wait", time.time() + 60)
    await store.put_wait("-5:17", "wait", time.time() + 60)  # ends in 7, not the user's
    no_scans(store, monkeypatch)
    await raw.config_resetstat()
    await store.forget_user(7)
    calls = await command_calls(raw)
    assert "scan" not in calls, calls
    assert "keys" not in calls, calls
    # The user's records are read at once; no other user's is read.
    assert calls.get("get", 0) == 0, calls
    assert calls.get("mget", 0) == 1, calls
    assert await store.get_studio("mine-1") is None
    assert await store.get_studio("mine-2") is None
    assert await store.get_wait("-5:7") is None
    assert "-5:7" not in await store.due_waits(time.time() + 120, limit=1000)
    assert await store.get_wait("-5:17") == "wait"
    assert await store.get_studio("other-100") is not None
    assert await raw.exists("test:owned:7") == 0, "the user's index goes too"


async def test_the_index_drops_expired_entries_and_outlives_the_records(
    store: RedisStore, raw: redis.Redis
) -> None:
    await store.put_studio("short", studio(7), ttl=0.1)
    await asyncio.sleep(0.2)
    await store.put_studio("long", studio(7), ttl=60)
    await store.put_studio("shorter", studio(7), ttl=30)
    assert await raw.zrange("test:owned:7", 0, -1) == ["studio:shorter", "studio:long"]
    assert 59_000 < await raw.pttl("test:owned:7") <= 60_000
    await store.put_wait("3:7", "wait", time.time() + 60)
    assert "wait:3:7" in await raw.zrange("test:owned:7", 0, -1)
    await store.take_wait("3:7")
    assert "wait:3:7" not in await raw.zrange("test:owned:7", 0, -1), "taken: unlisted"


async def test_an_index_entry_is_only_a_hint(store: RedisStore, raw: redis.Redis) -> None:
    await store.put_studio("tok", studio(7), ttl=60)
    await raw.set("test:studio:tok", studio(8), px=60_000)  # the token now names someone else
    await store.forget_user(7)
    assert await store.get_studio("tok") == studio(8), "not the user's: kept"


async def test_records_written_before_the_index_are_found_after_the_start_indexes_them(
    store: RedisStore, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As an older version wrote them: no index.
    await raw.set("test:studio:old-7", studio(7), px=60_000)
    await raw.set("test:studio:old-8", studio(8), px=60_000)
    await raw.set("test:studio:nobody", "not json", px=60_000)
    await raw.set("test:wait:-5:7", "wait", px=60_000)
    await raw.zadd("test:waits", {"-5:7": time.time() + 30})
    assert await store.index_owners() == 3
    assert await store.index_owners() == 0, "once: the next start does not look again"
    assert 0 < await raw.pttl("test:owned:7") <= 60_000
    no_scans(store, monkeypatch)
    await store.forget_user(7)
    assert await store.get_studio("old-7") is None
    assert await store.get_wait("-5:7") is None
    assert await store.due_waits(time.time() + 60) == []
    assert await store.get_studio("old-8") == studio(8)
    assert await store.get_studio("nobody") == "not json"


async def test_the_bot_indexes_older_records_when_it_starts(
    start_bot: StartBot, redis_url: str, raw: redis.Redis
) -> None:
    prefix = f"nobg:{BOT_TOKEN.split(':')[0]}:"  # the bot's default prefix
    await raw.set(f"{prefix}studio:old", studio(7), px=60_000)
    bot = await start_bot(storage_url=redis_url)
    assert bot.settings.redis_prefix == prefix
    deadline = time.monotonic() + 10
    while not await raw.exists(f"{prefix}owned:7") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await raw.zrange(f"{prefix}owned:7", 0, -1) == ["studio:old"]
    assert await raw.ttl(f"{prefix}owned:indexed") > 0
