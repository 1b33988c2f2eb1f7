"""One request lifecycle: admit -> status -> job -> deliver -> exactly one reply -> journal.

A surface (a chat message, an inline query, an album, a button press) says how to show a status,
deliver a cutout and explain a failure; the order of the steps, the money rules (limits, the
daily budget) and the one log line per request live here, once. The journal closes the request's
record when the handler returns (bot.requests.journal), so "journal" is the caller's last step.
A studio button press, a job that is no Freepik removal, takes the same steps in
bot/requests/presses.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from telegram.error import BadRequest, Forbidden, TelegramError

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.ops.metrics import Metrics
from bot.removal.cutouts import CutoutService, Deliver, Produced, Role, Ticket
from bot.removal.pipeline import Cutout, JobAborted, JobTimings
from bot.removal.sources import ImageSource
from bot.requests.admission import Admission, HintGate, RateLimited, Refusal
from bot.requests.credits import Credits, Spend
from bot.requests.journal import current_update_id
from bot.requests.outcomes import CACHE_RESULT, Outcome, classify, log_failure
from bot.requests.rejected import drop_rejected, is_rejected_file_id
from bot.storage.base import StateStore, StorageUnavailable, StoredCutout

logger = logging.getLogger(__name__)


class Surface(ABC):
    """Where a request came from and how its one reply is shown there."""

    # What the request is, for the log line and the metrics (`photo`, `link`, `inline`...).
    kind: str
    user_id: int
    locale: str
    # The group the request came from (its own limit), None elsewhere.
    group_chat_id: int | None = None
    # When the reply must have gone (monotonic), or None: an inline answer cannot wait.
    deadline: float | None = None
    # Whether a refusal may be explained (False: the user is flooding and was told already).
    explain_refusals_always: bool = False

    @abstractmethod
    async def refused(self, refusal: Refusal) -> None:
        """The one reply to a request a limit refused."""

    @abstractmethod
    async def resend(self, stored: StoredCutout) -> None:
        """The one reply to a cache hit: Telegram's copy again (no Freepik, no upload)."""

    async def show_status(self, position: int) -> None:  # noqa: B027 - optional step
        """Say the job is queued (`position` > 0) or working; best effort, Forbidden cancels."""

    async def working(self) -> None:  # noqa: B027 - optional step
        """A queued job started: turn "queued" into "working"."""

    @abstractmethod
    async def upload(self, cutout: Cutout) -> str | None:
        """The job's own delivery of its fresh PNG; returns Telegram's file id of it."""

    @abstractmethod
    async def deliver(self, produced: Produced) -> str | None:
        """Deliver a cutout another request made (by file id, else its bytes); its file id."""

    async def succeeded(self, stored: StoredCutout) -> None:  # noqa: B027 - optional step
        """The cutout went out: tidy up (delete the status) or answer with it."""

    async def still_working(self) -> None:  # noqa: B027 - optional step
        """The deadline came before the cutout: the one reply says it is still being made."""

    async def blocked(self) -> None:  # noqa: B027 - optional step
        """Telegram refused to let the bot write where the cutout goes (Forbidden)."""

    @abstractmethod
    async def explain(self, outcome: Outcome, text: str) -> None:
        """The one reply to a request that failed: a plain explanation."""

    @abstractmethod
    def log(self, outcome: str, via: str, timings: JobTimings) -> None:
        """The request's one log line."""


class Till:
    """The money rules, once: the limits and the daily budget, then a free removal or a credit."""

    def __init__(self, admission: Admission, credits: Credits | None) -> None:
        self.admission = admission
        self.credits = credits
        # Watchers that give a credit back when the job it paid for fails.
        self._watchers: set[asyncio.Task[None]] = set()

    def admit(
        self, source: ImageSource, user_id: int, group_chat_id: int | None
    ) -> tuple[Callable[[], Awaitable[RateLimited | None]], list[Spend]]:
        """The admission of one new job (asked only before a Freepik call) and what it paid."""
        paid: list[Spend] = []
        # A request on record pays for its image once, even when it is resumed after a crash.
        update_id = current_update_id()
        key = None if update_id is None else f"{update_id}:{source.key}"

        async def admit() -> RateLimited | None:
            credits = self.credits
            if (
                credits is not None
                and await credits.missing_for(user_id, 1)
                and not await credits.paid_before(key)  # it was paid before the crash
            ):
                # Refused before the limits or the budget count anything.
                return RateLimited(await credits.refusal(user_id))
            refused = await self.admission.admit(user_id, group_chat_id)
            if refused is not None or credits is None:
                return refused
            spend = await credits.spend(user_id, note=source.kind, key=key)
            if spend is None:  # spent elsewhere meanwhile (another replica)
                return RateLimited(await credits.refusal(user_id))
            paid.append(spend)
            return None

        return admit, paid

    def give_back_on_failure(self, ticket: Ticket, paid: list[Spend]) -> None:
        """Watch the job `paid` paid for: if it fails (or is not ours), the credit returns."""
        credit = [spend for spend in paid if spend.kind == "credit"]
        if not credit:
            return  # free removals and exempt users have nothing to give back

        async def watch() -> None:
            if ticket.role is Role.LEADER:
                try:
                    await ticket.result()
                except BaseException:  # failed, aborted or cancelled: nothing was delivered
                    await self.give_back(credit)
                return
            await self.give_back(credit)  # another replica made it: no call for this user

        task = asyncio.create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def give_back(self, paid: list[Spend]) -> None:
        """Return what `paid` spent (credits only; a free removal stays used)."""
        if self.credits is None:
            return
        for spend in paid:
            try:
                await self.credits.give_back(spend)
            except StorageUnavailable as err:
                logger.error("Could not give a credit back to user %s: %s", spend.user_id, err)


class Rerun(Exception):
    """Telegram rejected a cached file id: the request runs once more, afresh."""


class Lifecycle:
    """Runs every removal request the same way, whatever surface it came from."""

    def __init__(
        self,
        cutouts: CutoutService,
        store: StateStore,
        admission: Admission,
        *,
        metrics: Metrics | None = None,
        hints: HintGate | None = None,
        credits: Credits | None = None,
    ) -> None:
        self.cutouts = cutouts
        self.till = Till(admission, credits)
        self.store = store
        self.metrics = metrics or Metrics()
        self._hints = hints

    async def run(self, surface: Surface, source: ImageSource) -> Outcome:
        """Take one request from admission to its one reply; log and count it once."""
        timings = JobTimings()
        outcome: str = Outcome.INTERNAL_ERROR
        role = "-"
        try:
            with i18n.using(surface.locale):
                outcome, role = await self._run(surface, source, timings, may_rerun=True)
        finally:
            self.report(surface, outcome, role, timings)
        return Outcome(outcome)

    def report(self, surface: Surface, outcome: str, via: str, timings: JobTimings) -> None:
        """Count and log how a request ended (once per request)."""
        working = via in (Role.LEADER, Role.FOLLOWER)
        self.count(surface.kind, outcome, via, timings.stages() if working else None)
        surface.log(outcome, via, timings)

    def count(
        self, kind: str, outcome: str, via: str, stages: dict[str, float] | None = None
    ) -> None:
        """Count how one image's request ended: its cache lookup and its outcome."""
        if via in (Role.CACHED, Role.LEADER, Role.FOLLOWER):
            self.metrics.cache_lookup(CACHE_RESULT[Role(via)])
        self.metrics.job_finished(kind, outcome, via, stages)

    async def start(
        self,
        source: ImageSource,
        user_id: int,
        deliver: Deliver,
        *,
        group_chat_id: int | None = None,
        timings: JobTimings | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> Ticket:
        """Find or start the job for `source`; the money rules apply only to a new job.

        The rules, in order: the limits and the daily budget (admins exempt), then the user's
        free allowance or one credit. Cache hits and joins of another job cost nothing; a job
        that fails gives its credit back. Raises `RateLimited` (counted here) when refused.
        """
        admit, paid = self.till.admit(source, user_id, group_chat_id)
        try:
            ticket = await self.cutouts.start(
                source, deliver, admit=admit, timings=timings, on_start=on_start
            )
        except RateLimited as limited:
            self.metrics.refused(limited.refusal.scope)
            raise
        except BaseException:
            await self.till.give_back(paid)
            raise
        self.till.give_back_on_failure(ticket, paid)
        return ticket

    async def admit_batch(self, user_id: int, sources: Sequence[ImageSource]) -> Refusal | None:
        """The money rule for images asked together (an album), before any job starts.

        Every image without a cached cutout needs a free removal or a credit: if the user lacks
        some, the refusal (counted here) says how many credits are missing and none starts.
        """
        credits = self.till.credits
        if credits is None or not await credits.missing_for(user_id, len(sources)):
            return None  # enough even if every image were new: no cache lookups needed
        new = [source for source in sources if await self.cutouts.cached(source) is None]
        refusal = await credits.shortfall(user_id, len(new))
        if refusal is not None:
            self.metrics.refused(refusal.scope)
        return refusal

    async def may_explain_refusal(self, user_id: int) -> bool:
        """Whether a refused user is told (a flood is told a few times, then not for a while)."""
        return self._hints is None or await self._hints.allow(user_id)

    async def cache_upload(
        self, source: ImageSource, produced: Produced, file_id: str | None
    ) -> None:
        """Cache Telegram's copy of a cutout uploaded from bytes, so the next request is free."""
        if file_id and produced.file_id is None:
            await self.cutouts.remember(source, file_id, produced.file_name)

    async def remember_for_user(self, user_id: int, file_id: str | None, name: str) -> None:
        """Add a delivered cutout to the user's recent list (the inline empty query)."""
        if file_id:
            await self.store.push_recent(user_id, StoredCutout(file_id, name, time.time()))

    async def _run(
        self, surface: Surface, source: ImageSource, timings: JobTimings, *, may_rerun: bool
    ) -> tuple[str, str]:
        started = False
        status_shown = False

        async def on_start() -> None:
            nonlocal started
            started = True
            if status_shown:
                await surface.working()

        # Start first, so the job holds its place in the queue while the status goes out.
        try:
            ticket = await self.start(
                source,
                surface.user_id,
                surface.upload,
                group_chat_id=surface.group_chat_id,
                timings=timings,
                on_start=on_start,
            )
        except RateLimited as limited:
            if surface.explain_refusals_always or await self.may_explain_refusal(surface.user_id):
                await surface.refused(limited.refusal)
            return Outcome.RATE_LIMITED, "-"
        except JobAborted:
            await surface.explain(Outcome.ABORTED, messages.aborted())
            return Outcome.ABORTED, "-"
        except StorageUnavailable as err:
            logger.error("Storage unavailable: %s", err)
            await surface.explain(Outcome.STORAGE_DOWN, messages.temporarily_unavailable())
            return Outcome.STORAGE_DOWN, "-"

        if ticket.role is Role.CACHED and ticket.stored is not None:
            try:
                outcome = await self._resend(surface, source, ticket.stored, timings, may_rerun)
            except Rerun:
                return await self._run(surface, source, timings, may_rerun=False)
            return outcome, ticket.role

        try:
            await surface.show_status(ticket.position)
        except Forbidden as err:
            ticket.cancel()
            logger.warning("Cannot write to user %s's chat: %s", surface.user_id, err.message)
            return Outcome.UNDELIVERABLE, ticket.role
        except TelegramError as err:
            # The status is best effort: the job goes on and its result is the one reply.
            logger.warning("Could not post the status for user %s: %s", surface.user_id, err)
        else:
            status_shown = True
            if ticket.position and started:
                await surface.working()
        return await self._finish(surface, source, ticket, timings), ticket.role

    async def _finish(
        self, surface: Surface, source: ImageSource, ticket: Ticket, timings: JobTimings
    ) -> str:
        """Wait for the job and deliver its cutout, or explain why there is none."""
        work = asyncio.ensure_future(self._deliver(surface, source, ticket, timings))
        if surface.deadline is not None:
            try:
                # Shielded: running out of time stops the waiting, never the job.
                await asyncio.wait_for(
                    asyncio.shield(work), timeout=max(0.0, surface.deadline - time.monotonic())
                )
            except TimeoutError:
                await surface.still_working()
                surface.deadline = None  # the one reply has gone; the rest is for the log
            except Exception:  # noqa: S110 - the same error is raised again by `await work`
                pass
        try:
            stored = await work
        except Forbidden as err:
            logger.warning("User %s's chat refuses the bot: %s", surface.user_id, err.message)
            await surface.blocked()
            return Outcome.UNDELIVERABLE
        except TelegramError as err:
            logger.error("Could not deliver the cutout to user %s: %s", surface.user_id, err)
            await surface.explain(Outcome.UNDELIVERABLE, messages.undeliverable())
            return Outcome.UNDELIVERABLE
        except Exception as err:
            outcome, text = classify(err)
            log_failure(logger, outcome, err, "a removal job")
            await surface.explain(outcome, text)
            return outcome
        await surface.succeeded(stored)
        await self.remember_for_user(surface.user_id, stored.file_id, stored.file_name)
        return Outcome.OK

    async def _deliver(
        self, surface: Surface, source: ImageSource, ticket: Ticket, timings: JobTimings
    ) -> StoredCutout:
        produced = await ticket.result()
        file_id = produced.file_id
        if ticket.role is not Role.LEADER or file_id is None:
            started = time.monotonic()
            try:
                file_id = await surface.deliver(produced)
            finally:
                timings.upload += time.monotonic() - started
            await self.cache_upload(source, produced, file_id)
        return StoredCutout(file_id or "", produced.file_name, time.time())

    async def _resend(
        self,
        surface: Surface,
        source: ImageSource,
        stored: StoredCutout,
        timings: JobTimings,
        may_rerun: bool,
    ) -> str:
        """A cache hit: Telegram's copy again; a rejected file id is dropped and rerun once."""
        started = time.monotonic()
        try:
            await surface.resend(stored)
        except Forbidden as err:
            logger.warning("User %s's chat refuses the bot: %s", surface.user_id, err.message)
            await surface.blocked()
            return Outcome.UNDELIVERABLE
        except TelegramError as err:
            if isinstance(err, BadRequest) and is_rejected_file_id(err):
                # Another bot's file id (a shared Redis) or one Telegram invalidated.
                logger.info("Re-sending a cached cutout failed: %s", err.message)
                await drop_rejected(self.cutouts, source, stored.file_id)
                if may_rerun:
                    raise Rerun from err
            else:
                logger.error("Could not re-send a cached cutout: %s", err)
            await surface.explain(Outcome.UNDELIVERABLE, messages.undeliverable())
            return Outcome.UNDELIVERABLE
        finally:
            timings.upload = time.monotonic() - started
        await self.remember_for_user(surface.user_id, stored.file_id, stored.file_name)
        return Outcome.OK
