"""Inline answers: the deadline counts from arrival, flood waits, rejected cached file ids."""

from __future__ import annotations

import asyncio
import time

from telegram import Update

from bot.i18n import messages
from bot.removal.sources import ImageSource
from bot.storage.base import StoredCutout
from bot.transport.arrivals import MAX_TRACKED, ArrivalQueue, arrival_of
from tests.conftest import ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import inline_query, private_user, update

USER = private_user(4700)


async def test_arrival_queue_notes_inline_queries_when_they_are_put() -> None:
    queue = ArrivalQueue()
    query = Update.de_json(dict(inline_query(USER, "x", id="q1"), update_id=1), None)
    other = Update.de_json(dict(update(), update_id=2), None)
    before = time.monotonic()
    await queue.put(query)
    queue.put_nowait(other)
    assert queue.qsize() == 2
    await asyncio.sleep(0.05)
    noted = arrival_of(queue, "q1")
    assert before <= noted <= before + 0.04
    assert arrival_of(queue, "q1") >= before + 0.05  # asked once: then "now"
    for n in range(MAX_TRACKED + 5):  # never asked for: the oldest are forgotten
        queue.put_nowait(
            Update.de_json(dict(inline_query(USER, "x", id=f"n{n}"), update_id=n + 3), None)
        )
    assert queue.arrival("n0") is None
    assert queue.arrival(f"n{MAX_TRACKED + 4}") is not None


async def test_bot_uses_the_arrival_queue(start_bot: StartBot) -> None:
    bot = await start_bot()
    assert isinstance(bot.application.update_queue, ArrivalQueue)


async def test_deadline_counts_from_when_the_update_reached_the_bot(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    freepik.latency = 3.0
    bot = await start_bot(mode="webhook", inline_answer_timeout=2.0, freepik_timeout=30)
    link = image_host.add("late.jpg", make_image("JPEG"))
    pushed = inline_query(USER, link)
    telegram.push_update(pushed)  # webhook mode: registers the query with the fake only
    query = Update.de_json(dict(pushed, update_id=1), bot.application.bot).inline_query
    assert query is not None
    started = time.monotonic()
    # The update reached the bot 1.5 s ago (it waited for a handler): 0.5 s are left.
    answering = asyncio.create_task(bot.services.inline.answer(query, received=started - 1.5))
    (call,) = await telegram.wait_for_call("answerInlineQuery", timeout=5)
    assert time.monotonic() - started < 1.0
    assert call.params["results"][0]["title"] == messages.inline_working_title()
    await answering


async def test_flood_wait_longer_than_the_deadline_is_not_waited_out(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot(inline_answer_timeout=2.0)
    telegram.fail_next(
        "answerInlineQuery",
        error_code=429,
        description="Too Many Requests: retry after 4",
        retry_after=4,
    )
    telegram.push_update(inline_query(USER, ""))
    await telegram.wait_for_call("answerInlineQuery", timeout=5)
    await asyncio.sleep(4.5)  # past the flood wait: a late answer would have come by now
    (call,) = telegram.calls_of("answerInlineQuery")
    assert not call.ok


async def test_flood_wait_within_the_deadline_is_waited_out(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot(inline_answer_timeout=6.0)
    telegram.fail_next(
        "answerInlineQuery",
        error_code=429,
        description="Too Many Requests: retry after 1",
        retry_after=1,
    )
    telegram.push_update(inline_query(USER, ""))
    first, second = await telegram.wait_for_call("answerInlineQuery", count=2, timeout=5)
    assert not first.ok
    await telegram.wait_for(lambda t: second.response is not None, timeout=5)
    assert second.ok
    assert second.at - first.at >= 0.95


async def test_rejected_cached_file_id_in_an_inline_answer_runs_the_job_afresh(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    bot = await start_bot()
    link = image_host.add("stale.jpg", make_image("JPEG"))
    stale = StoredCutout("BQACAgIAAxkBAAIstale-inline", "cutout.png", time.time())
    await bot.services.store.put_cutout(ImageSource.link(link).key, stale, 3600)
    telegram.push_update(inline_query(USER, link))
    rejected, accepted = await telegram.wait_for_call("answerInlineQuery", count=2, timeout=10)
    assert rejected.params["results"][0]["document_file_id"] == stale.file_id
    assert not rejected.ok
    await telegram.wait_for(lambda t: accepted.response is not None, timeout=5)
    assert accepted.ok, accepted.response
    fresh = accepted.params["results"][0]["document_file_id"]
    assert fresh != stale.file_id
    assert len(freepik.calls) == 1
    cached = await bot.services.store.get_cutout(ImageSource.link(link).key)
    assert cached is not None
    assert cached.file_id == fresh


async def test_recent_list_without_the_file_ids_telegram_rejects(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot()
    good_id, _ = telegram.add_file(make_image("PNG", size=(20, 20)))
    good = StoredCutout(good_id, "cutout-good.png", time.time() - 60)
    stale = StoredCutout("BQACAgIAAxkBAAIstale-recent", "cutout-stale.png", time.time())
    await bot.services.store.push_recent(USER["id"], good)
    await bot.services.store.push_recent(USER["id"], stale)
    telegram.push_update(inline_query(USER, ""))
    rejected, accepted = await telegram.wait_for_call("answerInlineQuery", count=2, timeout=10)
    offered = [r["document_file_id"] for r in rejected.params["results"]]
    assert offered == [stale.file_id, good_id]
    assert not rejected.ok
    await telegram.wait_for(lambda t: accepted.response is not None, timeout=5)
    assert accepted.ok, accepted.response
    assert [r["document_file_id"] for r in accepted.params["results"]] == [good_id]
    assert accepted.at - rejected.at < bot.services.settings.inline_answer_timeout
    assert await bot.services.store.recent(USER["id"]) == [good]
    assert not freepik.calls


async def test_recent_list_refused_without_a_culprit_is_answered_with_the_bot_button(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await start_bot()
    good_id, _ = telegram.add_file(make_image("PNG", size=(20, 20)))
    good = StoredCutout(good_id, "cutout-good.png", time.time())
    await bot.services.store.push_recent(USER["id"], good)
    # Telegram refuses the list, yet getFile still knows every file id in it.
    telegram.fail_next(
        "answerInlineQuery",
        error_code=400,
        description="Bad Request: wrong file identifier/HTTP URL specified",
    )
    telegram.push_update(inline_query(USER, ""))
    rejected, accepted = await telegram.wait_for_call("answerInlineQuery", count=2, timeout=10)
    assert not rejected.ok
    await telegram.wait_for(lambda t: accepted.response is not None, timeout=5)
    assert accepted.ok, accepted.response
    assert accepted.params["results"] == []
    assert accepted.params["button"]["text"] == messages.inline_no_recent_button()
    assert [c.params["file_id"] for c in telegram.calls_of("getFile")] == [good_id]
    assert await bot.services.store.recent(USER["id"]) == [good]
