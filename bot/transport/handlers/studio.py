"""The studio buttons under cutouts, and /cancel of a My background wait."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from bot.i18n import messages
from bot.storage.base import StorageUnavailable
from bot.transport.handlers.common import reply
from bot.transport.services import get_services
from bot.transport.surfaces.press import ButtonPress

logger = logging.getLogger(__name__)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press of a studio button (Sticker, Background, a colour, More, My background...)."""
    query = update.callback_query
    if query is not None:
        # The press lifecycle answers at once and ends the press in exactly one reply.
        studio = get_services(context).studio
        await studio.presses.run(ButtonPress(context.bot, query, studio.migrations, studio.waits))


async def cmd_cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cancel: stop waiting for a My background photo in this chat (one line either way)."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    try:
        wait = await get_services(context).studio.waits.take(message.chat_id, user.id)
    except StorageUnavailable as err:
        logger.error("Storage unavailable: %s", err)
        await reply(context, message, messages.studio_storage_down())
        return
    text = messages.background_cancelled() if wait else messages.nothing_to_cancel()
    await reply(context, message, text)
