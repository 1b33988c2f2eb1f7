"""Telegram Stars end to end: the real Application against the fake Bot API's payments."""

from __future__ import annotations

import json
from typing import Any

import pytest
from telegram import Document

from bot.app.wiring import ALLOWED_UPDATES
from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.requests.journal import recordable
from bot.requests.kept import KEPT_TTL
from bot.settings import Settings
from bot.storage import redis_store, sqlite_store
from bot.storage.base import PURCHASE, REFUND, TELEGRAM_REFUND
from bot.studio.records import record_ttl
from bot.studio.waits import BACKGROUND_WAIT
from tests.conftest import RunningBot, StartBot
from tests.fakes import FakeTelegram
from tests.fakes.updates import group_chat, private_user, text_message, update
from tests.support import visible_messages

USER = 5101
OTHER = 5102
ADMIN = 5100
PAID = {"credit_packs": "10:25,50:100", "free_removals": "1/day", "admin_ids": str(ADMIN)}


def command(telegram: FakeTelegram, user_id: int, text: str) -> None:
    telegram.push_update(update(message=text_message(private_user(user_id), text)))


async def shows(telegram: FakeTelegram, chat_id: int, text: str, timeout: float = 10) -> None:
    await telegram.wait_for(
        lambda t: any(v.text == text for v in visible_messages(t, chat_id)), timeout=timeout
    )


async def buy(telegram: FakeTelegram, user_id: int = USER, pack: int = 0) -> dict[str, Any]:
    """/buy, press a pack's button; the invoice the bot sent (with its payload)."""
    command(telegram, user_id, "/buy")
    [sent] = await telegram.wait_for_call(
        "sendMessage", where=lambda c: c.chat_id == user_id and "reply_markup" in c.params
    )
    button = sent.params["reply_markup"]["inline_keyboard"][pack][0]
    telegram.press(private_user(user_id), sent.result, button["callback_data"])
    await telegram.wait_for(lambda t: len(t.invoices_to(user_id)) >= 1)
    return telegram.invoices_to(user_id)[-1][1]


async def pay(telegram: FakeTelegram, invoice: dict[str, Any], user_id: int = USER) -> str:
    """Check out and pay an invoice; the charge id."""
    query_id = telegram.checkout_invoice(private_user(user_id), invoice)
    await telegram.wait_for(lambda t: t.pre_checkout_answer(query_id) is not None)
    charge_id, _ = telegram.complete_payment(query_id)
    return charge_id


async def answer_of(telegram: FakeTelegram, query_id: str) -> dict[str, Any] | None:
    """The bot's answer to a checkout, once it came."""
    await telegram.wait_for(lambda t: t.pre_checkout_answer(query_id) is not None)
    return telegram.pre_checkout_answer(query_id)


async def paid_bot(start_bot: StartBot, **extra: Any) -> RunningBot:
    return await start_bot(**{**PAID, **extra})


async def test_buy_pay_and_the_credits_arrive_once(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await paid_bot(start_bot)
    invoice = await buy(telegram, pack=1)
    [call] = telegram.calls_of("sendInvoice")
    assert call.params["currency"] == "XTR"
    assert call.params["provider_token"] == ""
    assert call.params["prices"] == [{"label": "50 credits", "amount": 100}]
    assert len(call.params["payload"].encode()) <= 128
    assert call.params["payload"] == f"c1:50:100:{USER}", "names the pack and the buyer"
    assert invoice["total_amount"] == 100

    query_id = telegram.checkout_invoice(private_user(USER), invoice)
    await telegram.wait_for(lambda t: t.pre_checkout_answer(query_id) is not None)
    answer = telegram.pre_checkout_answer(query_id)
    assert answer is not None
    assert answer["ok"] is True
    assert answer["at"] < 2.0, "answered at once"
    charge_id, message = telegram.complete_payment(query_id)
    await shows(telegram, USER, messages.payment_received(50, 50))
    assert await bot.services.store.balance(USER) == 50

    # The same payment again in a new update (a resumed record, a second replica): no credits.
    telegram.push_update(update(message=message))
    await telegram.wait_for(
        lambda t: t.texts_to(USER).count(messages.payment_received(50, 50)) == 2
    )
    assert await bot.services.store.balance(USER) == 50
    purchases = [e for e in await bot.services.store.ledger() if e.reason == PURCHASE]
    assert [(e.user_id, e.charge_id, e.amount, e.stars) for e in purchases] == [
        (USER, charge_id, 50, 100)
    ]


async def test_a_repeated_update_id_is_processed_once(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await paid_bot(start_bot)
    invoice = await buy(telegram)
    query_id = telegram.checkout_invoice(private_user(USER), invoice)
    await telegram.wait_for(lambda t: t.pre_checkout_answer(query_id) is not None)
    _, message = telegram.complete_payment(query_id)
    await shows(telegram, USER, messages.payment_received(10, 10))
    telegram.push_update({"update_id": 900, "message": message})
    telegram.push_update({"update_id": 900, "message": message})
    await telegram.wait_for(
        lambda t: t.texts_to(USER).count(messages.payment_received(10, 10)) == 2
    )
    # The journal saw 900 once: no third confirmation.
    await telegram.wait_for_call("getUpdates", count=len(telegram.calls_of("getUpdates")) + 2)
    assert telegram.texts_to(USER).count(messages.payment_received(10, 10)) == 2


async def test_checkouts_refused_with_a_reason(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await paid_bot(start_bot)
    invoice = await buy(telegram)
    cases = [
        # Someone else pays the buyer's invoice (a forwarded one).
        (private_user(OTHER), invoice["payload"], 25, messages.checkout_refused("not_buyer")),
        # A price that is not on sale (an old invoice after the packs changed).
        (private_user(USER), f"c1:10:20:{USER}", 20, messages.checkout_refused("price")),
        (private_user(USER), f"c1:30:60:{USER}", 60, messages.checkout_refused("no_such_pack")),
    ]
    for payer, payload, total, reason in cases:
        query_id = telegram.checkout(payer, payload=payload, total_amount=total)
        answer = await answer_of(telegram, query_id)
        assert answer is not None
        assert (answer["ok"], answer["error_message"]) == (False, reason)


async def test_payments_off_is_as_before_except_the_pages_every_bot_owes(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    command(telegram, USER, "/buy")
    await shows(telegram, USER, messages.no_link())
    command(telegram, OTHER, "/balance")
    await shows(telegram, OTHER, messages.no_link())
    command(telegram, USER, "/paysupport")
    await shows(telegram, USER, messages.paysupport_default())
    command(telegram, USER, "/privacy")
    await telegram.wait_for_call(
        "sendMessage", where=lambda c: c.params.get("parse_mode") == "HTML"
    )
    assert not telegram.calls_of("sendInvoice")
    # A checkout of an invoice from before payments were switched off: no, with the reason.
    query_id = telegram.checkout(private_user(USER), payload=f"c1:10:25:{USER}", total_amount=25)
    await telegram.wait_for(lambda t: t.pre_checkout_answer(query_id) is not None)
    answer = telegram.pre_checkout_answer(query_id)
    assert answer is not None
    assert (answer["ok"], answer["error_message"]) == (
        False,
        messages.checkout_refused("payments_off"),
    )
    # The menu has no /buy or /balance.
    await telegram.wait_for_call("setMyCommands", count=len(i18n.LOCALES), timeout=15)
    default = telegram.state.commands[json.dumps([{"type": "default"}, ""], sort_keys=True)]
    names = [c["command"] for c in default]
    assert "buy" not in names
    assert "balance" not in names
    assert {"paysupport", "privacy", "forget"} <= set(names)


async def test_menus_per_language_and_admin_scope(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await paid_bot(start_bot)
    await telegram.wait_for_call("setMyCommands", count=2 * len(i18n.LOCALES), timeout=20)
    state = telegram.state
    for locale in i18n.LOCALES:
        code = "" if locale == i18n.DEFAULT_LOCALE else i18n.telegram_language_code(locale)
        with i18n.using(locale):
            everyone = [{"command": c, "description": d} for c, d in messages.commands(True)]
            admin = [{"command": c, "description": d} for c, d in messages.admin_commands()]
        default_key = json.dumps([{"type": "default"}, code], sort_keys=True)
        admin_key = json.dumps([{"type": "chat", "chat_id": ADMIN}, code], sort_keys=True)
        assert state.commands[default_key] == everyone, locale
        assert state.commands[admin_key] == everyone + admin, locale
    names = [c["command"] for c in state.commands[json.dumps([{"type": "default"}, ""])]]
    assert {"buy", "balance"} <= set(names)
    assert not {"refund", "stats"} & set(names), "admin commands only in the admins' menu"
    assert "cancel" in names, "/cancel ends a My background wait"


async def test_balance_counts_free_removals_and_credits(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await paid_bot(start_bot)
    command(telegram, USER, "/balance")
    await shows(telegram, USER, messages.balance_text(1, None, 0))
    await bot.services.credits.spend(USER)  # the lifecycle's part: one free removal
    await pay(telegram, await buy(telegram))
    await shows(telegram, USER, messages.payment_received(10, 10))
    command(telegram, USER, "/balance")
    spent_line = messages.balance_text(0, None, 10).split("\n")[0]
    credits_line = messages.balance_text(0, None, 10).split("\n")[1]
    await telegram.wait_for(
        lambda t: any(
            (v.text or "").startswith(spent_line) and credits_line in (v.text or "")
            for v in visible_messages(t, USER)
        )
    )
    command(telegram, ADMIN, "/balance")
    await shows(telegram, ADMIN, messages.balance_text(None, None, 0, admin=True))


async def test_refunded_elsewhere_removes_the_unspent_credits(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await paid_bot(start_bot, free_removals="")
    charge_id = await pay(telegram, await buy(telegram))
    await shows(telegram, USER, messages.payment_received(10, 10))
    await bot.services.store.debit(USER)
    telegram.refund_elsewhere(charge_id)
    await shows(telegram, USER, messages.payment_refunded(25, 0))
    refunds = [e for e in await bot.services.store.ledger() if e.reason == TELEGRAM_REFUND]
    assert [(e.charge_id, e.amount, e.after) for e in refunds] == [(charge_id, -9, 0)]


async def test_admin_refund(start_bot: StartBot, telegram: FakeTelegram) -> None:
    bot = await paid_bot(start_bot)
    charge_id = await pay(telegram, await buy(telegram))
    await shows(telegram, USER, messages.payment_received(10, 10))
    command(telegram, ADMIN, f"/refund {charge_id}")
    await shows(telegram, ADMIN, messages.refund_done(25, USER, 10, 0))
    [call] = telegram.calls_of("refundStarPayment")
    assert (call.params["user_id"], call.params["telegram_payment_charge_id"]) == (
        USER,
        charge_id,
    )
    # Telegram's own refunded_payment follows: the payer is told, nothing is taken twice.
    await shows(telegram, USER, messages.payment_refunded(25, 0))
    refunds = [
        e for e in await bot.services.store.ledger() if e.reason in (REFUND, TELEGRAM_REFUND)
    ]
    assert [(e.reason, e.amount) for e in refunds] == [(REFUND, -10)]
    command(telegram, ADMIN, f"/refund {charge_id}")
    await shows(telegram, ADMIN, messages.refund_already())
    assert len(telegram.calls_of("refundStarPayment")) == 1


async def test_admin_refund_refused_with_the_reason(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await paid_bot(start_bot)
    charge_id = await pay(telegram, await buy(telegram))
    await shows(telegram, USER, messages.payment_received(10, 10))
    await bot.services.store.debit(USER)
    command(telegram, ADMIN, f"/refund {charge_id}")
    await shows(telegram, ADMIN, messages.refund_spent(9, 10))
    command(telegram, ADMIN, "/refund stxc-nothing")
    await shows(telegram, ADMIN, messages.refund_unknown())
    command(telegram, ADMIN, "/refund")
    await shows(telegram, ADMIN, messages.refund_usage())
    assert not telegram.calls_of("refundStarPayment")
    assert await bot.services.store.balance(USER) == 9
    # Not an admin: /refund is an unknown command, as it was before.
    command(telegram, USER, f"/refund {charge_id}")
    await shows(telegram, USER, messages.no_link())
    assert not telegram.calls_of("refundStarPayment")


async def test_admin_stats(start_bot: StartBot, telegram: FakeTelegram) -> None:
    await paid_bot(start_bot)
    await pay(telegram, await buy(telegram))
    await shows(telegram, USER, messages.payment_received(10, 10))
    command(telegram, ADMIN, "/stats")
    await telegram.wait_for(
        lambda t: any(
            (v.text or "").startswith(messages.stats_text([])) for v in visible_messages(t, ADMIN)
        )
    )
    text = next(
        v.text
        for v in visible_messages(telegram, ADMIN)
        if (v.text or "").startswith(messages.stats_text([]))
    )
    assert text is not None
    labels = messages.stats_labels()
    assert f"{labels['stars']}: 25 / 25" in text
    assert f"{labels['sold']}: 10 / 10" in text
    assert f"{labels['buyers']}: 1 / 1" in text
    command(telegram, USER, "/stats")
    await shows(telegram, USER, messages.no_link())


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_privacy_names_the_my_background_wait(locale: str) -> None:
    # Every per-user thing the state store keeps is listed; the wait came last.
    with i18n.using(locale):
        text = messages.privacy_text("", record_ttl(Settings.model_fields["cache_ttl"].default))
        button = messages.studio_my_background().removeprefix("🖼").strip()
    assert button in text
    assert "/cancel" in text
    if locale == i18n.DEFAULT_LOCALE:
        assert "10 minutes" in text


@pytest.mark.parametrize(
    ("overrides", "period"),
    [({}, "30 days"), ({"cache_ttl": 7 * 24 * 3600}, "7 days"), ({"cache_ttl": 60}, "1 day")],
)
async def test_privacy_states_how_long_button_records_are_kept(
    start_bot: StartBot,
    telegram: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, Any],
    period: str,
) -> None:
    # The period is the one the studio really stores its records for (CACHE_TTL, a day at least).
    bot = await start_bot(**overrides)
    store = bot.services.store
    stored: list[float] = []
    put_studio = store.put_studio

    async def spy(token: str, record: str, ttl: float) -> None:
        stored.append(ttl)
        await put_studio(token, record, ttl)

    monkeypatch.setattr(store, "put_studio", spy)
    await bot.services.studio.remember("t0k3n", USER, USER, [Document("file-1", "unique-1")])
    [ttl] = stored
    assert messages.format_period(ttl) == period
    command(telegram, USER, "/privacy")
    [call] = await telegram.wait_for_call(
        "sendMessage", where=lambda c: c.params.get("parse_mode") == "HTML"
    )
    assert f"the buttons under your cutouts ({period});" in call.params["text"]
    assert "a few days" not in call.params["text"]


def test_the_fixed_periods_privacy_states_are_the_code_s() -> None:
    # /privacy states these in words ("a year", "90 days", "a day at most", "10 minutes").
    text = messages.privacy_text("", record_ttl(0))
    assert sqlite_store.LANGUAGE_TTL == redis_store.LANGUAGE_TTL == 365 * 24 * 3600
    assert "your language (a year)" in text
    assert sqlite_store.RECENT_TTL == redis_store.RECENT_TTL == 90 * 24 * 3600
    assert "for inline mode (90 days)" in text
    assert KEPT_TTL == 24 * 3600
    assert "for a day at most" in text
    assert BACKGROUND_WAIT == 600
    assert "(10 minutes at most;" in text


async def test_privacy_paysupport_and_forget(start_bot: StartBot, telegram: FakeTelegram) -> None:
    bot = await paid_bot(
        start_bot, privacy_url="https://example.org/privacy", paysupport_text="Write to @owner."
    )
    store = bot.services.store
    command(telegram, USER, "/paysupport")
    await shows(telegram, USER, "Write to @owner.")
    command(telegram, USER, "/privacy")
    [call] = await telegram.wait_for_call(
        "sendMessage", where=lambda c: c.params.get("parse_mode") == "HTML"
    )
    ttl = record_ttl(bot.services.settings.cache_ttl)
    assert call.params["text"] == messages.privacy_text("https://example.org/privacy", ttl)
    assert "https://example.org/privacy" in call.params["text"]

    await pay(telegram, await buy(telegram))
    await shows(telegram, USER, messages.payment_received(10, 10))
    await store.set_language(USER, "de")
    await store.set_language(OTHER, "fr")
    command(telegram, USER, "/forget")
    [prompt] = await telegram.wait_for_call(
        "sendMessage",
        where=lambda c: (
            c.chat_id == USER and "forget:" in json.dumps(c.params.get("reply_markup"))
        ),
    )
    yes = prompt.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    # Someone else's press does nothing.
    other = telegram.press(private_user(OTHER), prompt.result, yes)
    await telegram.wait_for(lambda t: t.callback_answer(other) is not None)
    assert await store.get_language(USER) == "de"
    telegram.press(private_user(USER), prompt.result, yes)
    with i18n.using("de"):
        done = messages.forget_done()
    await shows(telegram, USER, done)
    assert await store.get_language(USER) is None
    assert await store.get_language(OTHER) == "fr"
    assert await store.balance(USER) == 10, "the ledger stays"


def test_payment_updates_are_allowed_and_journaled() -> None:
    assert "pre_checkout_query" in ALLOWED_UPDATES
    assert "message" in ALLOWED_UPDATES  # successful_payment and refunded_payment
    from telegram import Update

    paid = {
        "update_id": 1,
        "message": {
            "message_id": 5,
            "date": 0,
            "chat": {"id": USER, "type": "private"},
            "from": private_user(USER),
            "successful_payment": {
                "currency": "XTR",
                "total_amount": 25,
                "invoice_payload": "c1:10:25:5101",
                "telegram_payment_charge_id": "x",
                "provider_payment_charge_id": "",
            },
        },
    }
    assert recordable(Update.de_json(paid, None))
    checkout = {
        "update_id": 2,
        "pre_checkout_query": {
            "id": "q",
            "from": private_user(USER),
            "currency": "XTR",
            "total_amount": 25,
            "invoice_payload": "p",
        },
    }
    # A checkout has 10 seconds: never resumed after a restart (the journal skips it).
    assert not recordable(Update.de_json(checkout, None))


async def test_buy_in_a_group_opens_the_private_chat_where_start_buy_shows_the_packs(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await paid_bot(start_bot)
    group = group_chat(-100777)
    telegram.push_update(update(message=text_message(private_user(USER), "/buy", chat=group)))
    [sent] = await telegram.wait_for_call("sendMessage", where=lambda c: c.chat_id == -100777)
    assert sent.params["text"] == messages.buy_in_private(telegram.state.username)
    [[button]] = sent.params["reply_markup"]["inline_keyboard"]
    assert button["text"] == messages.open_private_chat_button()
    assert button["url"] == f"https://t.me/{telegram.state.username}?start=buy"
    assert not telegram.calls_of("sendInvoice")

    # The link opens the private chat with `/start buy`: the packs, as /buy shows them.
    command(telegram, USER, "/start buy")
    [packs] = await telegram.wait_for_call(
        "sendMessage", where=lambda c: c.chat_id == USER and "reply_markup" in c.params
    )
    assert packs.params["text"] == messages.buy_intro()
    rows = packs.params["reply_markup"]["inline_keyboard"]
    assert [row[0]["callback_data"] for row in rows] == ["buy:10:25", "buy:50:100"]


async def test_balance_in_a_group_is_not_shown_there(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    running = await paid_bot(start_bot)
    await running.services.store.credit(USER, 7, "charge-g", stars=25)
    group = group_chat(-100778)
    message = text_message(private_user(USER), "/balance", chat=group)
    telegram.push_update(update(message=message))
    [sent] = await telegram.wait_for_call("sendMessage", where=lambda c: c.chat_id == -100778)
    assert sent.params["text"] == messages.buy_in_private(telegram.state.username)
    assert "7" not in sent.params["text"]


async def test_start_buy_with_payments_off_is_the_help(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    command(telegram, USER, "/start buy")
    [sent] = await telegram.wait_for_call("sendMessage", where=lambda c: c.chat_id == USER)
    assert sent.params["text"] == messages.help_text("", telegram.state.username)
    assert "reply_markup" not in sent.params
