"""An album's money rules are the lifecycle's: each image admitted in album order by the till."""

from __future__ import annotations

import pytest

from bot.storage.base import SPEND
from tests.conftest import StartBot
from tests.fakes import FakeFreepik, FakeTelegram
from tests.transport.test_albums import (
    USER,
    WAIT,
    album_done,
    album_logs,  # noqa: F401 - the fixture, used by name
    ok_calls,
    photos,
    send_all,
    texts,
)

PAID = {"free_removals": "1/day", "credit_packs": "10:25"}


async def test_album_spends_free_removals_then_credits_in_album_order(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    album_logs: pytest.LogCaptureFixture,  # noqa: F811 - the fixture imported above
) -> None:
    running = await start_bot(album_wait=WAIT, **PAID)
    store = running.services.store
    assert await store.credit(USER, 1, "charge-album", stars=25) is not None
    album = photos(telegram, 3, "g-paid")
    send_all(telegram, album)
    lines = await album_done(album_logs)

    # The day's free removal, then the one credit: images 1 and 2; image 3 never reaches Freepik.
    [group] = ok_calls(telegram, "sendMediaGroup")
    uploaded = {upload.filename for upload in group.files.values()}
    assert uploaded == {f"cutout-{m['photo'][-1]['file_unique_id']}.png" for m in album[:2]}
    assert len(freepik.calls) == 2
    assert await store.balance(USER) == 0
    assert len([e for e in await store.ledger(since=0) if e.reason == SPEND]) == 1
    [summary] = texts(telegram)
    assert "Image 3:" in summary
    assert "Image 1" not in summary
    assert "items=3 ok=2 failed=0 limited=1" in lines[0]
