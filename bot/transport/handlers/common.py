"""Helpers shared by handlers: turning a message into an image source, replying to it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Message, MessageEntity
from telegram.ext import ContextTypes

from bot.i18n import messages
from bot.removal.sources import (
    ACCEPTED_MIME_TYPES,
    MAX_INPUT_BYTES,
    ImageSource,
    NotHttpLink,
    SourceKind,
    find_scheme_link,
    image_type_from_name,
    normalise_link,
)
from bot.requests.admission import HintGate
from bot.transport.migrations import Migrations
from bot.transport.services import get_services

logger = logging.getLogger(__name__)


async def send_hint(
    message: Message,
    user_id: int | None,
    text: str,
    hints: HintGate,
    migrations: Migrations | None = None,
) -> None:
    """Explain what the bot takes, unless this user has had enough hints for now."""
    if user_id is not None and not await hints.allow(user_id):
        # A user who keeps sending unusable messages: stay quiet for a while (HINT_RATE_LIMIT).
        logger.debug("Hint to user %s withheld (HINT_RATE_LIMIT)", user_id)
        return
    await reply_following(message, text, migrations)


async def reply(
    context: ContextTypes.DEFAULT_TYPE, message: Message, text: str, **kwargs: Any
) -> Message:
    """Reply to `message`; in a group that became a supergroup, post in the supergroup."""
    try:
        migrations: Migrations | None = get_services(context).migrations
    except RuntimeError:  # an error before the services started: no move known yet
        migrations = None
    return await reply_following(message, text, migrations, **kwargs)


async def reply_following(
    message: Message, text: str, migrations: Migrations | None, **kwargs: Any
) -> Message:
    """Reply to `message`, following its group to the supergroup it became (if told)."""
    if migrations is None:
        return await message.reply_text(text, **kwargs)
    thread_id = message.message_thread_id if message.is_topic_message else None

    def send(chat_id: int, thread: int | None) -> Awaitable[Message]:
        if chat_id == message.chat_id:
            return message.reply_text(text, **kwargs)
        # The message stayed behind in the basic group: there is nothing to reply to.
        return message.get_bot().send_message(
            chat_id=chat_id, text=text, message_thread_id=thread, **kwargs
        )

    return await migrations.send(message.chat_id, thread_id, send)


class Unusable(Exception):
    """The message holds nothing we can cut out; the message is the user's explanation."""


def source_from_media(
    message: Message, accepted: frozenset[str] = ACCEPTED_MIME_TYPES
) -> ImageSource | None:
    """The photo (largest size) or image document of `message`, if any."""
    if message.photo:
        largest = message.photo[-1]
        _refuse_empty(largest.file_size)
        return ImageSource.telegram_file(
            SourceKind.PHOTO,
            largest.file_id,
            largest.file_unique_id,
            file_size=largest.file_size,
        )
    document = message.document
    if document is None:
        return None
    mime = (document.mime_type or "").lower()
    if not mime or mime == "application/octet-stream":
        mime = image_type_from_name(document.file_name or "") or mime
    if mime not in accepted:
        raise Unusable(messages.not_an_image())
    if document.file_size is not None and document.file_size > MAX_INPUT_BYTES:
        raise Unusable(messages.input_too_large())
    _refuse_empty(document.file_size)
    return ImageSource.telegram_file(
        SourceKind.DOCUMENT,
        document.file_id,
        document.file_unique_id,
        file_name=document.file_name,
        file_size=document.file_size,
    )


def _refuse_empty(file_size: int | None) -> None:
    # Telegram says the file is empty (file_size 0): nothing Freepik could read, and a call to
    # find that out would be paid for.
    if file_size == 0:
        raise Unusable(messages.image_rejected())


def source_from_text(message: Message) -> ImageSource | None:
    """The first link in the text or caption of `message`, if any."""
    entities = message.parse_entities([MessageEntity.URL, MessageEntity.TEXT_LINK])
    if not entities:
        entities = message.parse_caption_entities([MessageEntity.URL, MessageEntity.TEXT_LINK])
    candidates = sorted(entities.items(), key=lambda item: item[0].offset)
    raw: str | None = None
    if candidates:
        entity, text = candidates[0]
        raw = entity.url if entity.type == MessageEntity.TEXT_LINK and entity.url else text
    else:
        raw = find_scheme_link(message.text or message.caption or "")
    if raw is None:
        return None
    try:
        return ImageSource.link(normalise_link(raw))
    except NotHttpLink as err:
        raise Unusable(messages.not_http()) from err


def source_from_message(
    message: Message, accepted: frozenset[str] = ACCEPTED_MIME_TYPES
) -> ImageSource | None:
    """Media first, then a link; `Unusable` explains what is wrong with the input."""
    return source_from_media(message, accepted) or source_from_text(message)
