"""Many images answered together (an album): admitted in order, one status, one summary.

The lifecycle of a batch: credits for the whole batch (else one reply saying how many are
missing, and nothing starts) -> admit every image (album order, so a limit refuses the last
ones) -> one status -> the jobs -> the cutouts delivered in chunks (a cached file id Telegram
rejects is remade once) -> exactly one summary of what did not come back -> every image counted,
one log line. A `BatchSurface` says how the status, the cutouts and the summary are shown; the
money rules are `Lifecycle.admit_batch` and `Lifecycle.start`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from telegram.error import BadRequest, Forbidden, TelegramError

from bot.removal.cutouts import Produced, Role, Ticket
from bot.removal.pipeline import Cutout
from bot.removal.sources import ImageSource
from bot.requests.admission import RateLimited, Refusal
from bot.requests.lifecycle import Lifecycle
from bot.requests.outcomes import Outcome, classify, log_failure
from bot.requests.rejected import drop_rejected, is_rejected_file_id

logger = logging.getLogger(__name__)


class State(StrEnum):
    """Where one image of a batch stands."""

    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    LIMITED = "limited"


@dataclass(slots=True)
class Entry:
    """One numbered image of a batch and what became of it."""

    number: int
    source: ImageSource | None
    # Why the item cannot be used, as the user would read it for a single image.
    problem: str | None = None
    state: State = State.PENDING
    ticket: Ticket | None = None
    produced: Produced | None = None
    refusal: Refusal | None = None
    outcome: Outcome | None = None

    def fail(self, outcome: Outcome) -> None:
        """Mark the image as not delivered."""
        self.state = State.FAILED
        self.outcome = outcome


class BatchSurface(ABC):
    """Where a batch came from and how its cutouts and its one summary are shown there."""

    user_id: int
    chat_id: int
    # How many cutouts one delivery carries.
    chunk_size: int

    @abstractmethod
    async def show_status(self, count: int) -> None:
        """Say `count` images are being made; Forbidden ends the batch, other errors do not."""

    @abstractmethod
    async def send(self, cutouts: Sequence[Produced]) -> Sequence[str | None]:
        """Deliver one chunk of cutouts together; Telegram's file id of each, in order."""

    @abstractmethod
    async def rejected(self, file_ids: Sequence[str]) -> set[str]:
        """Which of these cached file ids Telegram no longer takes."""

    async def follow_up(self) -> None:  # noqa: B027 - optional step
        """Whatever goes after the delivered cutouts (their buttons)."""

    @abstractmethod
    async def succeeded(self) -> None:
        """Every image came back: tidy up (delete the status)."""

    @abstractmethod
    async def explain(self, entries: Sequence[Entry]) -> None:
        """The one summary naming the images that did not come back, and why."""

    async def refused(self, refusal: Refusal, entries: Sequence[Entry]) -> None:
        """The one reply to a batch refused as a whole (nothing started): the summary."""
        await self.explain(entries)

    @abstractmethod
    def log(self, counts: Mapping[State, int], seconds: float) -> None:
        """The batch's one log line."""


async def _no_upload(cutout: Cutout) -> str | None:
    # The leader keeps the bytes: all cutouts of the batch are uploaded together at the end.
    return None


class Batch:
    """One batch from its status to its one summary, every image counted once."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        surface: BatchSurface,
        items: Sequence[tuple[ImageSource | None, str | None]],
    ) -> None:
        self._lifecycle = lifecycle
        self._surface = surface
        self.entries = [
            Entry(n, source, problem) for n, (source, problem) in enumerate(items, start=1)
        ]

    async def run(self) -> None:
        """Answer the whole batch; count every image and log one line."""
        started = time.monotonic()
        try:
            await self._run()
        except Exception:
            logger.exception("Unexpected error in an album")
            for entry in self.entries:
                if entry.state is State.PENDING:
                    if entry.ticket is not None:
                        entry.ticket.cancel()
                    entry.fail(Outcome.INTERNAL_ERROR)
            await self._answer()
        finally:
            self._count()
            counts = dict.fromkeys(State, 0)
            for entry in self.entries:
                counts[entry.state] += 1
            self._surface.log(counts, time.monotonic() - started)

    async def _run(self) -> None:
        for entry in self.entries:
            if entry.source is None or entry.problem is not None:
                entry.fail(Outcome.BAD_INPUT)
        refusal = await self._start_jobs()
        if refusal is not None:
            await self._surface.refused(refusal, self.entries)
            return
        started = [e for e in self.entries if e.ticket is not None]
        # Cache hits come back at once: a status message would only flicker.
        needs_status = any(e.ticket and e.ticket.role is not Role.CACHED for e in started)
        if needs_status and not await self._show_status(len(started)):
            return
        await asyncio.gather(*(self._await_result(e) for e in started))
        if not await self._deliver():
            return
        await self._surface.follow_up()
        await self._answer()

    async def _start_jobs(self) -> Refusal | None:
        """Start the jobs in album order, so a limit refuses the last images, not random ones.

        Returns the refusal of the whole batch (not enough credits for it): then none started.
        """
        usable = [(e, e.source) for e in self.entries if e.state is State.PENDING and e.source]
        sources = [source for _, source in usable]
        refusal = await self._lifecycle.admit_batch(self._surface.user_id, sources)
        for entry, source in usable:
            if refusal is not None:
                entry.state = State.LIMITED
                entry.refusal = refusal
            else:
                await self._start(entry, source)
        return refusal

    async def _start(self, entry: Entry, source: ImageSource) -> None:
        try:
            entry.ticket = await self._lifecycle.start(source, self._surface.user_id, _no_upload)
        except RateLimited as limited:
            entry.state = State.LIMITED
            entry.refusal = limited.refusal
        except Exception as err:  # e.g. JobAborted while shutting down
            self._failed(entry, err)

    async def _show_status(self, count: int) -> bool:
        """Show the status; False if the user blocked the bot."""
        try:
            await self._surface.show_status(count)
        except Forbidden as err:
            logger.warning("Cannot write to chat %s: %s", self._surface.chat_id, err.message)
            for entry in self.entries:
                if entry.ticket is not None:
                    entry.ticket.cancel()
                if entry.state is State.PENDING:
                    entry.fail(Outcome.UNDELIVERABLE)
            return False
        except TelegramError as err:
            # Not fatal: the work goes on and the summary, if any, becomes a fresh reply.
            logger.warning(
                "Could not post the album status in chat %s: %s", self._surface.chat_id, err
            )
        return True

    async def _await_result(self, entry: Entry) -> None:
        assert entry.ticket is not None
        try:
            produced = await entry.ticket.result()
        except Exception as err:
            self._failed(entry, err)
            return
        if produced.file_id is None and produced.cutout is None:
            logger.error("A shared job produced neither bytes nor a file id")
            entry.fail(Outcome.INTERNAL_ERROR)
            return
        entry.produced = produced

    def _failed(self, entry: Entry, err: Exception) -> None:
        outcome, _ = classify(err)
        log_failure(logger, outcome, err, "an album job")
        entry.fail(outcome)

    async def _deliver(self) -> bool:
        """Send the finished cutouts in chunks; False if the user blocked the bot."""
        ready = [e for e in self.entries if e.state is State.PENDING and e.produced is not None]
        size = self._surface.chunk_size
        for start in range(0, len(ready), size):
            chunk = ready[start : start + size]
            rerun = False
            while chunk:
                try:
                    file_ids = await self._surface.send([e.produced for e in chunk if e.produced])
                except Forbidden as err:
                    logger.warning(
                        "Chat %s blocked the bot: %s", self._surface.chat_id, err.message
                    )
                    for entry in ready[start:]:
                        if entry.state is State.PENDING:
                            entry.fail(Outcome.UNDELIVERABLE)
                    return False
                except BadRequest as err:
                    if rerun or not is_rejected_file_id(err):
                        self._undeliverable(chunk, err)
                        break
                    # A cached file id Telegram no longer takes: those images afresh, once.
                    rerun = True
                    chunk = await self._rerun_rejected(chunk, err)
                    continue
                except TelegramError as err:
                    self._undeliverable(chunk, err)
                    break
                await self._record_sent(chunk, file_ids)
                break
        return True

    def _undeliverable(self, chunk: list[Entry], err: TelegramError) -> None:
        logger.error("Could not send an album to chat %s: %s", self._surface.chat_id, err)
        for entry in chunk:
            entry.fail(Outcome.UNDELIVERABLE)

    async def _rerun_rejected(self, chunk: list[Entry], err: BadRequest) -> list[Entry]:
        """Drop the cached file ids Telegram rejected and make those images again.

        Returns what is left to send: the chunk with the remade images, without any refused
        by the limits or failed this time.
        """
        cached = [
            (entry, entry.source, entry.produced.file_id)
            for entry in chunk
            if entry.source is not None and entry.produced and entry.produced.file_id
        ]
        if not cached:
            self._undeliverable(chunk, err)
            return []
        bad = await self._surface.rejected([file_id for _, _, file_id in cached])
        # If Telegram confirms no culprit, none of the chunk's file ids is trusted.
        stale = [c for c in cached if c[2] in bad] or cached
        for entry, source, file_id in stale:
            await drop_rejected(self._lifecycle.cutouts, source, file_id)
            entry.produced = None
            entry.ticket = None
            await self._start(entry, source)
        rerun = [entry for entry, _, _ in stale if entry.ticket is not None]
        await asyncio.gather(*(self._await_result(e) for e in rerun))
        return [e for e in chunk if e.state is State.PENDING and e.produced is not None]

    async def _record_sent(self, chunk: list[Entry], file_ids: Sequence[str | None]) -> None:
        for index, entry in enumerate(chunk):
            await self._delivered(entry, file_ids[index] if index < len(file_ids) else None)

    async def _delivered(self, entry: Entry, file_id: str | None) -> None:
        entry.state = State.OK
        produced = entry.produced
        if produced is None or not file_id:
            return
        if entry.source is not None:
            await self._lifecycle.cache_upload(entry.source, produced, file_id)
        await self._lifecycle.remember_for_user(self._surface.user_id, file_id, produced.file_name)

    async def _answer(self) -> None:
        """The one reply: nothing more if every image came back, else the summary."""
        if all(e.state is State.OK for e in self.entries):
            await self._surface.succeeded()
        else:
            await self._surface.explain(self.entries)

    def _count(self) -> None:
        """Count every image of the batch like a single request (refusals counted at start)."""
        for entry in self.entries:
            kind = entry.source.kind if entry.source is not None else "other"
            via = entry.ticket.role if entry.ticket is not None else "-"
            if entry.state is State.OK:
                outcome: str = Outcome.OK
            elif entry.state is State.LIMITED:
                outcome = Outcome.RATE_LIMITED
            else:
                outcome = entry.outcome or Outcome.INTERNAL_ERROR
            self._lifecycle.count(kind, outcome, via)
