"""`/removebg` (alias `/nobg`): the way to use the bot in groups, and in private chats too."""

from __future__ import annotations

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes, filters

from bot.i18n import messages
from bot.removal.sources import ImageSource
from bot.transport.handlers.common import (
    Unusable,
    send_hint,
    source_from_media,
    source_from_message,
    source_from_text,
)
from bot.transport.services import get_services
from bot.transport.surfaces.chat import ChatRequest

REMOVEBG_COMMANDS = ("removebg", "nobg")


class CaptionCommand(filters.MessageFilter):
    """A photo or file whose caption starts with `/removebg` (or `/removebg@thisbot`)."""

    def __init__(self, commands: tuple[str, ...]) -> None:
        super().__init__(name="CaptionCommand")
        self._commands = {c.lower() for c in commands}

    def filter(self, message: Message) -> bool:
        """Whether the caption's first entity is one of our commands, addressed to us."""
        caption, entities = message.caption, message.caption_entities
        if not caption or not entities:
            return False
        first = entities[0]
        if first.type != MessageEntity.BOT_COMMAND or first.offset != 0:
            return False
        name, _, target = caption[1 : first.length].partition("@")
        if name.lower() not in self._commands:
            return False
        return not target or target.lower() == (message.get_bot().username or "").lower()


def find_source(message: Message, accepted: frozenset[str]) -> ImageSource | None:
    """The command's own photo or file, else a link argument, else the replied-to message."""
    source = source_from_media(message, accepted) or source_from_text(message)
    if source is None and message.reply_to_message is not None:
        source = source_from_message(message.reply_to_message, accepted)
    return source


async def cmd_removebg(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Cut out what the command points at and post the PNG as a reply to the command."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    services = get_services(context)
    try:
        source = find_source(message, services.accepted_mime_types)
    except Unusable as err:
        await send_hint(message, user.id, str(err), services.hints, services.migrations)
        return
    if source is None:
        await send_hint(
            message, user.id, messages.removebg_usage(), services.hints, services.migrations
        )
        return
    request = ChatRequest(
        source,
        user.id,
        message.chat_id,
        message.message_id,
        group=message.chat.type != ChatType.PRIVATE,
        # In a forum, answer in the topic the command came from (not in General).
        thread_id=message.message_thread_id if message.is_topic_message else None,
    )
    await services.chat.process(request)


async def on_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A reply to the bot in a group: the photo My background waits for, or nothing."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    # Anything else replying to the bot stays unanswered, as before My background.
    await get_services(context).backgrounds.offer(message, user.id)
