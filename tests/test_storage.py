"""The memory state store: TTLs, recent lists, claims."""

from __future__ import annotations

import asyncio

import pytest

from bot.storage import RECENT_LIMIT, MemoryStore, StoredCutout, create_store


def cutout(n: int) -> StoredCutout:
    return StoredCutout(f"file-{n}", f"name-{n}.png", float(n))


async def test_cutouts_expire() -> None:
    store = MemoryStore()
    await store.put_cutout("k", cutout(1), ttl=0.05)
    assert await store.get_cutout("k") == cutout(1)
    await asyncio.sleep(0.08)
    assert await store.get_cutout("k") is None


async def test_zero_ttl_is_not_cached() -> None:
    store = MemoryStore()
    await store.put_cutout("k", cutout(1), ttl=0)
    assert await store.get_cutout("k") is None


async def test_cache_is_bounded() -> None:
    store = MemoryStore(max_cached=2)
    for n in range(3):
        await store.put_cutout(f"k{n}", cutout(n), ttl=60)
    assert await store.get_cutout("k0") is None
    assert await store.get_cutout("k2") == cutout(2)


async def test_recent_is_newest_first_deduplicated_and_capped() -> None:
    store = MemoryStore()
    for n in range(RECENT_LIMIT + 5):
        await store.push_recent(1, cutout(n))
    await store.push_recent(1, cutout(10))
    recent = await store.recent(1)
    assert len(recent) == RECENT_LIMIT
    assert recent[0] == cutout(10)
    assert recent[1] == cutout(RECENT_LIMIT + 4)
    assert [c.file_id for c in recent].count("file-10") == 1
    assert await store.recent(2) == []
    assert len(await store.recent(1, limit=3)) == 3


async def test_claims() -> None:
    store = MemoryStore()
    assert await store.claim("k", ttl=60)
    assert not await store.claim("k", ttl=60)
    await store.release("k")
    assert await store.claim("k", ttl=0.01)
    await asyncio.sleep(0.02)
    assert await store.claim("k", ttl=60), "an expired claim can be taken over"


def test_round_trip_and_factory() -> None:
    assert StoredCutout.from_dict(cutout(3).to_dict()) == cutout(3)
    assert isinstance(create_store("memory://"), MemoryStore)
    with pytest.raises(ValueError, match="unsupported"):
        create_store("mongodb://x")
