"""Handler slots shared between users in turns, so one user's backlog delays only that user.

python-telegram-bot runs at most `concurrent_updates` handlers at once and queues the rest
behind one FIFO semaphore: 900 texts from one user take the whole pool, and an update from
anyone else that arrives after them waits until all but the last few hundred are answered
(~20 s at Telegram's overall rate, when every text gets a reply). Here a free slot goes to the
next user in round-robin order among those waiting, and no user's messages hold more than a
few slots at once; within one user updates start in the order they arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Hashable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

logger = logging.getLogger(__name__)

# python-telegram-bot's own semaphore is set out of reach: the slots are handed out here.
_OUT_OF_REACH = 1 << 30


class FairSlots:
    """`limit` slots handed out in turns between keys, at most `per_key` capped ones to a key.

    A key's capped and uncapped acquirers wait in two lines of their own, so an uncapped one
    (an album item, a button press) never waits behind the key's capped backlog.
    """

    def __init__(self, limit: int, *, per_key: int | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.per_key = max(1, min(per_key or limit, limit))
        self._busy = 0
        # By line, (key, capped): slots held, and the waiters in arrival order.
        self._held: Counter[tuple[Hashable, bool]] = Counter()
        self._waiting: OrderedDict[tuple[Hashable, bool], deque[asyncio.Future[None]]] = (
            OrderedDict()
        )

    @property
    def busy(self) -> int:
        """Slots held now."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Acquirers waiting for a slot."""
        return sum(len(queue) for queue in self._waiting.values())

    def held_by(self, key: Hashable) -> int:
        """Slots `key` holds now, capped or not."""
        return self._held[(key, True)] + self._held[(key, False)]

    async def acquire(self, key: Hashable, *, capped: bool = True) -> None:
        """Wait for a slot in `key`'s turn (`capped`: within its share of the pool)."""
        line = (key, capped)
        if self._busy < self.limit and line not in self._waiting and self._fits(line):
            self._take(line)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(line, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            queue = self._waiting.get(line)
            if queue is not None and future in queue:
                queue.remove(future)
                if not queue:
                    del self._waiting[line]
            elif future.done() and not future.cancelled():
                self.release(key, capped=capped)  # granted as it was cancelled: give it back
            raise

    def release(self, key: Hashable, *, capped: bool = True) -> None:
        """Give a slot of `key` back and hand free slots to whoever is next."""
        line = (key, capped)
        self._busy -= 1
        self._held[line] -= 1
        if self._held[line] <= 0:
            del self._held[line]
        self._hand_out()

    def _fits(self, line: tuple[Hashable, bool]) -> bool:
        return not line[1] or self._held[line] < self.per_key

    def _take(self, line: tuple[Hashable, bool]) -> None:
        self._busy += 1
        self._held[line] += 1

    def _hand_out(self) -> None:
        while self._busy < self.limit and self._waiting:
            # The waiting key holding the fewest slots goes first (the longest waiting of
            # those): a newcomer is not kept behind a flood that already runs.
            chosen: list[tuple[Hashable, bool]] = []
            fewest = 0
            for line in self._waiting:
                held = self.held_by(line[0])
                if (not chosen or held < fewest) and self._fits(line):
                    chosen, fewest = [line], held
                    if held == 0:
                        break
            if not chosen:
                return  # every waiting line holds its share: the next release decides
            line = chosen[0]
            queue = self._waiting.pop(line)
            future = queue.popleft()
            if queue:
                self._waiting[line] = queue  # to the back, with the rest of its updates
            if not future.done():
                self._take(line)
                future.set_result(None)


def turn_of(update: object) -> tuple[Hashable, bool]:
    """Whose turn an update waits for, and whether it counts against that user's share.

    Only new messages count: they are what a user can send hundreds of, each starting a job or
    a reply. Not an album's items, which wait for one another (each request ends with the
    album's one reply; a share smaller than the album would split it), nor updates with a
    deadline of their own: inline queries, button presses (their own per-user share is in
    bot.requests.presses) and checkouts (answered within 10 seconds).
    """
    if not isinstance(update, Update):
        return None, False
    user = update.effective_user
    chat = update.effective_chat
    key: Hashable = ("user", user.id) if user is not None else ("chat", chat.id if chat else None)
    message = update.message
    return key, message is not None and message.media_group_id is None


class FairUpdateProcessor(BaseUpdateProcessor):
    """Runs up to `limit` handlers at once, the slots shared between users in turns."""

    def __init__(self, limit: int = 256, *, per_user: int | None = None) -> None:
        super().__init__(_OUT_OF_REACH)
        self.slots = FairSlots(limit, per_key=per_user)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Wait for this user's turn, then run the handlers."""
        key, capped = turn_of(update)
        try:
            await self.slots.acquire(key, capped=capped)
        except BaseException:
            close = getattr(coroutine, "close", None)
            if close is not None:
                close()  # never started: no "coroutine was never awaited" warning
            raise
        try:
            await coroutine
        finally:
            self.slots.release(key, capped=capped)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""
