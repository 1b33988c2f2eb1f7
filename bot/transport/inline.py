"""Inline mode: `@bot <image link>` in any chat answers with the cutout as a cached document."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from telegram import (
    Bot,
    InlineQuery,
    InlineQueryResult,
    InlineQueryResultArticle,
    InlineQueryResultCachedDocument,
    InlineQueryResultCachedSticker,
    InlineQueryResultsButton,
    InputTextMessageContent,
)
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot.i18n import messages
from bot.i18n.locales import gettext as _
from bot.ops.metrics import Metrics
from bot.removal.cutouts import CutoutService, RateLimited, Role, Ticket
from bot.removal.pipeline import Cutout, JobAborted, JobTimings
from bot.removal.sources import ImageSource, NotHttpLink, normalise_link
from bot.requests.admission import Admission, format_wait
from bot.requests.outcomes import CACHE_RESULT, Outcome, classify
from bot.requests.rejected import drop_rejected, is_rejected_file_id, rejected_file_ids
from bot.storage.base import StateStore, StorageUnavailable, StoredCutout
from bot.transport.studio import Studio
from bot.transport.uploads import upload_file

logger = logging.getLogger(__name__)

# --- what the user reads ----------------------------------------------------------------------


def cutout_title() -> str:
    """Title of a finished cutout among the inline results."""
    return _("Background removed")


def cutout_caption() -> str:
    """Caption of the cutout sent into the chat."""
    return messages.done_caption()


def stored_caption() -> str:
    """Caption of the copy uploaded to the storage chat (the user's own chat when none is set)."""
    return _("Background removed (made for inline mode).")


def working_title() -> str:
    """Title of the answer when the job outlives the inline deadline."""
    return _("✂️ Still removing the background…")


def working_text() -> str:
    """Description of the "still working" answer."""
    return _(
        "This image takes a little longer. Keep typing, or send the same query again in a few "
        "seconds, and the cutout will be here."
    )


def no_link_title() -> str:
    """Title when the query holds no link."""
    return _("Type a link to an image")


def no_link_text() -> str:
    """Description when the query holds no link."""
    return _(
        "Type a link to a JPEG or PNG image after my username to get it back without its "
        "background. With nothing after my username you get your recent cutouts."
    )


def not_http_title() -> str:
    """Title when the link is not http(s)."""
    return _("Only http(s) links work")


def not_http_text() -> str:
    """Description when the link is not http(s)."""
    return _("Only http:// and https:// links work. Type a web link to the image.")


def limit_title() -> str:
    """Title when the user is over the rate limit."""
    return _("Limit reached")


def failed_title() -> str:
    """Title of every failure answer."""
    return _("Couldn't remove the background")


def store_failed_text() -> str:
    """The cutout could not be uploaded for inline use."""
    return _("I made the cutout but couldn't prepare it for inline mode. Please try again.")


def start_button() -> str:
    """Button text when the user must start the bot first."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("Start the bot to use inline mode")


def no_recent_button() -> str:
    """Button text for an empty query with no recent cutouts."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("No cutouts yet: open the bot")


def limit_text(wait_text: str) -> str:
    """Explanation when the user is over the rate limit."""
    return _(
        "You've reached your limit for now. You can cut out the next image in {wait}."
    ).format(wait=wait_text)


def made_ago(seconds: float) -> str:
    """Description of a recent cutout, e.g. `Made 3 minutes ago`."""
    return _("Made {time} ago").format(time=format_wait(seconds))


# --- tuning -----------------------------------------------------------------------------------

# Seconds kept back from the answer timeout for the answerInlineQuery call itself.
ANSWER_MARGIN = 0.25
# Clients send a query per pause in typing; a new job waits this long so a query that is
# immediately superseded (a link still being typed) costs neither a Freepik call nor a slot.
SETTLE_DELAY = 0.3
# Telegram may cache a finished cutout briefly; everything else must be asked again.
CUTOUT_CACHE_TIME = 30


class InlineOutcome(StrEnum):
    """Ends of an inline request that are not a job's outcome."""

    RECENT = "recent"
    NO_RECENT = "no_recent"
    NO_LINK = "no_link"
    NOT_HTTP = "not_http"
    NEEDS_START = "needs_start"
    SUPERSEDED = "superseded"


# Outcomes logged at INFO; the rest (failed jobs, limits) at WARNING, as in the chat flow.
_ROUTINE: frozenset[str] = frozenset({Outcome.OK, *InlineOutcome})


class Shown(StrEnum):
    """What the one answer showed the user (for the log line)."""

    DOCUMENT = "document"
    RECENT = "recent"
    WORKING = "working"
    ARTICLE = "article"
    BUTTON = "button"
    EMPTY = "empty"


@dataclass(slots=True)
class _Reply:
    """One answerInlineQuery, and how the request ended as far as it is known."""

    shown: Shown
    outcome: str
    results: list[InlineQueryResult] = field(default_factory=list)
    button: InlineQueryResultsButton | None = None
    cache_time: int = 0
    via: str = "-"
    # The job still running when the answer had to go ("still working").
    pending: asyncio.Future[StoredCutout] | None = None
    # Which limit refused the job (for the refusal metric): the user's, or the daily budget.
    refused_by: str = "user"
    # The cache entry answered with, so it can be dropped if Telegram rejects its file id.
    cached: tuple[ImageSource, str] | None = None


class _Sent(StrEnum):
    """How the answerInlineQuery went."""

    OK = "ok"
    FAILED = "failed"
    REJECTED_FILE = "rejected_file"


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
        settle_delay: float = SETTLE_DELAY,
        metrics: Metrics | None = None,
        studio: Studio | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._studio = studio
        self._bot = bot
        self._cutouts = cutouts
        self._store = store
        self._admission = admission
        self._storage_chat_id = storage_chat_id
        self._answer_timeout = answer_timeout
        self._settle_delay = settle_delay
        self._sequence = itertools.count(1)
        # Per user, the number of their newest query still being handled.
        self._latest: dict[int, int] = {}

    async def answer(self, query: InlineQuery, *, received: float | None = None) -> None:
        """Answer one inline query (at most one successful answerInlineQuery).

        `received` (monotonic) is when the update reached the bot: the deadline counts from it.
        """
        received = time.monotonic() if received is None else received
        deadline = received + max(0.0, self._answer_timeout - ANSWER_MARGIN)
        send_by = received + self._answer_timeout
        user_id = query.from_user.id
        number = next(self._sequence)
        self._latest[user_id] = number
        timings = JobTimings()
        try:
            reply = await self._reply_for(query, number, deadline, timings)
            sent = await self._send(query, reply, send_by)
            if sent is _Sent.REJECTED_FILE and reply.cached is not None:
                # A cached file id Telegram no longer takes: drop it and decide afresh, once.
                await self._forget(*reply.cached)
                reply = await self._reply_for(query, number, deadline, timings)
                sent = await self._send(query, reply, send_by)
            elif sent is _Sent.REJECTED_FILE and reply.outcome == InlineOutcome.RECENT:
                # The recent list holds a file id Telegram no longer takes: without it, once.
                reply = await self._recent_without_rejected(user_id, reply, deadline)
                sent = await self._send(query, reply, send_by)
            answered = sent is _Sent.OK
            outcome = reply.outcome
            if reply.pending is not None:
                # Answered "still working"; the job goes on so the next query finds it cached.
                outcome = await self._settle_pending(reply.pending, user_id)
        finally:
            if self._latest.get(user_id) == number:
                del self._latest[user_id]
        if reply.via in (Role.CACHED, Role.LEADER, Role.FOLLOWER):
            self._metrics.cache_lookup(CACHE_RESULT[Role(reply.via)])
        if outcome == Outcome.RATE_LIMITED:
            self._metrics.refused(reply.refused_by)
        working = reply.via in (Role.LEADER, Role.FOLLOWER)
        self._metrics.job_finished(
            "inline", outcome, reply.via, timings.stages() if working else None
        )
        (logger.info if outcome in _ROUTINE else logger.warning)(
            "inline user=%s outcome=%s via=%s answer=%s %s",
            user_id,
            outcome,
            reply.via,
            reply.shown if answered else "failed",
            timings.summary(),
        )

    async def _reply_for(
        self, query: InlineQuery, number: int, deadline: float, timings: JobTimings
    ) -> _Reply:
        """The one answer for a query; failures become an explanation."""
        user_id = query.from_user.id
        try:
            reply = await self._decide(query.query, user_id, number, deadline, timings)
            await self._offer_sticker(reply, user_id, deadline)
        except StorageUnavailable as err:
            logger.error("Storage unavailable: %s", err)
            reply = _article(
                Outcome.STORAGE_DOWN, failed_title(), messages.temporarily_unavailable()
            )
        except Exception:
            logger.exception("Unexpected error in an inline query")
            reply = _article(Outcome.INTERNAL_ERROR, failed_title(), messages.internal_error())
        return reply

    async def _forget(self, source: ImageSource, file_id: str) -> None:
        """Drop a cached cutout Telegram rejected (a file id it invalidated, or another bot's)."""
        await drop_rejected(self._cutouts, source, file_id)

    async def _decide(
        self, text: str, user_id: int, number: int, deadline: float, timings: JobTimings
    ) -> _Reply:
        """Work out the one answer to a query; start (or join) a job for a link."""
        if not text.strip():
            return await self._recent(user_id)
        try:
            url = find_link(text)
        except NotHttpLink:
            return _article(InlineOutcome.NOT_HTTP, not_http_title(), not_http_text())
        if url is None:
            return _article(InlineOutcome.NO_LINK, no_link_title(), no_link_text())
        source = ImageSource.link(url)

        stored = await self._cutouts.cached(source)
        if stored is not None:
            reply = await self._document(user_id, stored, Role.CACHED)
            reply.cached = (source, stored.file_id)
            return reply

        if self._settle_delay > 0:
            await asyncio.sleep(self._settle_delay)
            if self._latest.get(user_id) != number:
                # The client only shows the newest query's answer: this one needs no work.
                return _Reply(Shown.EMPTY, InlineOutcome.SUPERSEDED)

        target = self._storage_chat_id if self._storage_chat_id is not None else user_id
        if self._storage_chat_id is None and not await self._can_write(user_id, deadline):
            return _needs_start()

        async def deliver(cutout: Cutout) -> str | None:
            return await self._upload(target, cutout)

        try:
            ticket = await self._cutouts.start(
                source,
                deliver,
                admit=lambda: self._admission.admit(user_id),
                timings=timings,
            )
        except RateLimited as limited:
            if limited.refusal.scope == "budget":
                reply = _article(Outcome.RATE_LIMITED, limit_title(), messages.budget_used_up())
                reply.refused_by = limited.refusal.scope
                return reply
            text = limit_text(limited.refusal.wait_text())
            return _article(Outcome.RATE_LIMITED, limit_title(), text)
        except JobAborted:
            return _article(Outcome.ABORTED, failed_title(), messages.aborted())
        if ticket.role is Role.CACHED and ticket.stored is not None:
            reply = await self._document(user_id, ticket.stored, ticket.role)
            reply.cached = (source, ticket.stored.file_id)
            return reply

        work = asyncio.ensure_future(self._finish(ticket, source, target, user_id, timings))
        try:
            # Shielded: running out of time must not cancel the job, only stop waiting for it.
            stored = await asyncio.wait_for(
                asyncio.shield(work), timeout=max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            reply = _article(Outcome.OK, working_title(), working_text(), shown=Shown.WORKING)
            reply.via, reply.pending = ticket.role, work
            return reply
        except Exception as err:
            reply = self._failure(err)
            reply.via = ticket.role
            return reply
        reply = _document_reply([stored], cutout_title())
        reply.via = ticket.role
        return reply

    async def _offer_sticker(self, reply: _Reply, user_id: int, deadline: float) -> None:
        """Beside a cutout, its sticker, when it can be ready (or cached) in time."""
        if self._studio is None or reply.shown is not Shown.DOCUMENT or not reply.results:
            return
        document = reply.results[0]
        if not isinstance(document, InlineQueryResultCachedDocument):
            return
        target = self._storage_chat_id if self._storage_chat_id is not None else user_id
        work = asyncio.ensure_future(self._studio.sticker_for(document.document_file_id, target))
        self._studio.keep(work)  # too late for this answer, it is cached for the next one
        try:
            sticker_id = await asyncio.wait_for(
                asyncio.shield(work), timeout=max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            return
        if sticker_id:
            reply.results.append(
                InlineQueryResultCachedSticker(
                    id=_result_id(sticker_id), sticker_file_id=sticker_id
                )
            )

    async def _finish(
        self,
        ticket: Ticket,
        source: ImageSource,
        target: int,
        user_id: int,
        timings: JobTimings,
    ) -> StoredCutout:
        """Wait for the job and make sure its PNG has a file id; remember it for the user."""
        produced = await ticket.result()
        file_id = produced.file_id
        if file_id is None:
            # The job's own delivery failed (its chat blocked the bot): upload the bytes here.
            if produced.cutout is None:
                raise RuntimeError("shared job produced neither bytes nor a file id")
            started = time.monotonic()
            try:
                file_id = await self._upload(target, produced.cutout)
            finally:
                timings.upload += time.monotonic() - started
            if file_id is None:
                raise RuntimeError("the uploaded cutout came back without a document")
            await self._cutouts.remember(source, file_id, produced.file_name)
        stored = StoredCutout(file_id, produced.file_name, time.time())
        await self._store.push_recent(user_id, stored)
        return stored

    async def _settle_pending(self, work: asyncio.Future[StoredCutout], user_id: int) -> str:
        """Wait for a job the user was told is still running; return its outcome for the log."""
        try:
            await work
        except Forbidden as err:
            logger.warning("Cannot store an inline cutout for user %s: %s", user_id, err.message)
            return Outcome.UNDELIVERABLE
        except TelegramError as err:
            logger.error("Could not store an inline cutout: %s", err)
            return Outcome.UNDELIVERABLE
        except Exception as err:
            outcome, _ = classify(err)
            self._log_failure(outcome, err)
            return outcome
        return Outcome.OK

    def _failure(self, err: Exception) -> _Reply:
        """The answer for a job that failed before the deadline."""
        if isinstance(err, Forbidden) and self._storage_chat_id is None:
            logger.warning("Cannot write to the inline user's chat: %s", err.message)
            reply = _needs_start()
            reply.outcome = Outcome.UNDELIVERABLE
            return reply
        if isinstance(err, TelegramError):
            where = "INLINE_STORAGE_CHAT_ID" if self._storage_chat_id is not None else "user"
            logger.error("Could not upload an inline cutout to the %s chat: %s", where, err)
            return _article(Outcome.UNDELIVERABLE, failed_title(), store_failed_text())
        outcome, text = classify(err)
        self._log_failure(outcome, err)
        return _article(outcome, failed_title(), text)

    @staticmethod
    def _log_failure(outcome: Outcome, err: BaseException) -> None:
        if outcome is Outcome.BAD_KEY:
            logger.error("Freepik refused the API key (%s): check FREEPIK_API_KEY", err)
        elif outcome is Outcome.INTERNAL_ERROR:
            logger.error("Unexpected error in an inline removal job", exc_info=err)
        else:
            logger.info("Inline removal failed: %s: %s", type(err).__name__, err)

    async def _recent(self, user_id: int) -> _Reply:
        """An empty query: the user's recent cutouts, newest first."""
        recent = await self._store.recent(user_id)
        if not recent:
            return _no_recent()
        now = time.time()
        results: list[InlineQueryResult] = []
        seen: set[str] = set()
        for item in recent:
            result_id = _result_id(item.file_id)
            if result_id in seen:
                continue
            seen.add(result_id)
            results.append(
                InlineQueryResultCachedDocument(
                    id=result_id,
                    title=item.file_name,
                    document_file_id=item.file_id,
                    description=made_ago(now - item.created),
                    caption=cutout_caption(),
                )
            )
        return _Reply(Shown.RECENT, InlineOutcome.RECENT, results)

    async def _recent_without_rejected(
        self, user_id: int, reply: _Reply, deadline: float
    ) -> _Reply:
        """The recent list again, without (and forgetting) the file ids Telegram rejected."""
        file_ids = [
            r.document_file_id
            for r in reply.results
            if isinstance(r, InlineQueryResultCachedDocument)
        ]
        try:
            bad = await asyncio.wait_for(
                rejected_file_ids(self._bot, file_ids), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            bad = set()
        for file_id in bad:
            try:
                await self._store.drop_recent(user_id, file_id)
            except StorageUnavailable as err:
                logger.error("Could not drop a rejected recent cutout: %s", err)
        logger.warning("Telegram rejected %d file id(s) of a recent list", len(bad))
        kept = [
            r
            for r in reply.results
            if isinstance(r, InlineQueryResultCachedDocument) and r.document_file_id not in bad
        ]
        if not bad or not kept:
            # Nothing left Telegram is sure to take: the answer offers the bot instead.
            return _no_recent()
        return _Reply(Shown.RECENT, InlineOutcome.RECENT, list(kept))

    async def _document(self, user_id: int, stored: StoredCutout, role: Role) -> _Reply:
        """A cutout Telegram already holds: answer with it and add it to the user's recent."""
        await self._store.push_recent(
            user_id, StoredCutout(stored.file_id, stored.file_name, time.time())
        )
        reply = _document_reply([stored], cutout_title())
        reply.via = role
        return reply

    async def _can_write(self, user_id: int, deadline: float) -> bool:
        """Whether the bot may send to the user's private chat (checked before paying)."""
        try:
            await asyncio.wait_for(
                self._bot.send_chat_action(chat_id=user_id, action=ChatAction.UPLOAD_DOCUMENT),
                timeout=max(0.5, deadline - time.monotonic()),
            )
        except Forbidden as err:
            logger.info("Inline user %s has not started the bot: %s", user_id, err.message)
            return False
        except BadRequest as err:
            if "chat not found" in err.message.lower():
                logger.info("Inline user %s has no chat with the bot", user_id)
                return False
            logger.debug("Chat action for inline user %s failed: %s", user_id, err.message)
        except (TelegramError, TimeoutError) as err:
            # Unknown: go on; the upload will tell for sure.
            logger.debug("Chat action for inline user %s failed: %s", user_id, err)
        return True

    async def _upload(self, chat_id: int, cutout: Cutout) -> str | None:
        """Upload the PNG to the storage chat; return Telegram's file id of it."""
        sent = await self._bot.send_document(
            chat_id=chat_id,
            document=upload_file(cutout),
            caption=stored_caption(),
            disable_content_type_detection=True,
            # The user is busy in another chat; the copy here needs no ping.
            disable_notification=True,
        )
        return sent.document.file_id if sent.document else None

    async def _send(self, query: InlineQuery, reply: _Reply, send_by: float) -> _Sent:
        """The one answerInlineQuery, never after `send_by`; failures are logged, not raised.

        A flood wait is waited out only if it ends before `send_by`: an answer after the
        deadline is useless to the user (Telegram refuses it as "query is too old").
        """
        while True:
            try:
                await self._bot.answer_inline_query(
                    query.id,
                    reply.results,
                    cache_time=reply.cache_time,
                    is_personal=True,
                    button=reply.button,
                )
            except RetryAfter as err:
                wait = _seconds(err)
                if time.monotonic() + wait >= send_by:
                    logger.warning(
                        "Not answering inline query of user %s: a flood wait of %.0fs "
                        "outlasts its deadline",
                        query.from_user.id,
                        wait,
                    )
                    return _Sent.FAILED
                await asyncio.sleep(wait)
                continue
            except TelegramError as err:
                logger.warning(
                    "Could not answer inline query of user %s: %s", query.from_user.id, err
                )
                if isinstance(err, BadRequest) and is_rejected_file_id(err):
                    return _Sent.REJECTED_FILE
                return _Sent.FAILED
            return _Sent.OK


def _seconds(err: RetryAfter) -> float:
    """A flood wait in seconds (PTB gives an int or a timedelta, warning about the int)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = err.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def find_link(text: str) -> str | None:
    """The first http(s) link among the words of `text`; `NotHttpLink` if only other schemes."""
    other_scheme: NotHttpLink | None = None
    for token in text.split():
        try:
            url = normalise_link(token)
        except ValueError as err:  # NotHttpLink, or a URL urlsplit cannot parse
            named_scheme = "://" in token or ":" in token.split("/", 1)[0]
            if isinstance(err, NotHttpLink) and named_scheme:
                other_scheme = other_scheme or err
            continue
        host = urlsplit(url).hostname or ""
        # `cat` alone would become http://cat; a real host has a dot (or is an IPv6 literal).
        if "." in host.strip(".") or ":" in host:
            return url
    if other_scheme is not None:
        raise other_scheme
    return None


def _no_recent() -> _Reply:
    button = InlineQueryResultsButton(
        text=no_recent_button(), start_parameter=messages.INLINE_START_PARAMETER
    )
    return _Reply(Shown.BUTTON, InlineOutcome.NO_RECENT, button=button)


def _result_id(file_id: str) -> str:
    # Result ids are at most 64 bytes; file ids are longer, and unique per file.
    return hashlib.sha256(file_id.encode()).hexdigest()[:32]


def _document_reply(items: Sequence[StoredCutout], title: str) -> _Reply:
    results: list[InlineQueryResult] = [
        InlineQueryResultCachedDocument(
            id=_result_id(item.file_id),
            title=title,
            document_file_id=item.file_id,
            description=item.file_name,
            caption=cutout_caption(),
        )
        for item in items
    ]
    return _Reply(Shown.DOCUMENT, Outcome.OK, results, cache_time=CUTOUT_CACHE_TIME)


def _article(outcome: str, title: str, text: str, *, shown: Shown = Shown.ARTICLE) -> _Reply:
    result = InlineQueryResultArticle(
        id=f"{shown}-{outcome}",
        title=title,
        description=text,
        input_message_content=InputTextMessageContent(text),
    )
    return _Reply(shown, outcome, [result])


def _needs_start() -> _Reply:
    button = InlineQueryResultsButton(
        text=start_button(), start_parameter=messages.INLINE_START_PARAMETER
    )
    return _Reply(Shown.BUTTON, InlineOutcome.NEEDS_START, button=button)
