"""Albums in private chats: the messages of one media group collected, then answered together.

The album is answered by bot.transport.surfaces.album through the lifecycle (bot.requests.batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.removal.sources import ImageSource

# An album's items arrive within a second or so; a steady trickle must not stall it for ever.
MAX_COLLECT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class AlbumItem:
    """One message of an album: an image source, or the reason it cannot be used."""

    message_id: int
    source: ImageSource | None
    problem: str | None = None


# Answers a collected album: (user id, chat id, its items in album order).
AnswerAlbum = Callable[[int, int, list[AlbumItem]], Awaitable[None]]


@dataclass(slots=True)
class _Collecting:
    items: dict[int, AlbumItem]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the album's summary is delivered: every item's request ends there, so none
    # is recorded as answered (bot.requests.journal) before the whole album is.
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class AlbumCollector:
    """Collects the messages of one media group, then hands them over together."""

    def __init__(self, answer: AnswerAlbum, *, wait: float = 1.0) -> None:
        self._answer = answer
        self._wait = wait
        self._collecting: dict[tuple[int, str], _Collecting] = {}

    async def add(self, user_id: int, chat_id: int, media_group_id: str, item: AlbumItem) -> None:
        """Add an item; the first caller of a group waits for the rest and answers for all."""
        key = (chat_id, media_group_id)
        collecting = self._collecting.get(key)
        if collecting is not None:
            # A repeated update must not turn one image into two.
            collecting.items.setdefault(item.message_id, item)
            collecting.arrived.set()
            await collecting.answered.wait()
            return
        collecting = _Collecting({item.message_id: item})
        self._collecting[key] = collecting
        try:
            await self._quiet_period(collecting)
        except BaseException:
            collecting.answered.set()
            raise
        finally:
            # A straggler arriving after this point starts an album of its own.
            del self._collecting[key]
        items = sorted(collecting.items.values(), key=lambda i: i.message_id)
        try:
            await self._answer(user_id, chat_id, items)
        finally:
            collecting.answered.set()

    async def _quiet_period(self, collecting: _Collecting) -> None:
        """Return once no item arrived for `wait` seconds (or the overall bound is reached)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_COLLECT_SECONDS
        while True:
            collecting.arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(collecting.arrived.wait(), min(self._wait, remaining))
            except TimeoutError:
                return
