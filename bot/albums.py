"""Albums in private chats: every image processed, the cutouts sent back as albums."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import Bot

from bot.cutouts import CutoutService
from bot.ratelimit import Admission
from bot.sources import ImageSource
from bot.storage import StateStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlbumItem:
    """One message of an album: an image source, or the reason it cannot be used."""

    message_id: int
    source: ImageSource | None
    problem: str | None = None


class AlbumCollector:
    """Collects the messages of one media group, then processes them together."""

    def __init__(
        self,
        bot: Bot,
        cutouts: CutoutService,
        store: StateStore,
        admission: Admission,
        *,
        wait: float = 1.0,
    ) -> None:
        self._bot = bot
        self._cutouts = cutouts
        self._store = store
        self._admission = admission
        self._wait = wait

    async def add(self, user_id: int, chat_id: int, media_group_id: str, item: AlbumItem) -> None:
        """Add an item; the first caller of a group waits for the rest and answers for all."""
        raise NotImplementedError
