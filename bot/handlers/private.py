"""Private-chat handlers: commands, photos, image files, links and everything else."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from bot import messages
from bot.chat import ChatRequest
from bot.handlers.common import Unusable, source_from_message
from bot.services import get_services

logger = logging.getLogger(__name__)


async def cmd_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start and /help: what to send, the limits and the privacy note."""
    message = update.effective_message
    if message is None:
        return
    rate_limit = get_services(context).settings.rate_limit
    await message.reply_text(messages.help_text(rate_limit), parse_mode=ParseMode.HTML)


async def on_image(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo, an image file or a link: remove the background and reply with the PNG."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    try:
        source = source_from_message(message)
    except Unusable as err:
        await message.reply_text(str(err))
        return
    if source is None:
        await message.reply_text(messages.NO_LINK)
        return
    request = ChatRequest(source, user.id, message.chat_id, message.message_id)
    await get_services(context).chat.process(request)


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, voice notes, unknown commands...: say what the bot takes."""
    message = update.effective_message
    if message is not None:
        await message.reply_text(messages.NO_LINK)
