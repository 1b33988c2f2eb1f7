"""The photo that ran out of credits is kept and made once the payment arrives (issue 17.2)."""

from __future__ import annotations

import asyncio

from bot.i18n import messages
from bot.storage.base import SPEND
from tests.conftest import ImageHost, RunningBot, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import private_user, text_message, update
from tests.support import (
    USER,
    offers,
    pay_from_offer,
    photo,
    send,
    visible_messages,
    wait_document,
)

PAID = {"credit_packs": "10:25", "free_removals": "1/day"}


async def balance_becomes(bot: RunningBot, value: int) -> None:
    for _ in range(100):
        if await bot.services.store.balance(USER) == value:
            return
        await asyncio.sleep(0.05)
    assert await bot.services.store.balance(USER) == value


async def test_the_newest_refused_photo_is_made_after_the_payment_once(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(**PAID)
    send(telegram, photo(telegram))
    await wait_document(telegram, USER, 1)  # the day's free removal

    second = send(telegram, photo(telegram))
    await offers(telegram, 1)
    third = send(telegram, photo(telegram))  # kept instead of the second: the newest wins
    [offer, _] = await offers(telegram, 2)
    assert offer.reply_to == second
    assert len(freepik.calls) == 1

    payment = await pay_from_offer(telegram, offer)
    confirmation = messages.payment_received(10, 10, kept=True)
    await telegram.wait_for(lambda t: confirmation in t.texts_to(USER), timeout=15)
    await telegram.wait_for(lambda t: len(t.sent_documents(USER)) >= 2, timeout=15)
    made = telegram.sent_documents(USER)[-1]
    assert made.params["reply_parameters"]["message_id"] == third, "answers the kept photo"
    assert len(freepik.calls) == 2
    await balance_becomes(bot, 9)
    spends = [e for e in await bot.services.store.ledger() if e.reason == SPEND]
    assert len(spends) == 1

    # The same payment delivered again: confirmed again, the photo is not made twice.
    telegram.push_update(update(message=payment))
    again = messages.payment_received(10, 9)
    await telegram.wait_for(lambda t: again in t.texts_to(USER), timeout=15)
    await asyncio.sleep(0.5)
    assert len(freepik.calls) == 2
    assert len(telegram.sent_documents(USER)) == 2
    assert await bot.services.store.balance(USER) == 9


async def test_a_kept_link_that_is_gone_is_said_plainly_and_costs_nothing(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    bot = await start_bot(**PAID)
    send(telegram, photo(telegram))
    await wait_document(telegram, USER, 1)
    link = image_host.add("gnome.jpg", make_image("JPEG", size=(80, 60)))
    asked = send(telegram, text_message(private_user(USER), link))
    [offer] = await offers(telegram, 1)
    del image_host.images["gnome.jpg"]  # the page changed before the payment came

    await pay_from_offer(telegram, offer)
    await telegram.wait_for(
        lambda t: any(v.text == messages.kept_gone() for v in visible_messages(t, USER)),
        timeout=15,
    )
    [gone] = [v for v in visible_messages(telegram, USER) if v.text == messages.kept_gone()]
    assert gone.reply_to == asked
    assert messages.payment_received(10, 10, kept=True) in telegram.texts_to(USER)
    assert len(telegram.sent_documents(USER)) == 1
    await balance_becomes(bot, 10)  # the failed job gave its credit back


async def test_a_payment_with_nothing_kept_only_confirms(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(**PAID)
    send(telegram, photo(telegram))
    await wait_document(telegram, USER, 1)
    send(telegram, photo(telegram))
    [offer] = await offers(telegram, 1)
    # /forget drops the kept photo with the rest of what is kept about the user.
    await bot.services.store.forget_user(USER)
    await pay_from_offer(telegram, offer)
    confirmation = messages.payment_received(10, 10)
    await telegram.wait_for(lambda t: confirmation in t.texts_to(USER), timeout=15)
    await asyncio.sleep(0.5)
    assert len(freepik.calls) == 1
    assert await bot.services.store.balance(USER) == 10
