"""Basic groups upgraded to supergroups: every reply follows the group to its new chat id."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram.error import ChatMigrated

logger = logging.getLogger(__name__)

T = TypeVar("T")

# send(chat_id, thread_id): the one Bot API call, made for the chat the message goes to.
Send = Callable[[int, int | None], Awaitable[T]]


class Migrations:
    """Where groups that became supergroups now live (migrations are permanent)."""

    def __init__(self) -> None:
        self._moved: dict[int, int] = {}

    def chat_id(self, chat_id: int) -> int:
        """The chat id messages for `chat_id` go to now."""
        return self._moved.get(chat_id, chat_id)

    async def send(self, chat_id: int, thread_id: int | None, send: Send[T]) -> T:
        """Make a send to `chat_id` (and topic); if the group became a supergroup, there."""
        target = self.chat_id(chat_id)
        try:
            # A basic group has no topics, so there is no thread to carry over.
            return await send(target, thread_id if target == chat_id else None)
        except ChatMigrated as err:
            new_chat_id = int(err.new_chat_id)
            logger.info("Chat %s became supergroup %s: sending there", target, new_chat_id)
            self._moved[chat_id] = new_chat_id
            return await send(new_chat_id, None)
