"""The global error handler: log what no handler caught, tell the user something broke."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.i18n import messages
from bot.transport.handlers.common import reply

logger = logging.getLogger(__name__)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the error and reply, so no request goes unanswered (groups included)."""
    logger.error("Unhandled error while processing an update", exc_info=context.error)
    if not isinstance(update, Update) or update.effective_message is None:
        return
    message = update.effective_message
    if message.chat.type == ChatType.CHANNEL:
        return  # the bot takes no requests in channels
    try:
        await reply(context, message, messages.internal_error())
    except TelegramError as err:
        logger.warning("Could not report the error to chat %s: %s", message.chat_id, err)
