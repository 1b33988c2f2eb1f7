"""Webhook replicas on Redis: updates go through one Redis Stream and survive a dead replica.

Real `python -m bot` replicas, a real redis-server, real SIGKILL.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from tests.conftest import StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import photo_message, private_user, update
from tests.redis_server import RedisServer
from tests.support import Replica, post_update, replica_pair, visible_messages

LEASE = 2.0


async def post(url: str, body: dict[str, Any]) -> int:
    """POST an update as Telegram does; the status code."""
    return (await post_update(url, body)).status_code


def photo_update(telegram: FakeTelegram, user_id: int, update_id: int) -> dict[str, Any]:
    file_id, unique_id = telegram.add_file(make_image("JPEG", color=(user_id % 250, 1, 2)))
    return update(
        message=photo_message(private_user(user_id), file_id, unique_id), update_id=update_id
    )


@pytest.fixture
async def replicas(
    telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str, tmp_path: Path
) -> AsyncIterator[list[Replica]]:
    """Two webhook replicas on one Redis, with a short lease."""
    async with replica_pair(
        telegram,
        freepik,
        redis_url,
        tmp_path,
        STREAM_LEASE=str(LEASE),
        # Freepik fetches Telegram's link: no relay link served by the replica killed.
        PHOTO_URL_MODE="telegram",
    ) as started:
        yield started


async def holder(redis_url: str, replicas: list[Replica]) -> Replica:
    """The replica whose consumer holds the one pending stream entry."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for _ in range(200):
            [stream] = await client.keys("*updates") or [""]
            pending = await client.xpending_range(stream, "bot", "-", "+", 10) if stream else []
            if pending:
                pid = int(str(pending[0]["consumer"]).rsplit("-", 1)[1])
                return next(r for r in replicas if r.process.pid == pid)
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise AssertionError("no replica took the update")


async def test_a_replica_killed_mid_job_is_taken_over_within_the_lease(
    replicas: list[Replica], telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str
) -> None:
    freepik.latency = 3600  # the first replica's Freepik call never returns
    assert await post(replicas[0].url, photo_update(telegram, 1301, 501)) == 200
    await telegram.wait_for_call("sendMessage", timeout=15)  # "Removing the background…"
    doomed = await holder(redis_url, replicas)
    await asyncio.sleep(0.3)
    doomed.process.send_signal(signal.SIGKILL)
    await doomed.process.wait()
    killed_at = asyncio.get_running_loop().time()

    freepik.latency = 0.1
    await telegram.wait_for(lambda t: bool(t.sent_documents(1301)), timeout=LEASE + 10)
    took = asyncio.get_running_loop().time() - killed_at
    # Lease plus a margin: one renewal period, the job itself and process scheduling.
    assert took < LEASE + 6, took
    await asyncio.sleep(1.0)
    assert len(telegram.sent_documents(1301)) == 1
    # The dead replica's "Removing the background…" is gone: one message in the chat.
    assert [v.method for v in visible_messages(telegram, 1301)] == ["sendDocument"]
    survivor = next(r for r in replicas if r is not doomed)
    assert await post(survivor.url, photo_update(telegram, 1302, 502)) == 200
    await telegram.wait_for(lambda t: bool(t.sent_documents(1302)), timeout=15)
    # Answered entries leave no status notes behind (the stream drops them when it acks).
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for _ in range(50):
            notes = [k for k in await client.keys("*inbox:notes") if await client.hlen(k)]
            if not notes:
                break
            await asyncio.sleep(0.1)
        assert notes == []
    finally:
        await client.aclose()


async def test_the_same_update_posted_to_both_replicas_is_one_job(
    replicas: list[Replica], telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.latency = 0.5
    same = photo_update(telegram, 1401, 601)
    codes = await asyncio.gather(*(post(r.url, same) for r in replicas))
    assert codes == [200, 200]
    await telegram.wait_for(lambda t: bool(t.sent_documents(1401)), timeout=15)
    assert await post(replicas[1].url, same) == 200  # a late redelivery
    await asyncio.sleep(1.5)
    assert len(telegram.sent_documents(1401)) == 1
    assert len(freepik.calls) == 1


async def test_redis_down_answers_503_and_the_repost_is_processed(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, own_redis: RedisServer
) -> None:
    bot = await start_bot(mode="webhook", storage_url=own_redis.url, stream_lease=LEASE)
    assert bot.http_url is not None
    body = photo_update(telegram, 1501, 701)
    own_redis.stop()
    # Telegram keeps an update it did not get a 2xx for and posts it again later.
    assert await post(bot.http_url, body) == 503
    assert not telegram.sent_documents(1501)
    own_redis.start()  # a fresh Redis (no persistence in tests): the stream is recreated
    for _ in range(100):
        if await post(bot.http_url, body) == 200:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the webhook did not accept the update after Redis came back")
    await telegram.wait_for(lambda t: bool(t.sent_documents(1501)), timeout=20)
    await asyncio.sleep(0.5)
    assert len(telegram.sent_documents(1501)) == 1
    assert len(freepik.calls) == 1
