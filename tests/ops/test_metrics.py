"""`GET /metrics` after a known sequence of jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from telegram import Update

from tests.conftest import ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import inline_query, photo_message, private_user, update
from tests.support import visible_messages

USER = private_user(9500)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample by (name, labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def scrape_until(base_url: str, ready: Callable[[Samples], bool]) -> Samples:
    """Scrape /metrics until `ready` holds (or give up after ~3 s and return the last)."""
    async with httpx.AsyncClient() as client:
        for _ in range(60):
            response = await client.get(f"{base_url}/metrics")
            assert response.status_code == 200
            found = samples(response.text)
            if ready(found):
                break
            await asyncio.sleep(0.05)
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_a_known_sequence(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(mode="webhook", rate_limit="3/minute")
    assert bot.http_url is not None
    app = bot.application

    async def photo(file: tuple[str, str], expect_documents: int = 0, text: str = "") -> None:
        message = photo_message(USER, *file)
        await app.update_queue.put(
            Update.de_json(update(message=message, update_id=_next()), app.bot)
        )
        if expect_documents:
            await telegram.wait_for(
                lambda t: len(t.sent_documents(USER["id"])) >= expect_documents, timeout=10
            )
        if text:
            await telegram.wait_for(
                lambda t: any(v.text and text in v.text for v in visible_messages(t, USER["id"]))
            )

    jobs = "nobg_jobs_total"
    first = telegram.add_file(make_image("JPEG"))
    await photo(first, expect_documents=1)  # new job: ok
    # The document reaches Telegram before the job has cached its file id: until the job is
    # counted, a repeat would join it rather than hit the cache.
    await scrape_until(
        bot.http_url, lambda f: value(f, jobs, kind="photo", outcome="ok", via="leader") > 0
    )
    await photo(first, expect_documents=2)  # cache hit: free
    freepik.fail_next(400)
    await photo(telegram.add_file(make_image("PNG")), text="couldn't read")  # rejected
    await photo(telegram.add_file(make_image("JPEG", color=(9, 9, 9))), expect_documents=3)
    await photo(telegram.add_file(make_image("JPEG", color=(1, 1, 1))), text="your limit")

    # A request is counted after its reply went out and its status message was deleted: the
    # refusal can be counted before the job before it. Scrape until five jobs are counted.
    found = await scrape_until(
        bot.http_url,
        lambda f: sum(v for (name, _), v in f.items() if name == jobs) >= 5,
    )
    assert value(found, jobs, kind="photo", outcome="ok", via="leader") == 2
    assert value(found, jobs, kind="photo", outcome="ok", via="cached") == 1
    assert value(found, jobs, kind="photo", outcome="rejected", via="leader") == 1
    assert value(found, jobs, kind="photo", outcome="rate_limited", via="-") == 1
    assert value(found, "nobg_freepik_responses_total", status="200") == 2
    assert value(found, "nobg_freepik_responses_total", status="400") == 1
    assert value(found, "nobg_rate_limit_refusals_total", scope="user") == 1
    assert value(found, "nobg_cache_lookups_total", result="hit") == 1
    assert value(found, "nobg_cache_lookups_total", result="miss") == 3
    for stage in ("queue", "freepik", "download", "upload", "total"):
        assert value(found, "nobg_job_stage_seconds_count", stage=stage) == 3
    assert value(found, "nobg_jobs_in_flight") == 0
    assert value(found, "nobg_queue_depth") == 0


async def test_gauges_show_jobs_in_flight_and_queued(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.latency = 1.0
    bot = await start_bot(mode="webhook", max_concurrent_jobs=1)
    assert bot.http_url is not None
    for n in range(2):
        message = photo_message(private_user(9600 + n), *telegram.add_file(make_image("JPEG")))
        await bot.application.update_queue.put(
            Update.de_json(update(message=message, update_id=_next()), bot.application.bot)
        )
    await telegram.wait_for_call("getFile")
    async with httpx.AsyncClient() as client:
        found = samples((await client.get(f"{bot.http_url}/metrics")).text)
    assert value(found, "nobg_jobs_in_flight") == 1
    assert value(found, "nobg_queue_depth") == 1


_counter = iter(range(1000, 100000))


def _next() -> int:
    return next(_counter)


async def test_albums_and_inline_queries_are_counted(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    bot = await start_bot(mode="webhook", album_wait=0.3)
    assert bot.http_url is not None
    app = bot.application
    user = private_user(9700)
    for _ in range(2):
        message = photo_message(user, *telegram.add_file(make_image("JPEG")), media_group_id="g1")
        await app.update_queue.put(
            Update.de_json(update(message=message, update_id=_next()), app.bot)
        )
    await telegram.wait_for_call("sendMediaGroup", timeout=15)
    query = inline_query(user, image_host.add("inline.jpg", make_image("JPEG")))
    telegram.push_update(query)
    await app.update_queue.put(Update.de_json(dict(query, update_id=_next()), app.bot))
    await telegram.wait_for_call("answerInlineQuery", timeout=15)
    found = await scrape_until(
        bot.http_url,
        lambda f: value(f, "nobg_jobs_total", kind="inline", outcome="ok", via="leader") > 0,
    )
    assert value(found, "nobg_jobs_total", kind="photo", outcome="ok", via="leader") == 2
    assert value(found, "nobg_jobs_total", kind="inline", outcome="ok", via="leader") == 1
    assert value(found, "nobg_cache_lookups_total", result="miss") == 3
    assert value(found, "nobg_freepik_responses_total", status="200") == 3
