"""The lifecycle's money rules end to end: free removals, then one credit per Freepik call."""

from __future__ import annotations

import asyncio

from bot.storage.base import SPEND
from tests.conftest import StartBot
from tests.fakes import FakeFreepik, FakeTelegram
from tests.fakes.updates import sent_again
from tests.support import USER, photo, send, visible_messages, wait_document

PAID = {"free_removals": "1/day", "credit_packs": "10:25"}


async def test_free_removal_then_a_credit_then_a_refusal_without_a_freepik_call(
    telegram: FakeTelegram, freepik: FakeFreepik, start_bot: StartBot
) -> None:
    running = await start_bot(**PAID)
    store = running.services.store
    assert await store.credit(USER, 1, "charge-1", stars=25) is not None

    send(telegram, photo(telegram))
    await wait_document(telegram, USER, 1)
    assert await store.balance(USER) == 1  # the day's free removal came first
    send(telegram, photo(telegram))
    await wait_document(telegram, USER, 2)
    assert await store.balance(USER) == 0

    send(telegram, photo(telegram))
    await telegram.wait_for(lambda t: len(visible_messages(t, USER)) >= 3, timeout=15)
    offer = visible_messages(telegram, USER)[-1]
    assert offer.text is not None
    assert offer.text.startswith("You've used your free removals")
    # The pack, as a button that sends the invoice.
    assert "buy:10:25" in str(offer.call.params.get("reply_markup"))
    assert len(telegram.sent_documents(USER)) == 2
    assert len(freepik.calls) == 2  # refused before anything was paid
    assert await store.balance(USER) == 0
    spends = [e for e in await store.ledger(since=0) if e.reason == SPEND]
    assert len(spends) == 1


async def test_a_failed_job_gives_its_credit_back(
    telegram: FakeTelegram, freepik: FakeFreepik, start_bot: StartBot
) -> None:
    running = await start_bot(**PAID)
    store = running.services.store
    await store.credit(USER, 1, "charge-2", stars=25)
    send(telegram, photo(telegram))
    await wait_document(telegram, USER, 1)

    freepik.fail_next(400, body={"message": "Failed to download the image"})
    send(telegram, photo(telegram))
    await telegram.wait_for(lambda t: len(visible_messages(t, USER)) >= 2, timeout=15)
    for _ in range(100):  # the credit comes back as soon as the job has failed
        if await store.balance(USER) == 1:
            break
        await asyncio.sleep(0.05)
    assert await store.balance(USER) == 1
    assert len(telegram.sent_documents(USER)) == 1


async def test_a_cache_hit_costs_nothing(
    telegram: FakeTelegram, freepik: FakeFreepik, start_bot: StartBot
) -> None:
    await start_bot(**PAID)
    message = photo(telegram)
    send(telegram, message)
    await wait_document(telegram, USER, 1)
    again = sent_again(message)
    send(telegram, again)  # same file: a cache hit, though the free removal is used up
    await wait_document(telegram, USER, 2)
    assert len(freepik.calls) == 1
