"""Runs a removal for a chat message: limits, status message, pipeline, one final reply."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from telegram import Bot, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.imaging.convert import TooManyPixels, UnreadableImage
from bot.imaging.pool import CpuBusy
from bot.ops.metrics import Metrics
from bot.removal import freepik
from bot.removal.cutouts import CutoutService, Produced, RateLimited, Role
from bot.removal.pipeline import Cutout, JobAborted, JobTimedOut, JobTimings
from bot.removal.sources import ImageSource, SourceTooLarge, SourceUnavailable
from bot.requests.admission import Admission, HintGate, Refusal
from bot.requests.journal import note_status_message
from bot.requests.spending import BudgetExhausted
from bot.storage.base import StateStore, StorageUnavailable, StoredCutout
from bot.transport.migrations import Migrations
from bot.transport.studio import Studio
from bot.transport.uploads import upload_file

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Outcome(StrEnum):
    """How a job ended, as logged and counted."""

    OK = "ok"
    BAD_INPUT = "bad_input"
    RATE_LIMITED = "rate_limited"
    INPUT_TOO_LARGE = "input_too_large"
    SOURCE_UNAVAILABLE = "source_unavailable"
    REJECTED = "rejected"
    BAD_KEY = "bad_key"
    BUSY = "busy"
    OUT_OF_CAPACITY = "out_of_capacity"
    BUDGET_SPENT = "budget_spent"
    MISCONFIGURED = "misconfigured"
    UNAVAILABLE = "unavailable"
    RESULT_TOO_LARGE = "result_too_large"
    UNDELIVERABLE = "undeliverable"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"
    STORAGE_DOWN = "storage_down"
    INTERNAL_ERROR = "internal_error"


# Order matters: subclasses before their bases.
_FAILURES: list[tuple[type[BaseException], Outcome, Callable[[], str]]] = [
    (SourceTooLarge, Outcome.INPUT_TOO_LARGE, messages.input_too_large),
    (SourceUnavailable, Outcome.SOURCE_UNAVAILABLE, messages.source_unavailable),
    (TooManyPixels, Outcome.INPUT_TOO_LARGE, messages.too_many_pixels),
    (UnreadableImage, Outcome.REJECTED, messages.image_rejected),
    (CpuBusy, Outcome.BUSY, messages.busy),
    (freepik.ImageRejected, Outcome.REJECTED, messages.image_rejected),
    (freepik.InvalidApiKey, Outcome.BAD_KEY, messages.misconfigured),
    (freepik.OutOfCapacity, Outcome.OUT_OF_CAPACITY, messages.out_of_capacity),
    (BudgetExhausted, Outcome.BUDGET_SPENT, messages.budget_used_up),
    (freepik.QuotaExceeded, Outcome.BUSY, messages.busy),
    (freepik.UnexpectedRedirect, Outcome.MISCONFIGURED, messages.misconfigured),
    (freepik.ServiceUnavailable, Outcome.UNAVAILABLE, messages.unavailable),
    (freepik.ResultTooLarge, Outcome.RESULT_TOO_LARGE, messages.result_too_large),
    # Malformed answers, lapsed links twice in a row, results that are not PNGs.
    (freepik.FreepikError, Outcome.UNAVAILABLE, messages.unavailable),
    (freepik.ResultInvalid, Outcome.UNAVAILABLE, messages.unavailable),
    (JobAborted, Outcome.ABORTED, messages.aborted),
    (JobTimedOut, Outcome.TIMED_OUT, messages.timed_out),
    (StorageUnavailable, Outcome.STORAGE_DOWN, messages.temporarily_unavailable),
]


CACHE_RESULT = {Role.CACHED: "hit", Role.LEADER: "miss", Role.FOLLOWER: "joined"}


def classify(error: BaseException) -> tuple[Outcome, str]:
    """Map a pipeline error to its outcome and the user's explanation."""
    for kind, outcome, text in _FAILURES:
        if isinstance(error, kind):
            return outcome, text()
    return Outcome.INTERNAL_ERROR, messages.internal_error()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A user asked, in a chat, for the background of one image to be removed."""

    source: ImageSource
    user_id: int
    chat_id: int
    message_id: int
    group: bool = False
    # The forum topic the request came from: replies, status and chat actions go there too.
    thread_id: int | None = None
    # The requester's language, fixed when the request is made: the job may run elsewhere.
    locale: str = field(default_factory=i18n.current_locale)


class ChatRemoval:
    """Turns a chat request into exactly one reply: the PNG document or an explanation."""

    def __init__(
        self,
        bot: Bot,
        cutouts: CutoutService,
        store: StateStore,
        admission: Admission,
        *,
        metrics: Metrics | None = None,
        studio: Studio | None = None,
        hints: HintGate | None = None,
        migrations: Migrations | None = None,
    ) -> None:
        self._bot = bot
        self._hints = hints
        self._cutouts = cutouts
        self._store = store
        self._admission = admission
        self._metrics = metrics or Metrics()
        self._studio = studio
        # Groups upgraded to supergroups (shared with the handlers and the studio).
        self._migrations = migrations or Migrations()

    async def process(self, request: ChatRequest) -> Outcome:
        """Run the whole job for `request` and log one line about it."""
        timings = JobTimings()
        outcome = Outcome.INTERNAL_ERROR
        role = "-"
        try:
            with i18n.using(request.locale):
                outcome, role = await self._process(request, timings)
        finally:
            self._metrics.job_finished(
                request.source.kind,
                outcome,
                role,
                timings.stages() if role in (Role.LEADER, Role.FOLLOWER) else None,
            )
            log = logger.info if outcome is Outcome.OK else logger.warning
            log(
                "job user=%s chat=%s kind=%s outcome=%s via=%s %s",
                request.user_id,
                request.chat_id,
                request.source.kind,
                outcome,
                role,
                timings.summary(),
            )
        return outcome

    async def _process(
        self, request: ChatRequest, timings: JobTimings, *, rerun: bool = False
    ) -> tuple[Outcome, str]:
        # The job must not wait for the status message: it only says "working" once the job
        # leaves the queue, whichever of the two happens first.
        progress = _Progress()

        async def on_start() -> None:
            progress.started = True
            if progress.queued_status is not None:
                await self._edit_quietly(progress.queued_status, messages.working())

        async def deliver(cutout: Cutout) -> str | None:
            sent = await self._send_document(request, cutout)
            return sent.document.file_id if sent.document else None

        async def admit() -> Refusal | None:
            group = request.chat_id if request.group else None
            return await self._admission.admit(request.user_id, group)

        # Start first, so the job holds its place in the queue while we post the status.
        try:
            ticket = await self._cutouts.start(
                request.source, deliver, admit=admit, timings=timings, on_start=on_start
            )
        except RateLimited as limited:
            self._metrics.refused(limited.refusal.scope)
            text = messages.rate_limited(limited.refusal.wait_text(), limited.refusal.scope)
            # Someone who keeps sending past the limit is told a few times, then not again
            # for a while (the hint limit), so a flood cannot fill the reply queue.
            if self._hints is None or await self._hints.allow(request.user_id):
                await self._reply_text(request, text)
            return Outcome.RATE_LIMITED, "-"
        except JobAborted:
            await self._reply_text(request, messages.aborted())
            return Outcome.ABORTED, "-"
        except StorageUnavailable as err:
            logger.error("Storage unavailable: %s", err)
            await self._reply_text(request, messages.temporarily_unavailable())
            return Outcome.STORAGE_DOWN, "-"

        self._metrics.cache_lookup(CACHE_RESULT[ticket.role])
        if ticket.role is Role.CACHED and ticket.stored is not None:
            resent = await self._resend(request, ticket.stored, timings, may_rerun=not rerun)
            if resent is None:  # Telegram rejected the cached file id: once, afresh
                return await self._process(request, timings, rerun=True)
            return resent, ticket.role

        status_text = messages.queued(ticket.position) if ticket.position else messages.working()
        status: Message | None = None
        try:
            status = await self._reply(request, status_text)
        except Forbidden as err:
            ticket.cancel()
            logger.warning("Cannot write to chat %s: %s", request.chat_id, err.message)
            return Outcome.UNDELIVERABLE, ticket.role
        except TelegramError as err:
            # The status is best effort: the job goes on and its result is the one reply.
            logger.warning("Could not post the status in chat %s: %s", request.chat_id, err)
        if status is not None:
            await note_status_message(status)
        if ticket.position and status is not None:
            if progress.started:
                await self._edit_quietly(status, messages.working())
            else:
                progress.queued_status = status
        await self._chat_action(request)

        try:
            produced = await ticket.result()
            file_id = produced.file_id
            if ticket.role is not Role.LEADER or file_id is None:
                file_id = await self._deliver_shared(request, produced, timings)
        except Forbidden as err:
            logger.warning("Chat %s blocked the bot: %s", request.chat_id, err.message)
            return Outcome.UNDELIVERABLE, ticket.role
        except TelegramError as err:
            logger.error("Could not deliver the cutout to chat %s: %s", request.chat_id, err)
            await self._finish_with_error(request, status, messages.undeliverable())
            return Outcome.UNDELIVERABLE, ticket.role
        except Exception as err:
            outcome, text = classify(err)
            if outcome is Outcome.BAD_KEY:
                logger.error("Freepik refused the API key (%s): check FREEPIK_API_KEY", err)
            elif outcome is Outcome.INTERNAL_ERROR:
                logger.exception("Unexpected error in a removal job")
            else:
                logger.info("Removal failed: %s: %s", type(err).__name__, err)
            await self._finish_with_error(request, status, text)
            return outcome, ticket.role
        await self._delete_quietly(status)
        await self._remember_for_user(request.user_id, file_id, produced.file_name)
        return Outcome.OK, ticket.role

    async def _resend(
        self, request: ChatRequest, stored: StoredCutout, timings: JobTimings, *, may_rerun: bool
    ) -> Outcome | None:
        """A cache hit: send Telegram's copy again, no Freepik, no download, no upload.

        None: Telegram rejected the cached file id; the entry is dropped and the job may rerun.
        """
        started = time.monotonic()
        try:
            await self._send_document(request, stored.file_id)
        except Forbidden as err:
            logger.warning("Chat %s blocked the bot: %s", request.chat_id, err.message)
            return Outcome.UNDELIVERABLE
        except BadRequest as err:
            if not is_rejected_file_id(err):
                logger.error("Could not re-send a cached cutout to %s: %s", request.chat_id, err)
                await self._reply_text(request, messages.undeliverable())
                return Outcome.UNDELIVERABLE
            # Another bot's file id (a shared Redis) or one Telegram invalidated.
            logger.info("Re-sending a cached cutout failed: %s", err.message)
            await drop_rejected(self._cutouts, request.source, stored.file_id)
            if may_rerun:
                return None
            await self._reply_text(request, messages.undeliverable())
            return Outcome.UNDELIVERABLE
        except TelegramError as err:
            logger.error("Could not re-send a cached cutout to %s: %s", request.chat_id, err)
            await self._reply_text(request, messages.undeliverable())
            return Outcome.UNDELIVERABLE
        finally:
            timings.upload = time.monotonic() - started
        await self._remember_for_user(request.user_id, stored.file_id, stored.file_name)
        return Outcome.OK

    async def _deliver_shared(
        self, request: ChatRequest, produced: Produced, timings: JobTimings
    ) -> str | None:
        """Send a cutout another request produced: by file id if it has one, else the bytes."""
        started = time.monotonic()
        try:
            if produced.file_id is not None:
                await self._send_document(request, produced.file_id)
                return produced.file_id
            if produced.cutout is None:
                raise RuntimeError("shared job produced neither bytes nor a file id")
            cutout = produced.cutout
            sent = await self._send_document(request, cutout)
            file_id = sent.document.file_id if sent.document else None
            if file_id:
                await self._cutouts.remember(request.source, file_id, cutout.file_name)
            return file_id
        finally:
            timings.upload += time.monotonic() - started

    async def _send_document(self, request: ChatRequest, document: Cutout | str) -> Message:
        """Send the PNG (uploaded from a cutout, or Telegram's copy by file id)."""
        caption = messages.done_caption()
        # Every cutout carries the studio buttons (sticker, pack, background, crop).
        token, markup = self._studio.keyboard() if self._studio else (None, None)

        def send(chat_id: int, thread_id: int | None) -> Awaitable[Message]:
            # A fresh upload per attempt: a failed one has consumed its stream.
            upload = document if isinstance(document, str) else upload_file(document)
            return self._bot.send_document(
                chat_id=chat_id,
                document=upload,
                caption=caption,
                reply_parameters=_reply_to(request, chat_id),
                message_thread_id=thread_id,
                disable_content_type_detection=True,
                reply_markup=markup,
            )

        sent = await self._to_chat(request, send)
        if self._studio is not None and token is not None and sent.document is not None:
            await self._studio.remember(token, request.user_id, sent.chat_id, [sent.document])
        return sent

    async def _to_chat(
        self, request: ChatRequest, send: Callable[[int, int | None], Awaitable[T]]
    ) -> T:
        """Send to the request's chat (and topic); if the group became a supergroup, there."""
        return await self._migrations.send(request.chat_id, request.thread_id, send)

    async def _remember_for_user(self, user_id: int, file_id: str | None, name: str) -> None:
        if file_id:
            await self._store.push_recent(user_id, StoredCutout(file_id, name, time.time()))

    async def _reply(self, request: ChatRequest, text: str) -> Message:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[Message]:
            return self._bot.send_message(
                chat_id=chat_id,
                text=text,
                reply_parameters=_reply_to(request, chat_id),
                message_thread_id=thread_id,
            )

        return await self._to_chat(request, send)

    async def _reply_text(self, request: ChatRequest, text: str) -> None:
        await quietly(self._reply(request, text), f"reply to chat {request.chat_id}")

    async def _chat_action(self, request: ChatRequest) -> None:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[bool]:
            return self._bot.send_chat_action(
                chat_id=chat_id, action=ChatAction.UPLOAD_DOCUMENT, message_thread_id=thread_id
            )

        await quietly(self._to_chat(request, send), f"chat action in {request.chat_id}")

    async def _edit_quietly(self, status: Message, text: str) -> bool:
        return await quietly(
            self._bot.edit_message_text(
                chat_id=status.chat_id, message_id=status.message_id, text=text
            ),
            f"edit status in chat {status.chat_id}",
        )

    async def _delete_quietly(self, status: Message | None) -> None:
        if status is None:
            return
        await quietly(
            self._bot.delete_message(chat_id=status.chat_id, message_id=status.message_id),
            f"delete status in chat {status.chat_id}",
        )

    async def _finish_with_error(
        self, request: ChatRequest, status: Message | None, text: str
    ) -> None:
        # Turn the status message into the explanation; if it is gone, reply afresh.
        if status is None or not await self._edit_quietly(status, text):
            await self._reply_text(request, text)


@dataclass(slots=True)
class _Progress:
    """Whether a queued job has started, and the "queued" status to turn into "working"."""

    started: bool = False
    queued_status: Message | None = None


_REJECTED_FILE_ID = re.compile(r"file identifier|file_id|file id|file reference|remote file", re.I)


def is_rejected_file_id(err: BadRequest) -> bool:
    """Whether Telegram refused a file id we sent (wrong bot, expired, invalidated)."""
    return bool(_REJECTED_FILE_ID.search(err.message))


async def drop_rejected(cutouts: CutoutService, source: ImageSource, file_id: str) -> None:
    """Drop a cached cutout whose file id Telegram rejected (best effort: storage may be down)."""
    logger.warning("Telegram rejected the cached file id of %s; dropping it", source.kind)
    try:
        await cutouts.forget(source, file_id)
    except StorageUnavailable as storage_err:
        logger.error("Could not drop the rejected cache entry: %s", storage_err)


async def rejected_file_ids(bot: Bot, file_ids: Iterable[str]) -> set[str]:
    """Which of `file_ids` Telegram no longer takes from this bot, asked one by one with getFile.

    sendMediaGroup and answerInlineQuery refuse a whole request for one bad file id without
    naming it; getFile names no one else's file and costs nothing.
    """

    async def rejected(file_id: str) -> bool:
        try:
            await bot.get_file(file_id)
        except BadRequest as err:
            # "file is too big" (over getFile's 20 MB) is still a file Telegram holds for us.
            return is_rejected_file_id(err)
        except TelegramError as err:
            logger.warning("Could not check a cached file id: %s", err)
            return False
        return False

    unique = list(dict.fromkeys(file_ids))
    answers = await asyncio.gather(*(rejected(f) for f in unique))
    return {file_id for file_id, bad in zip(unique, answers, strict=True) if bad}


def _reply_to(request: ChatRequest, chat_id: int) -> ReplyParameters | None:
    if chat_id != request.chat_id:
        # The request stayed behind in the basic group: nothing in the supergroup to reply to.
        return None
    return ReplyParameters(message_id=request.message_id, allow_sending_without_reply=True)


async def quietly(call: Awaitable[Any], what: str) -> bool:
    """Await a best-effort Telegram call; log and swallow Telegram errors."""
    try:
        await call
    except BadRequest as err:
        logger.debug("Could not %s: %s", what, err.message)
        return False
    except TelegramError as err:
        logger.warning("Could not %s: %s", what, err)
        return False
    return True
