"""FREEPIK_MAX_RATE and FREEPIK_DAILY_BUDGET: shared through the storage backend."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import Update

from bot.i18n import messages
from bot.requests.admission import async_storage
from bot.requests.spending import DailyBudget, RateCap, rate_item
from tests.conftest import BOT_TOKEN, ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import inline_query, photo_message, private_user, sent_again, update
from tests.support import replica_pair, run_cli, visible_messages

ADMIN = 4500
USER = 4501


def photo(telegram: FakeTelegram, user_id: int) -> dict[str, Any]:
    """A private photo update carrying a new image."""
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(40, 30)))
    return update(message=photo_message(private_user(user_id), file_id, unique_id))


def at_most_per_second(times: list[float], rate: int, slack: float = 0.1) -> bool:
    """Whether no window of one second (less `slack` for network jitter) holds > rate times."""
    ordered = sorted(times)
    return all(ordered[i + rate] - ordered[i] >= 1.0 - slack for i in range(len(ordered) - rate))


# --- the rate cap -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "amount", "seconds"), [(10, 10, 1), (0.5, 1, 2), (2.5, 5, 2), (0.3, 3, 10)]
)
def test_rate_setting_becomes_a_limits_item(rate: float, amount: int, seconds: int) -> None:
    item = rate_item(rate)
    assert (item.amount, item.get_expiry()) == (amount, seconds)


async def test_jobs_over_the_rate_wait_in_order() -> None:
    cap = RateCap(10, async_storage("memory://"))
    passed: list[tuple[int, float]] = []

    async def job(number: int) -> None:
        await cap.wait()
        passed.append((number, time.monotonic()))

    tasks = []
    for number in range(25):
        tasks.append(asyncio.create_task(job(number)))
        await asyncio.sleep(0)  # each job queues before the next is created
    await asyncio.gather(*tasks)
    assert [number for number, _ in passed] == list(range(25))
    assert at_most_per_second([at for _, at in passed], 10, slack=0.02)
    assert passed[-1][1] - passed[0][1] >= 1.9  # 25 at 10/s: three windows


async def test_rate_cap_is_shared_by_two_processes_on_redis(
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    redis_url: str,
    tmp_path: Path,
) -> None:
    async with replica_pair(
        telegram, freepik, redis_url, tmp_path, FREEPIK_MAX_RATE="2"
    ) as replicas:
        users = list(range(4600, 4608))
        await asyncio.gather(
            *(
                replicas[i % 2].post(dict(photo(telegram, user), update_id=user))
                for i, user in enumerate(users)
            )
        )
        await telegram.wait_for(
            lambda t: all(len(t.sent_documents(user)) == 1 for user in users), timeout=30
        )
    times = [call.received for call in freepik.calls]
    assert len(times) == 8
    # Slack for the way from the limiter to the fake on a loaded machine; without the shared
    # cap the two processes together would send 4/s (half-second gaps) or all at once.
    assert at_most_per_second(times, 2, slack=0.3)
    assert max(times) - min(times) >= 2.5  # 8 POSTs at 2/s: four windows
    # Nobody was refused: over the rate, jobs wait.
    for user in users:
        assert [v.method for v in visible_messages(telegram, user)] == ["sendDocument"]


# --- the daily budget -----------------------------------------------------------------------


async def test_daily_budget_refuses_new_jobs_only(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(mode="webhook", freepik_daily_budget=2, admin_ids=frozenset({ADMIN}))
    assert bot.http_url is not None
    app = bot.application

    update_ids = iter(range(1, 100))

    async def push(body: dict[str, Any]) -> None:
        body = dict(body, update_id=next(update_ids))
        await app.update_queue.put(Update.de_json(body, app.bot))

    first = photo(telegram, USER)
    await push(first)
    await telegram.wait_for(lambda t: len(t.sent_documents(USER)) == 1, timeout=15)
    await push(photo(telegram, USER + 1))
    await telegram.wait_for(lambda t: len(t.sent_documents(USER + 1)) == 1, timeout=15)

    # Third new job: refused with the plain explanation, no Freepik call.
    await push(photo(telegram, USER + 2))
    await telegram.wait_for(
        lambda t: [v.text for v in visible_messages(t, USER + 2)] == [messages.budget_used_up()],
        timeout=15,
    )
    assert len(freepik.calls) == 2

    # A cache hit is still served (the same image again).
    again = sent_again(first["message"])
    await push(update(message=again))
    await telegram.wait_for(lambda t: len(t.sent_documents(USER)) == 2, timeout=15)

    # An admin is still served, and that call is counted.
    await push(photo(telegram, ADMIN))
    await telegram.wait_for(lambda t: len(t.sent_documents(ADMIN)) == 1, timeout=15)
    assert len(freepik.calls) == 3

    async with httpx.AsyncClient(base_url=bot.http_url) as client:
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert "nobg_freepik_budget_remaining 0.0" in metrics
    assert 'nobg_rate_limit_refusals_total{scope="budget"} 1.0' in metrics


async def test_a_retry_is_not_made_past_the_budget(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(freepik_daily_budget=1)
    freepik.fail_next(500)
    telegram.push_update(photo(telegram, USER))
    await telegram.wait_for(
        lambda t: [v.text for v in visible_messages(t, USER)] == [messages.budget_used_up()],
        timeout=15,
    )
    assert len(freepik.calls) == 1


async def test_budget_is_shared_through_redis_and_shown_by_doctor(
    telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"nobg:{BOT_TOKEN.split(':')[0]}:"  # the default REDIS_PREFIX
    other_replica = DailyBudget(5, async_storage(redis_url, prefix=prefix))
    assert await other_replica.spend()
    assert await other_replica.spend()
    code, output = await run_cli(
        ["doctor"],
        telegram,
        freepik,
        tmp_path,
        STORAGE_URL=redis_url,
        FREEPIK_DAILY_BUDGET="5",
    )
    assert code == 0, output
    assert "2 of 5 calls used" in output
    same_store = DailyBudget(5, async_storage(redis_url, prefix=prefix))
    assert await same_store.remaining() == 3


async def test_inline_query_over_the_budget_gets_the_plain_explanation(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    bot = await start_bot(freepik_daily_budget=1)
    await bot.services.gate.budget.spend()  # today's one call is used
    link = image_host.add("over-budget.jpg", make_image("JPEG"))
    telegram.push_update(inline_query(private_user(USER), link))
    (call,) = await telegram.wait_for_call("answerInlineQuery", timeout=10)
    (article,) = call.params["results"]
    assert article["input_message_content"]["message_text"] == messages.budget_used_up()
    assert freepik.calls == []
    registry = bot.services.metrics.registry
    await telegram.wait_for(  # counted once the answer is out
        lambda t: (
            registry.get_sample_value("nobg_rate_limit_refusals_total", {"scope": "budget"}) == 1
        )
    )
