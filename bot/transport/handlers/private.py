"""Private-chat handlers: commands, photos, image files, links and everything else."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType, ParseMode
from telegram.ext import ContextTypes

from bot.i18n import messages
from bot.transport.albums import AlbumItem
from bot.transport.handlers import payments
from bot.transport.handlers.common import Unusable, reply, send_hint, source_from_message
from bot.transport.services import get_services
from bot.transport.surfaces.chat import ChatRequest

logger = logging.getLogger(__name__)


async def cmd_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start and /help: what to send, the limits and the privacy note."""
    message = update.effective_message
    if message is None:
        return
    services = get_services(context)
    if context.args and context.args[0] == messages.INLINE_START_PARAMETER:
        # Opened from the button of an inline answer: explain inline mode.
        text = messages.inline_help(context.bot.username)
        await reply(context, message, text, parse_mode=ParseMode.HTML)
        return
    if (
        context.args
        and context.args[0] == messages.BUY_START_PARAMETER
        and services.credits.enabled
        and message.chat.type == ChatType.PRIVATE
    ):
        # Opened from /buy in a group (or an inline answer out of credits): the packs.
        await payments.show_packs(context, message)
        return
    rate_limit = services.settings.rate_limit
    text = messages.help_text(rate_limit, context.bot.username)
    await reply(context, message, text, parse_mode=ParseMode.HTML)


async def on_image(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo, an image file or a link: remove the background and reply with the PNG."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    services = get_services(context)
    # A photo My background waits for is no removal: looked at before anything else.
    if await services.backgrounds.offer(message, user.id):
        return
    try:
        source = source_from_message(message, services.accepted_mime_types)
    except Unusable as err:
        if message.media_group_id:
            item = AlbumItem(message.message_id, None, str(err))
            await services.albums.add(user.id, message.chat_id, message.media_group_id, item)
            return
        await send_hint(message, user.id, str(err), services.hints)
        return
    if source is None:
        await send_hint(message, user.id, messages.no_link(), services.hints)
        return
    if message.media_group_id:
        item = AlbumItem(message.message_id, source)
        await services.albums.add(user.id, message.chat_id, message.media_group_id, item)
        return
    request = ChatRequest(source, user.id, message.chat_id, message.message_id)
    await services.chat.process(request)


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, voice notes, unknown commands...: say what the bot takes."""
    message = update.effective_message
    user = update.effective_user
    if message is None:
        return
    if user is not None and await get_services(context).backgrounds.offer(message, user.id):
        return  # a sticker or voice note while My background waits: explained there
    if message.media_group_id and user is not None:
        # A video in a mixed album: named in the album's one summary, not answered apart.
        item = AlbumItem(message.message_id, None, messages.not_an_image())
        await get_services(context).albums.add(
            user.id, message.chat_id, message.media_group_id, item
        )
        return
    hints = get_services(context).hints
    await send_hint(message, user.id if user else None, messages.no_link(), hints)
