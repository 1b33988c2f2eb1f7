"""An album's money rules: credits for the whole album first, then each image by the till."""

from __future__ import annotations

import pytest
from limits import parse

from bot.i18n import messages
from bot.removal.sources import ImageSource
from bot.requests.admission import Refusal
from bot.requests.batch import Entry, State
from bot.storage.base import SPEND
from bot.transport.surfaces.album import summary
from tests.conftest import StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import photo_message, private_user, update
from tests.support import (
    ALBUM_WAIT,
    USER,
    ok_calls,
    photos,
    send_album,
    texts,
    visible_messages,
    wait_document,
)

PAID = {"free_removals": "1/day", "credit_packs": "10:25"}


async def test_an_album_short_of_credits_gets_one_reply_and_no_freepik_call(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    running = await start_bot(album_wait=ALBUM_WAIT, **PAID)
    store = running.services.store
    assert await store.credit(USER, 1, "charge-album", stars=25) is not None
    # The album needs 3: one free removal, one credit.
    lines = await send_album(telegram, info_logs, photos(telegram, 3, "g-short"))

    [reply] = ok_calls(telegram, "sendMessage")
    assert reply.params["text"] == messages.album_credits_missing(1)
    assert "buy:10:25" in str(reply.params["reply_markup"]), "offers the packs"
    assert len(visible_messages(telegram, USER)) == 1, "the one reply"
    assert not ok_calls(telegram, "sendMediaGroup")
    assert not freepik.calls
    assert await store.balance(USER) == 1
    assert not [e for e in await store.ledger(since=0) if e.reason == SPEND]
    assert "items=3 ok=0 failed=0 limited=3" in lines[0]


async def test_an_album_with_enough_spends_free_removals_then_credits(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    running = await start_bot(album_wait=ALBUM_WAIT, **PAID)
    store = running.services.store
    assert await store.credit(USER, 1, "charge-album", stars=25) is not None
    album = photos(telegram, 2, "g-paid")
    lines = await send_album(telegram, info_logs, album)

    [group] = ok_calls(telegram, "sendMediaGroup")
    assert len(group.files) == 2
    assert len(freepik.calls) == 2
    assert await store.balance(USER) == 0
    assert len([e for e in await store.ledger(since=0) if e.reason == SPEND]) == 1
    assert texts(telegram) == []
    assert "items=2 ok=2 failed=0 limited=0" in lines[0]


async def test_cached_images_of_an_album_need_no_credit(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    running = await start_bot(album_wait=ALBUM_WAIT, **PAID)
    store = running.services.store
    known = telegram.add_file(make_image("JPEG", size=(50, 40), color=(200, 10, 10)))
    telegram.push_update(update(message=photo_message(private_user(USER), *known)))
    await wait_document(telegram, USER, 1)  # the day's free removal; now cached
    await store.credit(USER, 1, "charge-cache", stars=25)

    fresh = telegram.add_file(make_image("JPEG", size=(52, 40), color=(10, 200, 10)))
    lines = await send_album(
        telegram, info_logs, photos(telegram, 2, "g-cache", files=[known, fresh])
    )

    assert "items=2 ok=2 failed=0 limited=0" in lines[0]
    assert len(freepik.calls) == 2  # the single photo, then the album's new image only
    assert await store.balance(USER) == 0


def test_images_refused_for_credits_have_their_own_reason() -> None:
    source = ImageSource.link("https://example.org/a.jpg")
    item = parse("1/day")
    entries = [
        Entry(1, source, state=State.OK),
        Entry(2, source, state=State.LIMITED, refusal=Refusal(3600, item, "credits")),
        Entry(3, source, state=State.LIMITED, refusal=Refusal(60, item, "user")),
    ]
    text = summary(entries)
    credits_reason = messages.album_limited_reason(1, messages.format_wait(3600), "credits")
    user_reason = messages.album_limited_reason(1, messages.format_wait(60), "user")
    assert messages.album_summary_line(messages.album_image_names([2]), credits_reason) in text
    assert messages.album_summary_line(messages.album_image_names([3]), user_reason) in text
    assert credits_reason != user_reason
