"""A button press's lifecycle: admit -> status -> job -> deliver -> exactly one reply.

The removal lifecycle's steps (bot/requests/lifecycle.py) for a job that is no Freepik removal:
a studio action (bot/studio/) on cutouts Telegram already holds, with no Freepik call and no
rate-limit slot. The press surface (bot/transport/surfaces/press.py) says how the press is
answered (the status is the callback answer), where results go and how a failure is explained;
the order of the steps, who may press, and the one log line and metric per press live here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from telegram.error import Forbidden, TelegramError

from bot.i18n import messages
from bot.ops.metrics import Metrics
from bot.storage.base import StorageUnavailable
from bot.studio.actions import Delivery, Keyboard, StudioAction
from bot.studio.callback import parse_callback
from bot.studio.making import Declined, Made
from bot.studio.records import Item, Record, Records
from bot.studio.work import Outlet, Sent, Workshop

logger = logging.getLogger(__name__)

# Press outcomes that point at trouble on our side; the rest (someone else's press, an expired
# keyboard, an unreadable image, a full pack, a user's own presses still at work) are routine
# and logged at INFO.
_TROUBLE = frozenset({"internal_error", "storage_down", "busy", "worker_lost"})

# Studio jobs one user may have at work at once. A job takes at most one place in the CPU pool
# at a time (an album's cutouts are made one after another), so one user pressing buttons under
# big images holds at most this many of IMAGE_WORKERS + IMAGE_QUEUE, never all of them.
PRESSES_PER_USER = 2


class PressSurface(Outlet, ABC):
    """A press of a studio button: how its one reply is shown, and where its results go."""

    # Who pressed, and the button's callback data as Telegram sent it.
    user_id: int
    data: str | None
    # The chat replies go to, once `place` knows it (0: not yet).
    chat_id: int = 0

    @abstractmethod
    def stand_in(self) -> Record | None:
        """A single cutout's record from its own message, when the stored one is gone."""

    @abstractmethod
    def place(self, record: Record) -> None:
        """Decide where replies go: the pressed message's chat and topic, else the record's."""

    @abstractmethod
    async def answer(self, text: str | None) -> None:
        """The status: answer the press at once (a toast with `text`); only the first counts."""

    @abstractmethod
    async def switch(self, keyboard: Keyboard, token: str) -> None:
        """Show another keyboard under the pressed message."""

    @abstractmethod
    async def ask(self, record: Record) -> None:
        """My background: wait for the owner's photo and ask for it (raises StorageUnavailable)."""

    @abstractmethod
    async def explain(self, text: Callable[[], str]) -> None:
        """The one reply to a press without a result: a toast while unanswered, else a message."""


@dataclass(slots=True)
class _Counted:
    """What the press's log line and metric say about it, as far as it got."""

    action: str = "-"
    items: int = 0


class Presses:
    """Runs every studio button press the same way, from the callback answer to its one reply."""

    def __init__(
        self,
        records: Records,
        workshop: Workshop,
        *,
        metrics: Metrics | None = None,
        per_user: int = PRESSES_PER_USER,
    ) -> None:
        self.records = records
        self.workshop = workshop
        self.metrics = metrics or Metrics()
        self.per_user = per_user
        self._at_work: Counter[int] = Counter()  # admitted jobs per user, until they end

    async def run(self, surface: PressSurface) -> str:
        """Take one press to its one reply; log and count it once; return its outcome."""
        started = time.monotonic()
        counted = _Counted()
        outcome = "internal_error"
        try:
            outcome = await self._run(surface, counted)
        except Forbidden as err:
            logger.warning("Cannot answer a button press in chat %s: %s", surface.chat_id, err)
            outcome = "undeliverable"
        except Exception:
            logger.exception("Unexpected error in a studio button press")
            await surface.explain(messages.studio_failed)
        finally:
            self.report(surface, counted, outcome, time.monotonic() - started)
        return outcome

    def report(self, surface: PressSurface, counted: _Counted, outcome: str, took: float) -> None:
        """Count and log how a press ended (once per press)."""
        self.metrics.studio_press(counted.action, outcome)
        logger.log(
            logging.WARNING if outcome in _TROUBLE else logging.INFO,
            "studio user=%s action=%s items=%d outcome=%s total=%.3fs",
            surface.user_id,
            counted.action,
            counted.items,
            outcome,
            took,
        )

    async def admit(
        self, surface: PressSurface, action: StudioAction, record: Record
    ) -> Declined | None:
        """Whether the owner's press may start its job now (None: yes; keyboards always may).

        Each user has a share of the CPU pool: past `per_user` jobs at work, a press gets one
        plain toast and takes no place, so one user pressing buttons under big images cannot
        fill IMAGE_QUEUE and leave everyone else told the bot is busy. An admitted press holds
        its place until `release`.
        """
        if self._at_work[surface.user_id] >= self.per_user:
            return Declined("user_busy", messages.studio_wait_for_yours)
        self._at_work[surface.user_id] += 1
        return None

    def release(self, surface: PressSurface) -> None:
        """An admitted press's job ended: its place in the owner's share is free again."""
        self._at_work[surface.user_id] -= 1
        if self._at_work[surface.user_id] <= 0:
            del self._at_work[surface.user_id]

    async def _run(self, surface: PressSurface, counted: _Counted) -> str:
        parsed = parse_callback(surface.data)
        if parsed is None:
            await surface.answer(messages.studio_invalid())
            return "invalid"
        action, token = parsed
        counted.action = action.name
        try:
            record = await self._record(token, surface)
        except StorageUnavailable as err:
            logger.error("Storage unavailable: %s", err)
            await surface.answer(messages.studio_storage_down())
            return "storage_down"
        if record is None:
            await surface.answer(messages.studio_expired())
            return "expired"
        counted.items = len(record.items)
        if surface.user_id != record.owner:
            await surface.answer(messages.studio_not_yours())
            return "not_owner"
        surface.place(record)
        if action.delivery is Delivery.KEYBOARD:
            await surface.answer(None)
            await surface.switch(action.keyboard, token)
            return "keyboard"
        if action.delivery is Delivery.ASK:
            # The question is the press's one reply; the photo that answers it starts the job
            # (bot/transport/surfaces/background.py), as a request of its own.
            await surface.answer(None)
            try:
                await surface.ask(record)
            except StorageUnavailable as err:
                logger.error("Storage unavailable: %s", err)
                await surface.explain(messages.studio_storage_down)
                return "storage_down"
            return "asked"
        refused = await self.admit(surface, action, record)
        if refused is not None:
            await surface.explain(refused.text)
            return refused.outcome
        # The status goes out while the job starts (getFile, the download, the conversion): a
        # round trip to Telegram less before the result. Anything sent waits for it, so the
        # toast still comes first.
        answering = asyncio.create_task(surface.answer(messages.studio_working()))
        try:
            try:
                await asyncio.sleep(0)  # let it start: its request goes out before the job's
                await self.workshop.run(action, record, _AfterAnswer(surface, answering))
            finally:
                await answering  # before any explanation: it depends on the press being answered
        except Declined as declined:
            await surface.explain(declined.text)
            return declined.outcome
        finally:
            self.release(surface)
        if action.then is not None:
            try:
                await surface.switch(action.then, token)
            except TelegramError as err:
                # The result is out; the buttons are a nicety.
                logger.info("Could not switch the buttons back after a press: %s", err)
        return "ok"

    async def _record(self, token: str, surface: PressSurface) -> Record | None:
        """The keyboard's record from the store, else from the pressed message."""
        try:
            record = await self.records.get(token)
        except StorageUnavailable:
            # A single cutout's message is enough to go on; an album's buttons need the store.
            if (fallback := surface.stand_in()) is not None:
                return fallback
            raise
        return record if record is not None else surface.stand_in()


class _AfterAnswer(Outlet):
    """The press's outlet, sending nothing to the chat before the press's answer is out."""

    def __init__(self, outlet: Outlet, answering: asyncio.Task[None]) -> None:
        self._outlet = outlet
        self._answering = answering

    async def download(self, item: Item) -> bytes:
        """The cutout's bytes (no need to wait: nothing is shown)."""
        return await self._outlet.download(item)

    async def send(self, delivery: Delivery, made: Sequence[Made], sent: Sent) -> None:
        """The results, once the press is answered."""
        await self._answering
        await self._outlet.send(delivery, made, sent)

    async def add_to_pack(self, owner: int, made: Made) -> bool:
        """One sticker into the owner's pack, once the press is answered."""
        await self._answering
        return await self._outlet.add_to_pack(owner, made)

    async def packed(self, owner: int, added: int, created: bool) -> None:
        """The pack's message, once the press is answered."""
        await self._answering
        await self._outlet.packed(owner, added, created)
