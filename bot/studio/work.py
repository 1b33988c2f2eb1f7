"""One press's job: make an action's results for a keyboard's cutouts and hand them out.

The handing out is an `Outlet` (the Telegram side: bot/transport/surfaces/press.py); what is made
and in which order it is sent, cached and counted is decided here.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bot.i18n import messages
from bot.studio.actions import Delivery, StudioAction
from bot.studio.making import Backdrop, Declined, Made, Maker
from bot.studio.records import Item, Record

# Called once per result as soon as it is out, with Telegram's file id of it.
Sent = Callable[[Made, str | None], Awaitable[None]]


class Outlet(Protocol):
    """Where a press's results go and where its cutouts come from."""

    @abstractmethod
    async def download(self, item: Item) -> bytes:
        """The cutout's bytes (`Declined` when it is too large or gone)."""

    @abstractmethod
    async def send(self, delivery: Delivery, made: Sequence[Made], sent: Sent) -> None:
        """Send the results as stickers or documents, calling `sent` for each."""

    @abstractmethod
    async def add_to_pack(self, owner: int, made: Made) -> bool:
        """Add one sticker to `owner`'s pack, making the pack if needed (True: made)."""

    @abstractmethod
    async def packed(self, owner: int, added: int, created: bool) -> None:
        """The pack's one message: `added` stickers are in it (it was just `created`)."""


class Workshop:
    """Runs actions: one conversion at a time per (result, cutouts), results out in order."""

    def __init__(self, maker: Maker) -> None:
        self._maker = maker
        # A quick second press waits, then finds the first one's result in the cache.
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def run(
        self,
        action: StudioAction,
        record: Record,
        outlet: Outlet,
        *,
        on: Backdrop | None = None,
    ) -> None:
        """Make and send the action's results; `Declined` says what could not be made.

        `on`: the photo that answered a My background press (see `Maker.make`).
        """
        if action.delivery is Delivery.PACK:
            await self._pack(action, record, outlet)
            return
        kind = action.kind if on is None else f"{action.kind}-{on.item.unique_id}"
        async with self._lock(kind, record):
            made, problems = await self._maker.make_all(action, record, outlet.download, on=on)
            if made:
                await outlet.send(action.sends, made, self._maker.remember)
        _raise_problems(record, problems)

    async def _pack(self, action: StudioAction, record: Record, outlet: Outlet) -> None:
        owner = record.owner
        async with self._lock(f"pk{owner}", record):
            # Made under the lock of the result's kind, as the Sticker button's are: a Sticker
            # press still at work is waited for and its sticker reused by file id, not made twice.
            async with self._lock(action.kind, record):
                made, problems = await self._maker.make_all(
                    action, record, outlet.download, pack_of=owner
                )
            created = False
            added = 0
            for result in made:
                if not result.already_packed:
                    created = await outlet.add_to_pack(owner, result) or created
                    await self._maker.mark_packed(owner, result.item, action.kind)
                added += 1
            if added:
                await outlet.packed(owner, added, created)
        _raise_problems(record, problems)

    def _lock(self, kind: str, record: Record) -> KeyLock:
        key = kind + ":" + ",".join(sorted(i.unique_id for i in record.items))
        return KeyLock(self._locks, key)


def _raise_problems(record: Record, problems: dict[int, Declined]) -> None:
    """One cutout: its own explanation; several: which ones failed and why."""
    if not problems:
        return
    if len(record.items) == 1:
        raise next(iter(problems.values()))
    lines = [messages.studio_partly()] + [
        messages.studio_item_problem(number, declined.text())
        for number, declined in problems.items()
    ]
    text = "\n".join(lines)
    raise Declined("partly", lambda: text)


class KeyLock:
    """An asyncio lock per key, dropped once nobody holds or waits for it."""

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, list[int]]], key: str) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._locks.setdefault(self._key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._locks[self._key][0].release()
        self._leave()

    def _leave(self) -> None:
        _lock, users = self._locks[self._key]
        users[0] -= 1
        if users[0] == 0:
            del self._locks[self._key]
