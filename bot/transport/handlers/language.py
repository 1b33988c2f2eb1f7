"""The user's language: picked for every update at entry, and chosen with /language."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.storage.base import StorageUnavailable
from bot.transport.handlers.common import reply
from bot.transport.quiet import quietly
from bot.transport.services import get_services

logger = logging.getLogger(__name__)

# callback_data of the language buttons: this prefix and the locale (`lang:pt_BR`).
CALLBACK_PREFIX = "lang:"


async def user_locale(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
    """The locale of whoever sent `update`: their /language choice, else their client's."""
    user = update.effective_user
    if user is None:
        return i18n.DEFAULT_LOCALE
    choice: str | None = None
    try:
        choice = await get_services(context).store.get_language(user.id)
    except StorageUnavailable as err:
        # The reply itself will say the storage is down; say it in the client's language.
        logger.debug("Language choice of user %s unavailable: %s", user.id, err)
    return i18n.resolve_locale(choice, user.language_code)


async def set_request_locale(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Runs before every handler: later texts of this update speak the user's language."""
    if isinstance(update, Update):
        i18n.set_locale(await user_locale(update, context))


def language_keyboard(current: str) -> InlineKeyboardMarkup:
    """Every language in its own name, two per row, the current one ticked."""
    buttons = [
        InlineKeyboardButton(
            ("✓ " if locale == current else "") + i18n.language_name(locale),
            callback_data=CALLBACK_PREFIX + locale,
        )
        for locale in i18n.LOCALES
    ]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


async def cmd_language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/language: the keyboard of languages."""
    message = update.effective_message
    if message is None:
        return
    keyboard = language_keyboard(i18n.current_locale())
    await reply(context, message, messages.language_prompt(), reply_markup=keyboard)


async def on_language_chosen(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A language button: store the choice for whoever pressed it and confirm in that language."""
    query = update.callback_query
    if query is None:
        return
    locale = (query.data or "").removeprefix(CALLBACK_PREFIX)
    if locale not in i18n.LOCALES:
        # A keyboard from before a language was removed: say so instead of a silent spinner.
        await quietly(query.answer(messages.button_expired(), show_alert=True), "answer button")
        return
    try:
        await get_services(context).store.set_language(query.from_user.id, locale)
    except StorageUnavailable as err:
        logger.error("Storage unavailable: %s", err)
        text = messages.temporarily_unavailable()
        await quietly(query.answer(text, show_alert=True), "answer button")
        return
    i18n.set_locale(locale)
    done = messages.language_set()
    message = query.message
    if isinstance(message, Message) and message.chat.type == ChatType.PRIVATE:
        # The keyboard was for this user alone: it becomes the confirmation (or, if the
        # message can no longer be edited, the confirmation is a toast).
        edited = await quietly(query.edit_message_text(done), "confirm the language")
        await quietly(query.answer(None if edited else done), "answer button")
        return
    # In a group the keyboard stays for the others; the presser gets a toast of their own.
    await quietly(query.answer(done), "answer button")
