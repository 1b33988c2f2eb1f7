"""Several replicas in webhook mode sharing one Redis, and Redis going away and coming back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import Update

from bot.i18n import messages
from tests.conftest import ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import (
    inline_query,
    photo_message,
    private_user,
    sent_again,
    text_message,
    update,
)
from tests.redis_server import RedisServer
from tests.support import Replica, replica_pair, visible_messages


@pytest.fixture
async def replicas(
    telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str, tmp_path: Path
) -> AsyncIterator[list[Replica]]:
    """Two replicas with a limit of two photos a minute per user."""
    async with replica_pair(
        telegram, freepik, redis_url, tmp_path, RATE_LIMIT="2/minute"
    ) as started:
        yield started


def photo(telegram: FakeTelegram, user_id: int, image: bytes | None = None) -> dict[str, Any]:
    file_id, unique_id = telegram.add_file(image or make_image("JPEG"))
    return photo_message(private_user(user_id), file_id, unique_id)


async def test_limit_cache_relay_and_coalescing_hold_across_replicas(
    replicas: list[Replica], telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    a, b = replicas

    # A user's limit (2/minute) holds across both replicas.
    await a.post(update(message=photo(telegram, 1), update_id=1))
    await telegram.wait_for(lambda t: len(t.sent_documents(1)) == 1, timeout=15)
    await b.post(update(message=photo(telegram, 1), update_id=2))
    await telegram.wait_for(lambda t: len(t.sent_documents(1)) == 2, timeout=15)
    await a.post(update(message=photo(telegram, 1), update_id=3))
    await telegram.wait_for(
        lambda t: any("your limit" in (v.text or "") for v in visible_messages(t, 1)), timeout=15
    )
    assert len(freepik.calls) == 2

    # Relay links minted by A (photos sent to A) point at B, which served them from Redis.
    assert all(call.image_url.startswith(b.url + "/files/") for call in freepik.calls)

    # A cache entry made by one replica is a hit on the other.
    message = photo(telegram, 2)
    await a.post(update(message=message, update_id=4))
    await telegram.wait_for(lambda t: len(t.sent_documents(2)) == 1, timeout=15)
    again = sent_again(message)
    await b.post(update(message=again, update_id=5))
    await telegram.wait_for(lambda t: len(t.sent_documents(2)) == 2, timeout=15)
    assert telegram.sent_documents(2)[1].files == {}
    assert len(freepik.calls) == 3

    # The same link sent to both at once costs one Freepik call.
    freepik.latency = 1.0
    link = image_host.add("shared.jpg", make_image("JPEG"))
    await asyncio.gather(
        a.post(update(message=text_message(private_user(3), link), update_id=6)),
        b.post(update(message=text_message(private_user(4), link), update_id=7)),
    )
    await telegram.wait_for(
        lambda t: bool(t.sent_documents(3)) and bool(t.sent_documents(4)), timeout=20
    )
    assert len(freepik.calls) == 4
    assert [c.image_url for c in freepik.calls[3:]] == [link]


async def test_redis_outage_gives_clear_replies_and_recovers(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, own_redis: RedisServer
) -> None:
    bot = await start_bot(mode="webhook", storage_url=own_redis.url, rate_limit="5/minute")
    assert bot.http_url is not None
    app = bot.application

    async def send(user_id: int) -> None:
        await app.update_queue.put(
            Update.de_json(update(message=photo(telegram, user_id), update_id=user_id), app.bot)
        )

    async with httpx.AsyncClient(base_url=bot.http_url) as client:
        assert (await client.get("/readyz")).status_code == 200
        own_redis.stop()
        await send(11)
        await telegram.wait_for(
            lambda t: any(
                v.text == messages.temporarily_unavailable() for v in visible_messages(t, 11)
            ),
            timeout=15,
        )
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        # Inline mode says so too.
        query = inline_query(private_user(13), "https://example.com/cat.jpg")
        telegram.push_update(query)  # registers the query with the fake, which checks answers
        await app.update_queue.put(Update.de_json(dict(query, update_id=99), app.bot))
        (answer,) = await telegram.wait_for_call("answerInlineQuery", timeout=15)
        (article,) = answer.params["results"]
        assert article["input_message_content"]["message_text"] == (
            messages.temporarily_unavailable()
        )
        assert freepik.calls == []

        own_redis.start()
        for _ in range(100):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("/readyz did not recover after Redis came back")
        await send(12)
        await telegram.wait_for(lambda t: bool(t.sent_documents(12)), timeout=15)
    assert not bot.task.done()
