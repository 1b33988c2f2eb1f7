"""Every update is recorded in a form that always serialises: the JSON as Telegram sent it.

python-telegram-bot's `Update.to_dict()` is not always JSON: an `InaccessibleMessage` (a pinned
message Telegram can no longer show, `date` 0) keeps a `datetime` in it. The journal records
the update before any handler runs, so such an update used to fail there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import redis.asyncio as redis
from telegram import Bot, Update

from bot.requests.journal import (
    SEEN_TTL,
    ArrivedUpdates,
    RequestJournal,
    note_sent,
    sent_before,
    update_json,
)
from bot.storage.base import PendingUpdate
from bot.storage.factory import create_store
from bot.storage.memory import MemoryStore
from tests.conftest import RunningBot, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import (
    group_chat,
    inaccessible_message,
    photo_message,
    pin_notice,
    private_chat,
    private_user,
    update,
)
from tests.support import post_update, redis_leftovers, visible_messages

USER = private_user(9300)
CHAT = private_chat(USER)
MODES = ["polling", "webhook", "webhook-redis"]


async def start(start_bot: StartBot, mode: str, redis_url: str) -> RunningBot:
    if mode == "polling":
        return await start_bot()
    if mode == "webhook":
        return await start_bot(mode="webhook")
    return await start_bot(mode="webhook", storage_url=redis_url)


async def deliver(bot: RunningBot, telegram: FakeTelegram, body: dict[str, Any]) -> None:
    """Hand `body` to the bot the way its mode receives updates."""
    if bot.settings.mode == "polling":
        telegram.push_update(body)
        return
    assert bot.http_url is not None
    response = await post_update(bot.http_url, body)
    assert response.status_code == 200, response.text


async def nothing_pending(bot: RunningBot) -> None:
    for _ in range(200):
        if not await bot.services.store.pending_updates():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(await bot.services.store.pending_updates())


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.fixture
def url_of_redis(request: pytest.FixtureRequest) -> str:
    """A Redis URL, only started for the mode that needs it."""
    if request.node.callspec.params.get("mode") != "webhook-redis":
        return ""
    return str(request.getfixturevalue("redis_url"))


@pytest.mark.parametrize("mode", MODES)
async def test_a_photo_replying_to_the_pin_of_a_deleted_message_gets_its_cutout(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    caplog: pytest.LogCaptureFixture,
    url_of_redis: str,
    mode: str,
) -> None:
    bot = await start(start_bot, mode, url_of_redis)
    notice = pin_notice(USER, inaccessible_message(CHAT, 17))
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    photo = photo_message(USER, file_id, unique_id, reply_to_message=notice)
    await deliver(bot, telegram, update(message=photo, update_id=501))
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=15)
    await nothing_pending(bot)
    assert errors(caplog) == []
    assert len(freepik.calls) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_a_pin_of_a_deleted_message_is_recorded_and_needs_no_reply(
    start_bot: StartBot,
    telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
    url_of_redis: str,
    mode: str,
) -> None:
    bot = await start(start_bot, mode, url_of_redis)
    notice = pin_notice(USER, inaccessible_message(CHAT, 9))
    await deliver(bot, telegram, update(message=notice, update_id=601))
    # A message after it is served as usual: the pin did not stop anything.
    file_id, unique_id = telegram.add_file(make_image("PNG"))
    photo = photo_message(USER, file_id, unique_id)
    await deliver(bot, telegram, update(message=photo, update_id=602))
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=15)
    await nothing_pending(bot)
    assert errors(caplog) == []

    # A service message is not a request: no hint about photos under a pin.
    def left(t: FakeTelegram) -> list[tuple[str, int | None]]:
        return [(v.method, v.reply_to) for v in visible_messages(t, USER["id"])]

    only_the_cutout = [("sendDocument", photo["message_id"])]
    await telegram.wait_for(lambda t: left(t) == only_the_cutout, timeout=10)


async def test_polling_records_the_json_as_telegram_sent_it(
    start_bot: StartBot, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_bot()
    store = bot.services.store
    recorded: dict[int, str] = {}
    accept = store.accept_update

    async def spy(update_id: int, payload: str, ttl: float) -> bool:
        recorded[update_id] = payload
        return await accept(update_id, payload, ttl)

    monkeypatch.setattr(store, "accept_update", spy)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    notice = pin_notice(USER, inaccessible_message(CHAT, 3))
    body = update(
        message=photo_message(USER, file_id, unique_id, reply_to_message=notice), update_id=701
    )
    telegram.push_update(body)
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=15)
    assert json.loads(recorded[701]) == body


# --- the fallback when no JSON came with the update (built in-process) ---------------------

_USER: dict[str, Any] = {"id": 1, "is_bot": False, "first_name": "A"}
_GROUP = group_chat(-1001, "G")
_MESSAGE: dict[str, Any] = {"message_id": 5, "date": 1_700_000_000, "chat": CHAT, "from": _USER}
_GONE = inaccessible_message(CHAT, 3)

# Update kinds that carry dates (Unix time in JSON, datetime in python-telegram-bot).
DATED: dict[str, dict[str, Any]] = {
    "pinned inaccessible": {"message": {**_MESSAGE, "pinned_message": _GONE}},
    "reply to a pin": {
        "message": {
            **_MESSAGE,
            "text": "x",
            "reply_to_message": {**_MESSAGE, "pinned_message": _GONE},
        }
    },
    "edited pin": {
        "edited_message": {**_MESSAGE, "edit_date": 1_700_000_100, "pinned_message": _GONE}
    },
    "edited": {"edited_message": {**_MESSAGE, "text": "x", "edit_date": 1_700_000_100}},
    "forwarded": {
        "message": {
            **_MESSAGE,
            "text": "x",
            "forward_origin": {"type": "user", "date": 1_699_000_000, "sender_user": _USER},
        }
    },
    "button on a deleted message": {
        "callback_query": {
            "id": "1",
            "from": _USER,
            "chat_instance": "c",
            "data": "d",
            "message": _GONE,
        }
    },
    "bot banned until": {
        "my_chat_member": {
            "chat": _GROUP,
            "from": _USER,
            "date": 1_700_000_000,
            "old_chat_member": {"status": "member", "user": _USER},
            "new_chat_member": {"status": "kicked", "user": _USER, "until_date": 1_700_009_999},
        }
    },
    "member banned forever": {
        "chat_member": {
            "chat": _GROUP,
            "from": _USER,
            "date": 1_700_000_000,
            "old_chat_member": {"status": "member", "user": _USER},
            "new_chat_member": {"status": "kicked", "user": _USER, "until_date": 0},
        }
    },
    "join request": {
        "chat_join_request": {
            "chat": _GROUP,
            "from": _USER,
            "user_chat_id": 1,
            "date": 1_700_000_000,
        }
    },
    "video chat scheduled": {
        "message": {**_MESSAGE, "video_chat_scheduled": {"start_date": 1_700_000_000}}
    },
    "channel post pin": {"channel_post": {**_MESSAGE, "chat": _GROUP, "pinned_message": _GONE}},
}


@pytest.mark.parametrize("kind", list(DATED))
def test_update_json_serialises_every_dated_update_kind(kind: str) -> None:
    data = {"update_id": 42, **DATED[kind]}
    parsed = Update.de_json(json.loads(json.dumps(data)), None)
    text = update_json(parsed)
    again = Update.de_json(json.loads(text), None)
    assert again == parsed
    assert again.to_dict().keys() == parsed.to_dict().keys()


def test_arrived_updates_are_taken_once_and_bounded() -> None:
    arrived = ArrivedUpdates(limit=3)
    for update_id in range(1, 6):
        arrived.keep({"update_id": update_id, "message": {"text": "é"}})
    assert arrived.take(1) is None  # the oldest went first
    assert json.loads(arrived.take(5) or "") == {"update_id": 5, "message": {"text": "é"}}
    assert arrived.take(5) is None
    arrived.keep({"no": "id"})  # nothing to key it by: ignored
    assert len(arrived) == 2


# --- what a finished update leaves in Redis -------------------------------------------------


async def leftovers_at(url: str, update_id: int) -> list[str]:
    """`redis_leftovers` of `update_id` in the Redis at `url`."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return await redis_leftovers(client, update_id)
    finally:
        await client.aclose()


async def test_a_finished_update_leaves_only_its_seen_marker_in_redis(
    start_bot: StartBot, telegram: FakeTelegram, redis_url: str
) -> None:
    bot = await start_bot(storage_url=redis_url)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, file_id, unique_id), update_id=8801))
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=15)
    await nothing_pending(bot)
    await asyncio.sleep(0.3)  # status notes are written in the background
    # Documented: update ids are remembered for 24 hours, so a redelivery is recognised.
    seen = f"{bot.settings.redis_prefix}seen:8801"
    assert await leftovers_at(redis_url, 8801) == [seen]
    client = redis.Redis.from_url(redis_url)
    try:
        assert 0 < await client.ttl(seen) <= SEEN_TTL
    finally:
        await client.aclose()


async def test_a_record_finished_while_being_resumed_is_not_run_again(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes on one Redis (a rolling deploy): the new one reads the records while the
    # old one still finishes one of them.
    store = create_store(redis_url, prefix="t:")
    journal = RequestJournal(store, Bot("123:abcdefghijklmnopqrstuvwxyz"))
    body = update(message=photo_message(USER, "f", "u"), update_id=8802)
    try:
        assert await store.accept_update(8802, json.dumps(body), SEEN_TTL)
        stale: list[PendingUpdate] = await store.pending_updates()
        await store.finish_update(8802)

        async def read_before_the_finish() -> list[PendingUpdate]:
            return stale

        monkeypatch.setattr(store, "pending_updates", read_before_the_finish)
        enqueued: list[Update] = []

        async def enqueue(item: Update) -> None:
            enqueued.append(item)

        assert await journal.resume(enqueue) == 0
        assert enqueued == []
        assert await leftovers_at(redis_url, 8802) == ["t:seen:8802"]
    finally:
        await store.aclose()


async def test_a_one_off_message_a_dead_run_sent_is_known_to_every_later_run() -> None:
    store = MemoryStore()
    bot = Bot("123:abcdefghijklmnopqrstuvwxyz")
    body = update(message=photo_message(USER, "f", "u"), update_id=8803)
    seen: list[bool] = []

    async def dies_after_sending() -> None:
        seen.append(sent_before("confirmation"))
        note_sent("confirmation")
        assert sent_before("confirmation")
        await asyncio.sleep(0.05)  # the note is written in the background
        raise RuntimeError("killed")

    first = RequestJournal(store, bot)
    arrived = Update.de_json(body, bot)
    assert await first.accept(arrived, json.dumps(body))
    first.queued(arrived)
    with pytest.raises(RuntimeError):
        await first.run(arrived, dies_after_sending)
    # Two restarts: the resumed run dies as well, and the next one still knows.
    resumed: list[Update] = []

    async def enqueue(item: Update) -> None:
        resumed.append(item)

    for _ in range(2):
        journal = RequestJournal(store, bot)
        assert await journal.resume(enqueue) == 1
        with pytest.raises(RuntimeError):
            await journal.run(resumed[-1], dies_after_sending)
    assert seen == [False, True, True]
    [record] = await store.pending_updates()
    assert record.note is not None
    assert json.loads(record.note) == {"status": [], "sent": ["confirmation"]}
