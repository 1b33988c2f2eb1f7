"""The fake Bot API's payments in Stars follow Telegram's rules and error texts."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Bot, LabeledPrice
from telegram.error import BadRequest

from tests.fakes import FakeTelegram
from tests.fakes.updates import private_user

USER = 4242


def invoice(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "chat_id": USER,
        "title": "10 credits",
        "description": "Ten background removals",
        "payload": "p:10:25:4242",
        "currency": "XTR",
        "prices": [LabeledPrice("10 credits", 25)],
        "provider_token": "",
    }
    values.update(changes)
    return values


async def test_send_invoice_in_stars(telegram: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_invoice(**invoice())
    assert sent.invoice is not None
    assert (sent.invoice.title, sent.invoice.currency, sent.invoice.total_amount) == (
        "10 credits",
        "XTR",
        25,
    )
    [(message, kept)] = telegram.invoices_to(USER)
    assert message["message_id"] == sent.message_id
    assert kept["payload"] == "p:10:25:4242"
    assert "payload" not in message["invoice"], "Telegram's Invoice object has no payload"


async def test_create_invoice_link(bot: Bot) -> None:
    kwargs = invoice()
    kwargs.pop("chat_id")
    link = await bot.create_invoice_link(**kwargs)
    assert link.startswith("https://t.me/$")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"title": "x" * 33}, "TITLE_INVALID"),
        ({"description": "x" * 256}, "DESCRIPTION_INVALID"),
        ({"payload": "é" * 65}, "INVOICE_PAYLOAD_INVALID"),  # 130 bytes in 65 characters
        ({"provider_token": "284685063:TEST:abc"}, "PAYMENT_PROVIDER_INVALID"),
        (
            {"prices": [LabeledPrice("a", 10), LabeledPrice("b", 15)]},
            "STARS_INVOICE_INVALID",
        ),
        ({"prices": [LabeledPrice("a", 0)]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
        ({"prices": [LabeledPrice("a", 100_001)]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
        ({"prices": []}, "There must be at least one price"),
        ({"currency": "USD"}, "PAYMENT_PROVIDER_INVALID"),
        ({"title": ""}, 'Parameter "title" is required'),
        ({"payload": ""}, 'Parameter "payload" is required'),
    ],
)
@pytest.mark.parametrize("method", ["send_invoice", "create_invoice_link"])
async def test_invoice_rules(bot: Bot, changes: dict[str, Any], error: str, method: str) -> None:
    kwargs = invoice(**changes)
    if method == "create_invoice_link":
        kwargs.pop("chat_id")
    with pytest.raises(BadRequest) as caught:
        await getattr(bot, method)(**kwargs)
    assert caught.value.message.lower() == error.lower()  # PTB capitalises the text


async def test_limits_are_inclusive(bot: Bot) -> None:
    await bot.send_invoice(
        **invoice(
            title="x" * 32,
            description="y" * 255,
            payload="z" * 128,
            prices=[LabeledPrice("a", 100_000)],
        )
    )


async def test_checkout_answer_then_payment(telegram: FakeTelegram, bot: Bot) -> None:
    user = private_user(USER)
    query_id = telegram.checkout(user, payload="p:10:25:4242", total_amount=25)
    with pytest.raises(BadRequest, match='Parameter "error_message" is required'):
        await bot.answer_pre_checkout_query(query_id, ok=False)
    assert await bot.answer_pre_checkout_query(query_id, ok=True)
    answer = telegram.pre_checkout_answer(query_id)
    assert answer is not None
    assert answer["ok"] is True
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_pre_checkout_query(query_id, ok=True)  # answered once
    charge_id, message = telegram.complete_payment(query_id)
    paid = message["successful_payment"]
    assert paid["telegram_payment_charge_id"] == charge_id
    assert (paid["currency"], paid["total_amount"], paid["invoice_payload"]) == (
        "XTR",
        25,
        "p:10:25:4242",
    )
    pushed = [u for u in telegram.pending_updates if "message" in u]
    assert pushed[-1]["message"]["successful_payment"]["telegram_payment_charge_id"] == charge_id


async def test_a_refused_checkout_cannot_be_paid(telegram: FakeTelegram, bot: Bot) -> None:
    query_id = telegram.checkout(private_user(USER), payload="x", total_amount=25)
    await bot.answer_pre_checkout_query(query_id, ok=False, error_message="No longer on sale")
    answer = telegram.pre_checkout_answer(query_id)
    assert answer is not None
    assert answer["error_message"] == "No longer on sale"
    with pytest.raises(AssertionError, match="not approved"):
        telegram.complete_payment(query_id)


async def test_checkout_expires_after_ten_seconds(telegram: FakeTelegram, bot: Bot) -> None:
    assert telegram.pre_checkout_ttl == 10.0
    telegram.pre_checkout_ttl = 0.0
    query_id = telegram.checkout(private_user(USER), payload="x", total_amount=25)
    with pytest.raises(BadRequest) as caught:
        await bot.answer_pre_checkout_query(query_id, ok=True)
    assert caught.value.message == (
        "Query is too old and response timeout expired or query id is invalid"
    )
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_pre_checkout_query("never-pushed", ok=True)


async def test_refund_star_payment(telegram: FakeTelegram, bot: Bot) -> None:
    telegram.refund_messages = False
    query_id = telegram.checkout(private_user(USER), payload="x", total_amount=25)
    await bot.answer_pre_checkout_query(query_id, ok=True)
    charge_id, _ = telegram.complete_payment(query_id)
    with pytest.raises(BadRequest) as caught:
        await bot.refund_star_payment(USER + 1, charge_id)
    assert caught.value.message.upper() == "CHARGE_NOT_FOUND", "only the payer's charge"
    with pytest.raises(BadRequest) as caught:
        await bot.refund_star_payment(USER, "stxc-unknown")
    assert caught.value.message.upper() == "CHARGE_NOT_FOUND"
    assert await bot.refund_star_payment(USER, charge_id)
    with pytest.raises(BadRequest) as caught:
        await bot.refund_star_payment(USER, charge_id)
    assert caught.value.message.upper() == "CHARGE_ALREADY_REFUNDED"
    payment = telegram.star_payment(charge_id)
    assert payment is not None
    assert payment["refunded"] is True


async def test_refunds_are_announced_with_refunded_payment(
    telegram: FakeTelegram, bot: Bot
) -> None:
    user = private_user(USER)
    charges = []
    for _ in range(2):
        query_id = telegram.checkout(user, payload="x", total_amount=25)
        await bot.answer_pre_checkout_query(query_id, ok=True)
        charges.append(telegram.complete_payment(query_id)[0])
    await bot.refund_star_payment(USER, charges[0])
    telegram.refund_elsewhere(charges[1])  # a dispute settled by Telegram
    refunded = [
        u["message"]["refunded_payment"]
        for u in telegram.pending_updates
        if "refunded_payment" in u.get("message", {})
    ]
    assert [r["telegram_payment_charge_id"] for r in refunded] == charges
    assert all(r["total_amount"] == 25 and r["currency"] == "XTR" for r in refunded)


async def test_star_transactions_newest_first_with_limits(
    telegram: FakeTelegram, bot: Bot
) -> None:
    user = private_user(USER)
    charges = []
    for amount in (10, 20, 30):
        query_id = telegram.checkout(user, payload=f"p{amount}", total_amount=amount)
        await bot.answer_pre_checkout_query(query_id, ok=True)
        charges.append(telegram.complete_payment(query_id)[0])
    await bot.refund_star_payment(USER, charges[0])
    listed = await bot.get_star_transactions()
    assert [t.id for t in listed.transactions] == [charges[0], *reversed(charges)]
    assert listed.transactions[0].receiver is not None, "the refund goes to the user"
    assert listed.transactions[1].source is not None
    assert [
        t.amount for t in (await bot.get_star_transactions(offset=1, limit=2)).transactions
    ] == [
        30,
        20,
    ]
    assert len((await bot.get_star_transactions(limit=500)).transactions) == 4, "clamped to 100"
