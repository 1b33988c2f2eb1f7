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

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.removal.cutouts import Produced
from bot.removal.pipeline import Cutout, JobTimings
from bot.removal.sources import ImageSource, NotHttpLink, normalise_link
from bot.requests.admission import Refusal
from bot.requests.credits import CREDITS_SCOPE
from bot.requests.lifecycle import Lifecycle, Surface
from bot.requests.outcomes import ROUTINE, Outcome
from bot.requests.rejected import is_rejected_file_id, rejected_file_ids
from bot.storage.base import StorageUnavailable, StoredCutout
from bot.transport.studio import Studio
from bot.transport.uploads import upload_file

logger = logging.getLogger(__name__)

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
_ROUTINE: frozenset[str] = frozenset({*ROUTINE, *InlineOutcome})


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
    """One answerInlineQuery: what it shows."""

    shown: Shown
    outcome: str
    results: list[InlineQueryResult] = field(default_factory=list)
    button: InlineQueryResultsButton | None = None
    cache_time: int = 0


class InlineRemoval:
    """Answers inline queries within Telegram's deadline, from the cache when it can."""

    def __init__(
        self,
        bot: Bot,
        lifecycle: Lifecycle,
        *,
        storage_chat_id: int | None,
        answer_timeout: float,
        settle_delay: float = SETTLE_DELAY,
        studio: Studio | None = None,
    ) -> None:
        self._bot = bot
        self._lifecycle = lifecycle
        self._studio = studio
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
        user_id = query.from_user.id
        target = self._storage_chat_id if self._storage_chat_id is not None else user_id
        surface = InlineSurface(
            self._bot,
            query,
            target=target,
            deadline=received + max(0.0, self._answer_timeout - ANSWER_MARGIN),
            send_by=received + self._answer_timeout,
            own_chat=self._storage_chat_id is None,
            studio=self._studio,
        )
        number = next(self._sequence)
        self._latest[user_id] = number
        try:
            try:
                source = await self._early(surface, query.query, number)
            except Exception as err:
                outcome = await _explain_error(surface, err)
                self._lifecycle.report(surface, outcome, "-", JobTimings())
                return
            if source is not None:
                try:
                    await self._lifecycle.run(surface, source)
                except Exception as err:
                    # Counted and logged by the lifecycle; the user still gets one answer.
                    await _explain_error(surface, err)
        finally:
            if self._latest.get(user_id) == number:
                del self._latest[user_id]

    async def _early(self, surface: InlineSurface, text: str, number: int) -> ImageSource | None:
        """The link to work on, or None when the query was answered without a job."""
        if not text.strip():
            await self._finish_early(surface, await self._recent(surface))
            return None
        try:
            url = find_link(text)
        except NotHttpLink:
            reply = _article(
                InlineOutcome.NOT_HTTP,
                messages.inline_not_http_title(),
                messages.inline_not_http_text(),
            )
            await self._finish_early(surface, reply)
            return None
        if url is None:
            reply = _article(
                InlineOutcome.NO_LINK,
                messages.inline_no_link_title(),
                messages.inline_no_link_text(),
            )
            await self._finish_early(surface, reply)
            return None
        source = ImageSource.link(url)
        if await self._lifecycle.cutouts.cached(source) is not None:
            return source  # a cache hit needs no settling and no writable chat
        if self._settle_delay > 0:
            await asyncio.sleep(self._settle_delay)
            if self._latest.get(surface.user_id) != number:
                # The client only shows the newest query's answer: this one needs no work.
                await self._finish_early(surface, _Reply(Shown.EMPTY, InlineOutcome.SUPERSEDED))
                return None
        if self._storage_chat_id is None and not await can_write(
            self._bot, surface.user_id, surface.answer_by
        ):
            await self._finish_early(surface, _needs_start())
            return None
        return source

    async def _finish_early(self, surface: InlineSurface, reply: _Reply) -> None:
        sent = await surface.send(reply)
        if sent is _Sent.REJECTED_FILE and reply.outcome == InlineOutcome.RECENT:
            # The recent list holds a file id Telegram no longer takes: without it, once.
            reply = await self._recent_without_rejected(surface, reply)
            await surface.send(reply)
        self._lifecycle.report(surface, reply.outcome, "-", JobTimings())

    async def _recent(self, surface: InlineSurface) -> _Reply:
        """An empty query: the user's recent cutouts, newest first."""
        recent = await self._lifecycle.store.recent(surface.user_id)
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
                    description=messages.inline_made_ago(now - item.created),
                    caption=messages.done_caption(),
                )
            )
        return _Reply(Shown.RECENT, InlineOutcome.RECENT, results)

    async def _recent_without_rejected(self, surface: InlineSurface, reply: _Reply) -> _Reply:
        """The recent list again, without (and forgetting) the file ids Telegram rejected."""
        file_ids = [
            r.document_file_id
            for r in reply.results
            if isinstance(r, InlineQueryResultCachedDocument)
        ]
        try:
            bad = await asyncio.wait_for(
                rejected_file_ids(self._bot, file_ids),
                max(0.0, surface.answer_by - time.monotonic()),
            )
        except TimeoutError:
            bad = set()
        for file_id in bad:
            try:
                await self._lifecycle.store.drop_recent(surface.user_id, file_id)
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


class _Sent(StrEnum):
    """How the answerInlineQuery went."""

    OK = "ok"
    FAILED = "failed"
    REJECTED_FILE = "rejected_file"


class InlineSurface(Surface):
    """One answerInlineQuery per query, before Telegram's deadline."""

    kind = "inline"
    explain_refusals_always = True

    def __init__(
        self,
        bot: Bot,
        query: InlineQuery,
        *,
        target: int,
        deadline: float,
        send_by: float,
        own_chat: bool,
        studio: Studio | None,
    ) -> None:
        self._bot = bot
        self._query = query
        self._target = target
        self._own_chat = own_chat
        self._studio = studio
        self._send_by = send_by
        self.answer_by = deadline
        self.deadline = deadline
        self.user_id = query.from_user.id
        self.locale = i18n.current_locale()
        self._shown: str | None = None

    async def refused(self, refusal: Refusal) -> None:
        """A limit, the day's budget or want of credits refused the job."""
        if refusal.scope == CREDITS_SCOPE:
            # Payments happen in the private chat: the button opens it on the packs.
            text = messages.inline_credits_text(refusal.wait_text(), self._bot.username)
            reply = _article(Outcome.RATE_LIMITED, messages.inline_credits_title(), text)
            reply.button = InlineQueryResultsButton(
                text=messages.inline_buy_button(), start_parameter=messages.BUY_START_PARAMETER
            )
            await self.send(reply)
            return
        if refusal.scope == "budget":
            text = messages.budget_used_up()
        else:
            text = messages.inline_limit_text(refusal.wait_text())
        await self.send(_article(Outcome.RATE_LIMITED, messages.inline_limit_title(), text))

    async def resend(self, stored: StoredCutout) -> None:
        """Answer with the cached cutout; a rejected file id raises for the lifecycle."""
        await self._answer_document(stored)

    async def upload(self, cutout: Cutout) -> str | None:
        """Upload the PNG to the storage chat; return Telegram's file id of it."""
        sent = await self._bot.send_document(
            chat_id=self._target,
            document=upload_file(cutout),
            caption=messages.inline_stored_caption(),
            disable_content_type_detection=True,
            # The user is busy in another chat; the copy here needs no ping.
            disable_notification=True,
        )
        return sent.document.file_id if sent.document else None

    async def deliver(self, produced: Produced) -> str | None:
        """Another job's cutout: its file id, or the bytes uploaded here for one."""
        if produced.file_id is not None:
            return produced.file_id
        if produced.cutout is None:
            raise RuntimeError("shared job produced neither bytes nor a file id")
        file_id = await self.upload(produced.cutout)
        if file_id is None:
            raise RuntimeError("the uploaded cutout came back without a document")
        return file_id

    async def succeeded(self, stored: StoredCutout) -> None:
        """Answer with the cutout, unless "still working" went out already."""
        if self._shown is None:
            await self._answer_document(stored)

    async def still_working(self) -> None:
        """The job outlives the deadline: it goes on, so the next query finds it cached."""
        reply = _article(
            Outcome.OK,
            messages.inline_working_title(),
            messages.inline_working_text(),
            shown=Shown.WORKING,
        )
        await self.send(reply)

    async def explain(self, outcome: Outcome, text: str) -> None:
        """A failure article (or the start button), unless an answer went out already."""
        if self._shown is not None:
            return
        if outcome is Outcome.UNDELIVERABLE:
            text = messages.inline_store_failed_text()
        await self.send(_article(outcome, messages.inline_failed_title(), text))

    async def blocked(self) -> None:
        """The user's own chat refused the upload: they must start the bot first."""
        if self._shown is None and self._own_chat:
            await self.send(_needs_start())
        elif self._shown is None:
            await self.send(
                _article(
                    Outcome.UNDELIVERABLE,
                    messages.inline_failed_title(),
                    messages.inline_store_failed_text(),
                )
            )

    def log(self, outcome: str, via: str, timings: JobTimings) -> None:
        """One line per query."""
        (logger.info if outcome in _ROUTINE else logger.warning)(
            "inline user=%s outcome=%s via=%s answer=%s %s",
            self.user_id,
            outcome,
            via,
            self._shown or "failed",
            timings.summary(),
        )

    async def _answer_document(self, stored: StoredCutout) -> None:
        reply = _document_reply([stored])
        await self._offer_sticker(reply, stored.file_id)
        if await self.send(reply) is _Sent.REJECTED_FILE:
            self._shown = None  # the lifecycle drops the file id and answers afresh, once
            raise BadRequest("Wrong file identifier/http url specified")

    async def _offer_sticker(self, reply: _Reply, file_id: str) -> None:
        """Beside a cutout, its sticker, when it can be ready (or cached) in time."""
        if self._studio is None:
            return
        work = asyncio.ensure_future(self._studio.sticker_for(file_id, self._target))
        self._studio.keep(work)  # too late for this answer, it is cached for the next one
        try:
            sticker_id = await asyncio.wait_for(
                asyncio.shield(work), timeout=max(0.0, self.answer_by - time.monotonic())
            )
        except TimeoutError:
            return
        if sticker_id:
            reply.results.append(
                InlineQueryResultCachedSticker(
                    id=_result_id(sticker_id), sticker_file_id=sticker_id
                )
            )

    async def send(self, reply: _Reply) -> _Sent:
        """The one answerInlineQuery, never after its deadline; failures are logged, not raised.

        A flood wait is waited out only if it ends before the deadline: an answer after it is
        useless to the user (Telegram refuses it as "query is too old").
        """
        query = self._query
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
                if time.monotonic() + wait >= self._send_by:
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
            self._shown = reply.shown
            return _Sent.OK


async def can_write(bot: Bot, user_id: int, answer_by: float) -> bool:
    """Whether the bot may send to the user's private chat (checked before paying)."""
    try:
        await asyncio.wait_for(
            bot.send_chat_action(chat_id=user_id, action=ChatAction.UPLOAD_DOCUMENT),
            timeout=max(0.5, answer_by - time.monotonic()),
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


async def _explain_error(surface: InlineSurface, err: Exception) -> Outcome:
    """Answer a query whose handling broke (storage down, a bug) and say how it ended."""
    if isinstance(err, StorageUnavailable):
        logger.error("Storage unavailable: %s", err)
        await surface.explain(Outcome.STORAGE_DOWN, messages.temporarily_unavailable())
        return Outcome.STORAGE_DOWN
    logger.error("Unexpected error in an inline query", exc_info=err)
    await surface.explain(Outcome.INTERNAL_ERROR, messages.internal_error())
    return Outcome.INTERNAL_ERROR


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
        text=messages.inline_no_recent_button(), start_parameter=messages.INLINE_START_PARAMETER
    )
    return _Reply(Shown.BUTTON, InlineOutcome.NO_RECENT, button=button)


def _result_id(file_id: str) -> str:
    # Result ids are at most 64 bytes; file ids are longer, and unique per file.
    return hashlib.sha256(file_id.encode()).hexdigest()[:32]


def _document_reply(items: Sequence[StoredCutout]) -> _Reply:
    results: list[InlineQueryResult] = [
        InlineQueryResultCachedDocument(
            id=_result_id(item.file_id),
            title=messages.inline_cutout_title(),
            document_file_id=item.file_id,
            description=item.file_name,
            caption=messages.done_caption(),
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
        text=messages.inline_start_button(), start_parameter=messages.INLINE_START_PARAMETER
    )
    return _Reply(Shown.BUTTON, InlineOutcome.NEEDS_START, button=button)
