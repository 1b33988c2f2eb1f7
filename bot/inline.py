"""Inline mode: `@bot <image link>` in any chat answers with the cutout as a cached document."""

from __future__ import annotations

import logging

from telegram import Bot, InlineQuery

from bot.cutouts import CutoutService
from bot.ratelimit import Admission
from bot.storage import StateStore

logger = logging.getLogger(__name__)


class InlineRemoval:
    """Answers inline queries within Telegram's deadline, from the cache when it can."""

    def __init__(
        self,
        bot: Bot,
        cutouts: CutoutService,
        store: StateStore,
        admission: Admission,
        *,
        storage_chat_id: int | None,
        answer_timeout: float,
    ) -> None:
        self._bot = bot
        self._cutouts = cutouts
        self._store = store
        self._admission = admission
        self._storage_chat_id = storage_chat_id
        self._answer_timeout = answer_timeout

    async def answer(self, query: InlineQuery) -> None:
        """Answer one inline query (exactly one answerInlineQuery call)."""
        raise NotImplementedError
