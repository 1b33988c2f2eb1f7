"""Runs a removal for a chat message: limits, status message, pipeline, one final reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from telegram import Bot, InputFile, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, TelegramError

from bot import freepik, messages
from bot.pipeline import Cutout, JobAborted, JobTimings, RemovalPipeline
from bot.ratelimit import RateLimiter
from bot.sources import ImageSource, SourceTooLarge, SourceUnavailable

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How a job ended, as logged and counted."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"
    INPUT_TOO_LARGE = "input_too_large"
    SOURCE_UNAVAILABLE = "source_unavailable"
    REJECTED = "rejected"
    BAD_KEY = "bad_key"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    RESULT_TOO_LARGE = "result_too_large"
    UNDELIVERABLE = "undeliverable"
    ABORTED = "aborted"
    INTERNAL_ERROR = "internal_error"


# Order matters: subclasses before their bases.
_FAILURES: list[tuple[type[BaseException], Outcome, str]] = [
    (SourceTooLarge, Outcome.INPUT_TOO_LARGE, messages.INPUT_TOO_LARGE),
    (SourceUnavailable, Outcome.SOURCE_UNAVAILABLE, messages.SOURCE_UNAVAILABLE),
    (freepik.ImageRejected, Outcome.REJECTED, messages.IMAGE_REJECTED),
    (freepik.InvalidApiKey, Outcome.BAD_KEY, messages.MISCONFIGURED),
    (freepik.QuotaExceeded, Outcome.BUSY, messages.BUSY),
    (freepik.ServiceUnavailable, Outcome.UNAVAILABLE, messages.UNAVAILABLE),
    (freepik.ResultTooLarge, Outcome.RESULT_TOO_LARGE, messages.RESULT_TOO_LARGE),
    # Malformed answers, lapsed links twice in a row, results that are not PNGs.
    (freepik.FreepikError, Outcome.UNAVAILABLE, messages.UNAVAILABLE),
    (freepik.ResultInvalid, Outcome.UNAVAILABLE, messages.UNAVAILABLE),
    (JobAborted, Outcome.ABORTED, messages.ABORTED),
]


def classify(error: BaseException) -> tuple[Outcome, str]:
    """Map a pipeline error to its outcome and the user's explanation."""
    for kind, outcome, text in _FAILURES:
        if isinstance(error, kind):
            return outcome, text
    return Outcome.INTERNAL_ERROR, messages.INTERNAL_ERROR


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A user asked, in a chat, for the background of one image to be removed."""

    source: ImageSource
    user_id: int
    chat_id: int
    message_id: int


class ChatRemoval:
    """Turns a chat request into exactly one reply: the PNG document or an explanation."""

    def __init__(
        self,
        bot: Bot,
        pipeline: RemovalPipeline,
        limiter: RateLimiter,
        *,
        admin_ids: frozenset[int] = frozenset(),
    ) -> None:
        self._bot = bot
        self._pipeline = pipeline
        self._limiter = limiter
        self._admin_ids = admin_ids

    async def process(self, request: ChatRequest) -> Outcome:
        """Run the whole job for `request` and log one line about it."""
        timings = JobTimings()
        outcome = Outcome.INTERNAL_ERROR
        try:
            outcome = await self._process(request, timings)
        finally:
            log = logger.info if outcome is Outcome.OK else logger.warning
            log(
                "job user=%s chat=%s kind=%s outcome=%s %s",
                request.user_id,
                request.chat_id,
                request.source.kind,
                outcome,
                timings.summary(),
            )
        return outcome

    async def _process(self, request: ChatRequest, timings: JobTimings) -> Outcome:
        if request.user_id not in self._admin_ids:
            refusal = await self._limiter.acquire(request.user_id)
            if refusal is not None:
                await self._reply_text(request, messages.rate_limited(refusal.wait_text()))
                return Outcome.RATE_LIMITED

        # Submit first, so the job holds its place in the queue while we post the status.
        status_posted: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()

        async def on_start() -> None:
            status = await status_posted
            if status is not None:
                await self._edit_quietly(status, messages.WORKING)

        async def deliver(cutout: Cutout) -> Message:
            return await self._bot.send_document(
                chat_id=request.chat_id,
                document=InputFile(cutout.data, filename=cutout.file_name),
                caption=messages.DONE_CAPTION,
                reply_parameters=_reply_to(request),
                disable_content_type_detection=True,
            )

        try:
            job = self._pipeline.submit(
                request.source, deliver, timings=timings, on_start=on_start
            )
        except JobAborted:
            await self._reply_text(request, messages.ABORTED)
            return Outcome.ABORTED
        status_text = messages.queued(job.position) if job.position else messages.WORKING
        try:
            status = await self._reply(request, status_text)
        except Forbidden as err:
            _settle(status_posted, None)
            job.task.cancel()
            logger.warning("Cannot write to chat %s: %s", request.chat_id, err.message)
            return Outcome.UNDELIVERABLE
        except BaseException:
            _settle(status_posted, None)
            raise
        _settle(status_posted, status if job.position else None)
        await self._chat_action(request.chat_id)

        try:
            await job.result()
        except Forbidden as err:
            logger.warning("Chat %s blocked the bot: %s", request.chat_id, err.message)
            return Outcome.UNDELIVERABLE
        except TelegramError as err:
            logger.error("Could not deliver the cutout to chat %s: %s", request.chat_id, err)
            await self._finish_with_error(request, status, messages.UNDELIVERABLE)
            return Outcome.UNDELIVERABLE
        except Exception as err:
            outcome, text = classify(err)
            if outcome is Outcome.BAD_KEY:
                logger.error("Freepik refused the API key (%s): check FREEPIK_API_KEY", err)
            elif outcome is Outcome.INTERNAL_ERROR:
                logger.exception("Unexpected error in a removal job")
            else:
                logger.info("Removal failed: %s: %s", type(err).__name__, err)
            await self._finish_with_error(request, status, text)
            return outcome
        await self._delete_quietly(status)
        return Outcome.OK

    async def _reply(self, request: ChatRequest, text: str) -> Message:
        return await self._bot.send_message(
            chat_id=request.chat_id, text=text, reply_parameters=_reply_to(request)
        )

    async def _reply_text(self, request: ChatRequest, text: str) -> None:
        await _quietly(self._reply(request, text), f"reply to chat {request.chat_id}")

    async def _chat_action(self, chat_id: int) -> None:
        await _quietly(
            self._bot.send_chat_action(chat_id=chat_id, action=ChatAction.UPLOAD_DOCUMENT),
            f"chat action in {chat_id}",
        )

    async def _edit_quietly(self, status: Message, text: str) -> bool:
        return await _quietly(
            self._bot.edit_message_text(
                chat_id=status.chat_id, message_id=status.message_id, text=text
            ),
            f"edit status in chat {status.chat_id}",
        )

    async def _delete_quietly(self, status: Message) -> None:
        await _quietly(
            self._bot.delete_message(chat_id=status.chat_id, message_id=status.message_id),
            f"delete status in chat {status.chat_id}",
        )

    async def _finish_with_error(self, request: ChatRequest, status: Message, text: str) -> None:
        # Turn the status message into the explanation; if it is gone, reply afresh.
        if not await self._edit_quietly(status, text):
            await self._reply_text(request, text)


def _settle(future: asyncio.Future[Message | None], value: Message | None) -> None:
    if not future.done():
        future.set_result(value)


def _reply_to(request: ChatRequest) -> ReplyParameters:
    return ReplyParameters(message_id=request.message_id, allow_sending_without_reply=True)


async def _quietly(call: Awaitable[Any], what: str) -> bool:
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
