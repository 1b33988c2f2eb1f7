"""Telegram Stars: /buy, checkout, payments, refunds, /balance, and the pages every bot owes
its users (/paysupport, /privacy, /forget), plus the admins' /refund and /stats."""

from __future__ import annotations

import asyncio
import logging
import time

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from bot.i18n import messages
from bot.requests.credits import invoice_payload
from bot.requests.journal import note_sent, sent_before
from bot.storage.base import TELEGRAM_REFUND, LedgerTotals, StorageUnavailable
from bot.studio.records import record_ttl
from bot.transport.handlers.common import reply
from bot.transport.keyboards import BUY_PREFIX, packs_keyboard
from bot.transport.quiet import quietly
from bot.transport.services import get_services

logger = logging.getLogger(__name__)

FORGET_PREFIX = "forget:"
# Storage trouble while crediting a payment: a few tries before telling the payer.
_CREDIT_ATTEMPTS = 3
_CREDIT_RETRY = 0.5
# The payment's confirmation, as the journal notes it (sent once per payment update).
_CONFIRMED = "payment_received"


def _private(message: Message) -> bool:
    return message.chat.type == ChatType.PRIVATE


async def cmd_buy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/buy: the packs as buttons in a private chat; in a group, a button to the private chat."""
    message = update.effective_message
    if message is None:
        return
    if not _private(message):
        await _to_private_chat(context, message)
        return
    await show_packs(context, message)


async def _to_private_chat(context: ContextTypes.DEFAULT_TYPE, message: Message) -> None:
    """In a group: payments and balances are private, so a button opens the private chat."""
    username = context.bot.username
    # The link opens the private chat with `/start buy`, which shows the packs.
    link = f"https://t.me/{username}?start={messages.BUY_START_PARAMETER}"
    button = InlineKeyboardButton(messages.open_private_chat_button(), url=link)
    await reply(
        context,
        message,
        messages.buy_in_private(username),
        reply_markup=InlineKeyboardMarkup([[button]]),
    )


async def show_packs(context: ContextTypes.DEFAULT_TYPE, message: Message) -> None:
    """The packs as buttons, under what a credit is."""
    packs = [(p.credits, p.stars) for p in get_services(context).credits.packs]
    await reply(context, message, messages.buy_intro(), reply_markup=packs_keyboard(packs))


async def on_pack_chosen(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A pack button: the invoice for it, naming the presser as the buyer."""
    query = update.callback_query
    if query is None:
        return
    credits_text, _, stars_text = (query.data or "").removeprefix(BUY_PREFIX).partition(":")
    credits = get_services(context).credits
    pack = credits.pack(int(credits_text)) if credits_text.isdigit() else None
    if pack is None or str(pack.stars) != stars_text:
        await quietly(query.answer(messages.pack_gone(), show_alert=True), "answer pack button")
        return
    user = query.from_user
    title = messages.credits_count(pack.credits)
    try:
        await context.bot.send_invoice(
            chat_id=user.id,
            title=title,
            description=messages.invoice_description(pack.credits),
            payload=invoice_payload(pack, user.id),
            currency="XTR",
            prices=[LabeledPrice(title, pack.stars)],
            provider_token="",
        )
    except TelegramError as err:
        logger.warning("Could not send the invoice for %s credits: %s", pack.credits, err)
        await quietly(query.answer(messages.internal_error(), show_alert=True), "answer pack")
        return
    await quietly(query.answer(), "answer pack button")


async def on_pre_checkout(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer at once: yes only if payments are on, the pack is on sale and the payer bought it."""
    query = update.pre_checkout_query
    if query is None:
        return
    problem = get_services(context).credits.checkout_problem(
        query.from_user.id, query.invoice_payload, query.currency, query.total_amount
    )
    if problem is None:
        await quietly(query.answer(ok=True), "approve a checkout")
        return
    logger.info("Checkout by user %s refused: %s", query.from_user.id, problem)
    await quietly(
        query.answer(ok=False, error_message=messages.checkout_refused(problem)),
        "refuse a checkout",
    )


async def on_successful_payment(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Credit a payment once per charge id; confirm with the balance (again on a repeat)."""
    message = update.effective_message
    if message is None or message.successful_payment is None or message.from_user is None:
        return
    paid = message.successful_payment
    payer = message.from_user.id
    credits = get_services(context).credits
    for attempt in range(1, _CREDIT_ATTEMPTS + 1):
        try:
            entry = await credits.purchase(
                payer, paid.invoice_payload, paid.telegram_payment_charge_id, paid.total_amount
            )
            balance = entry.after if entry is not None else await credits.balance(payer)
            break
        except StorageUnavailable as err:
            logger.error(
                "Payment %s of user %s not recorded (attempt %d): %s",
                paid.telegram_payment_charge_id,
                payer,
                attempt,
                err,
            )
            if attempt == _CREDIT_ATTEMPTS:
                text = messages.payment_not_recorded(paid.telegram_payment_charge_id)
                await reply(context, message, text)
                return
            await asyncio.sleep(_CREDIT_RETRY * attempt)
    if entry is None:
        logger.info("Payment %s was credited before", paid.telegram_payment_charge_id)
        payment = await credits.payment(paid.telegram_payment_charge_id)
        bought = payment.credits if payment is not None else 0
    else:
        bought = entry.amount
    # The image that ran out of credits, claimed by this update. It stays in storage until its
    # run has ended in a reply: if the process dies first, this update's replay (the same id)
    # claims and runs it again; any other update meanwhile (another payment, or this one
    # delivered again) finds it claimed and does not run it twice.
    chat = get_services(context).chat
    kept = await chat.take_kept(payer, f"update:{update.update_id}")
    if sent_before(_CONFIRMED):
        # A run that died (during the kept photo's job) confirmed it: its message still
        # stands, with the balance as it was then; a second one would only repeat it.
        logger.info("Payment %s was confirmed before the restart", paid.telegram_payment_charge_id)
    else:
        text = messages.payment_received(bought, balance, kept=kept is not None)
        await reply(context, message, text)
        note_sent(_CONFIRMED)
    if kept is not None:
        logger.info("Running user %s's kept request after payment", payer)
        await chat.run_kept(kept)


async def on_refunded_payment(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Telegram refunded a payment (our /refund or a dispute): its unspent credits go."""
    message = update.effective_message
    if message is None or message.refunded_payment is None:
        return
    refunded = message.refunded_payment
    credits = get_services(context).credits
    outcome = await credits.refund(
        refunded.telegram_payment_charge_id, partial=True, reason=TELEGRAM_REFUND
    )
    if outcome.status == "unknown":
        logger.warning("Refund of unknown payment %s", refunded.telegram_payment_charge_id)
    user_id = message.from_user.id if message.from_user else message.chat_id
    balance = outcome.balance if outcome.payment else await credits.balance(user_id)
    await reply(context, message, messages.payment_refunded(refunded.total_amount, balance))


async def cmd_balance(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/balance: free removals left today and credits."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    if not _private(message):
        await _to_private_chat(context, message)  # a balance is nobody else's business
        return
    services = get_services(context)
    if user.id in services.settings.admin_ids:
        await reply(context, message, messages.balance_text(None, None, 0, admin=True))
        return
    allowance = await services.credits.allowance(user.id)
    wait = (
        messages.format_wait(allowance.free_resets_in)
        if allowance.free_resets_in is not None
        else None
    )
    text = messages.balance_text(allowance.free_left, wait, allowance.credits)
    await reply(context, message, text)


async def cmd_paysupport(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/paysupport: how payments and refunds work (PAYSUPPORT_TEXT or the built-in text)."""
    message = update.effective_message
    if message is not None:
        custom = get_services(context).settings.paysupport_text
        await reply(context, message, custom or messages.paysupport_default())


async def cmd_privacy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/privacy: what is kept, for how long, who receives the image."""
    message = update.effective_message
    if message is not None:
        settings = get_services(context).settings
        text = messages.privacy_text(settings.privacy_url, record_ttl(settings.cache_ttl))
        await reply(
            context, message, text, parse_mode=ParseMode.HTML, disable_web_page_preview=True
        )


async def cmd_forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/forget: ask first (a button only the asker may press)."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    messages.forget_yes(), callback_data=f"{FORGET_PREFIX}yes:{user.id}"
                ),
                InlineKeyboardButton(
                    messages.forget_no(), callback_data=f"{FORGET_PREFIX}no:{user.id}"
                ),
            ]
        ]
    )
    await reply(context, message, messages.forget_prompt(), reply_markup=keyboard)


async def on_forget_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The /forget buttons: delete (or not), then say so in place of the question."""
    query = update.callback_query
    if query is None:
        return
    choice, _, owner = (query.data or "").removeprefix(FORGET_PREFIX).partition(":")
    if owner != str(query.from_user.id):
        await quietly(query.answer(messages.not_your_button(), show_alert=True), "answer")
        return
    if choice == "yes":
        try:
            await get_services(context).store.forget_user(query.from_user.id)
        except StorageUnavailable as err:
            logger.error("Storage unavailable: %s", err)
            text = messages.temporarily_unavailable()
            await quietly(query.answer(text, show_alert=True), "answer forget")
            return
        logger.info("User %s asked to be forgotten: done", query.from_user.id)
        done = messages.forget_done()
    else:
        done = messages.forget_cancelled()
    edited = await quietly(query.edit_message_text(done), "confirm forget")
    await quietly(query.answer(None if edited else done), "answer forget")


async def cmd_refund(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admin /refund <charge id>: Stars back to the payer, then that payment's credits go."""
    message = update.effective_message
    if message is None:
        return
    if not context.args:
        await reply(context, message, messages.refund_usage())
        return
    charge_id = context.args[0]
    services = get_services(context)
    payment = await services.store.payment(charge_id)
    if payment is None:
        await reply(context, message, messages.refund_unknown())
        return
    if payment.refunded is not None:
        await reply(context, message, messages.refund_already())
        return
    balance = await services.credits.balance(payment.user_id)
    if balance < payment.credits:
        await reply(context, message, messages.refund_spent(balance, payment.credits))
        return
    try:
        await context.bot.refund_star_payment(payment.user_id, charge_id)
    except BadRequest as err:
        if "CHARGE_ALREADY_REFUNDED" not in err.message.upper():
            await reply(context, message, messages.refund_refused_by_telegram(err.message))
            return
        logger.info("Payment %s was refunded already on Telegram's side", charge_id)
    # The Stars are back with the payer: take what is left even if some was spent meanwhile.
    outcome = await services.credits.refund(charge_id, partial=True)
    if outcome.status == "already_refunded":
        # Telegram's refunded_payment message got here first and took them.
        await reply(context, message, messages.refund_already())
        return
    removed = -outcome.entry.amount if outcome.entry is not None else 0
    text = messages.refund_done(payment.stars, payment.user_id, removed, outcome.balance)
    await reply(context, message, text)


def _row(totals: tuple[LedgerTotals, LedgerTotals], key: str) -> tuple[str, str]:
    values = []
    for t in totals:
        number = {
            "buyers": len(t.buyers),
            "purchases": t.purchases,
            "stars": t.stars_received,
            "sold": t.credits_sold,
            "spent": t.credits_spent,
            "returned": t.credits_returned,
            "refunds": t.refunds,
            "spenders": len(t.spenders),
        }[key]
        values.append(str(number))
    return values[0], values[1]


async def cmd_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admin /stats: the ledger's today and last 7 days, and this process's counters."""
    message = update.effective_message
    if message is None:
        return
    services = get_services(context)
    stats = await services.credits.stats(time.time())
    labels = messages.stats_labels()
    rows = [(label, *_row((stats.today, stats.week), key)) for key, label in labels.items()]
    budget = services.gate.budget
    left = await budget.remaining() if budget.budget is not None else None
    text = (
        messages.stats_text([(label, today, week) for label, today, week in rows])
        + "\n\n"
        + messages.stats_process(services.metrics.totals(), left)
    )
    await reply(context, message, text)
