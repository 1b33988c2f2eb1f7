"""Replies to one message in its chat and forum topic, following a group that became a supergroup.

The base of a chat request's surface (bot/transport/surfaces/chat.py) and of a studio job's
outlet (bot/transport/surfaces/outlet.py): both answer one message the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters

from bot.transport.migrations import Migrations, Send

T = TypeVar("T")


class ChatReplies:
    """Messages replying to one message, in its chat and topic (or the supergroup it became)."""

    # The chat replies go to (0: not known yet), the message they reply to, its topic.
    chat_id: int = 0

    def __init__(self, bot: Bot, migrations: Migrations) -> None:
        self._bot = bot
        self._migrations = migrations
        self._reply_to: int | None = None
        self._thread_id: int | None = None

    async def _message(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[Message]:
            return self._bot.send_message(
                chat_id=chat_id,
                text=text,
                reply_parameters=self._reply(chat_id),
                message_thread_id=thread_id,
                reply_markup=markup,
            )

        return await self._to_chat(send)

    async def _to_chat(self, send: Send[T]) -> T:
        """Send to the chat (and topic); if the group became a supergroup, there."""
        return await self._migrations.send(self.chat_id, self._thread_id, send)

    def _reply(self, chat_id: int) -> ReplyParameters | None:
        # The message replied to stayed behind in the basic group: nothing to reply to.
        if self._reply_to is None or chat_id != self.chat_id:
            return None
        return ReplyParameters(message_id=self._reply_to, allow_sending_without_reply=True)
