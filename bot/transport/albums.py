"""Albums in private chats: every image processed, the cutouts sent back as albums."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from telegram import Bot, Document, InputFile, InputMediaDocument, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.i18n import messages
from bot.ops.metrics import Metrics
from bot.removal.cutouts import CutoutService, Produced, Role, Ticket
from bot.removal.pipeline import Cutout
from bot.removal.sources import ImageSource
from bot.requests.admission import Admission, RateLimited, Refusal, format_wait
from bot.requests.journal import note_status_message
from bot.requests.outcomes import CACHE_RESULT as _CACHE_RESULT
from bot.requests.outcomes import Outcome, classify
from bot.requests.rejected import drop_rejected, is_rejected_file_id, rejected_file_ids
from bot.storage.base import StateStore, StoredCutout
from bot.transport.quiet import quietly
from bot.transport.studio import Studio
from bot.transport.uploads import upload_file

logger = logging.getLogger(__name__)

# An album's items arrive within a second or so; a steady trickle must not stall it for ever.
MAX_COLLECT_SECONDS = 10.0
# sendMediaGroup takes 2-10 items.
ALBUM_SIZE = 10

# --- collecting -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlbumItem:
    """One message of an album: an image source, or the reason it cannot be used."""

    message_id: int
    source: ImageSource | None
    problem: str | None = None


@dataclass(slots=True)
class _Collecting:
    items: dict[int, AlbumItem]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the album's summary is delivered: every item's request ends there, so none
    # is recorded as answered (bot.requests.journal) before the whole album is.
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class AlbumCollector:
    """Collects the messages of one media group, then processes them together."""

    def __init__(
        self,
        bot: Bot,
        cutouts: CutoutService,
        store: StateStore,
        admission: Admission,
        *,
        wait: float = 1.0,
        metrics: Metrics | None = None,
        studio: Studio | None = None,
    ) -> None:
        self._bot = bot
        self._cutouts = cutouts
        self._store = store
        self._admission = admission
        self._wait = wait
        self._metrics = metrics or Metrics()
        self._studio = studio
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
        run = _AlbumRun(
            self._bot,
            self._cutouts,
            self._store,
            self._admission,
            user_id=user_id,
            chat_id=chat_id,
            items=items,
            studio=self._studio,
        )
        try:
            await run.process()
        finally:
            collecting.answered.set()
            run.count(self._metrics)

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


# --- processing -------------------------------------------------------------------------------


class _State(StrEnum):
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    LIMITED = "limited"


@dataclass(slots=True)
class _Entry:
    """One numbered image of the album and what became of it."""

    number: int
    item: AlbumItem
    state: _State = _State.PENDING
    ticket: Ticket | None = None
    produced: Produced | None = None
    refusal: Refusal | None = None
    reason: str = ""
    outcome: Outcome | None = None

    def fail(self, outcome: Outcome, reason: str | None = None) -> None:
        """Mark the image as not delivered, with the short reason the user will read."""
        self.state = _State.FAILED
        self.outcome = outcome
        self.reason = reason or messages.album_outcome_reason(outcome)


async def _no_upload(cutout: Cutout) -> str | None:
    # The leader keeps the bytes: all cutouts of the album are uploaded together at the end.
    return None


class _AlbumRun:
    """One album from its status message to its one summary."""

    def __init__(
        self,
        bot: Bot,
        cutouts: CutoutService,
        store: StateStore,
        admission: Admission,
        *,
        user_id: int,
        chat_id: int,
        items: list[AlbumItem],
        studio: Studio | None = None,
    ) -> None:
        self._bot = bot
        self._studio = studio
        # The cutouts as sent, for the one follow-up message with the studio buttons.
        self._documents: list[Document] = []
        self._cutouts = cutouts
        self._store = store
        self._admission = admission
        self._user_id = user_id
        self._chat_id = chat_id
        self._entries = [_Entry(n, item) for n, item in enumerate(items, start=1)]
        self._reply_to = items[0].message_id
        self._status: Message | None = None

    def count(self, metrics: Metrics) -> None:
        """Count every image of the album like a single request."""
        for entry in self._entries:
            source = entry.item.source
            kind = source.kind if source is not None else "other"
            via = entry.ticket.role if entry.ticket is not None else "-"
            if entry.ticket is not None:
                metrics.cache_lookup(_CACHE_RESULT[entry.ticket.role])
            if entry.state is _State.OK:
                outcome: str = Outcome.OK
            elif entry.state is _State.LIMITED:
                outcome = Outcome.RATE_LIMITED
                metrics.refused(entry.refusal.scope if entry.refusal else "user")
            else:
                outcome = entry.outcome or Outcome.INTERNAL_ERROR
            metrics.job_finished(kind, outcome, via, None)

    async def process(self) -> None:
        """Answer the whole album and log one line about it."""
        started = time.monotonic()
        try:
            await self._process()
        except Exception:
            logger.exception("Unexpected error in an album")
            for entry in self._entries:
                if entry.state is _State.PENDING:
                    if entry.ticket is not None:
                        entry.ticket.cancel()
                    entry.fail(Outcome.INTERNAL_ERROR)
            await self._finish()
        finally:
            counts = dict.fromkeys(_State, 0)
            for entry in self._entries:
                counts[entry.state] += 1
            everything_ok = counts[_State.OK] == len(self._entries)
            log = logger.info if everything_ok else logger.warning
            log(
                "album user=%s chat=%s items=%d ok=%d failed=%d limited=%d total=%.3fs",
                self._user_id,
                self._chat_id,
                len(self._entries),
                counts[_State.OK],
                counts[_State.FAILED] + counts[_State.PENDING],
                counts[_State.LIMITED],
                time.monotonic() - started,
            )

    async def _process(self) -> None:
        for entry in self._entries:
            if entry.item.source is None or entry.item.problem is not None:
                problem = entry.item.problem or messages.not_an_image()
                entry.fail(Outcome.BAD_INPUT, messages.album_problem_reason(problem))
        await self._start_jobs()
        started = [e for e in self._entries if e.ticket is not None]
        # Cache hits come back at once: a status message would only flicker.
        needs_status = any(e.ticket and e.ticket.role is not Role.CACHED for e in started)
        if needs_status and not await self._post_status(len(started)):
            return
        await asyncio.gather(*(self._await_result(e) for e in started))
        if not await self._send_cutouts():
            return
        if self._studio is not None:
            await self._studio.follow_up(
                self._chat_id, self._user_id, self._documents, self._reply_to
            )
        await self._finish()

    async def _start_jobs(self) -> None:
        """Start the jobs in album order, so the limit refuses the last images, not random ones."""

        for entry in self._entries:
            if entry.state is _State.PENDING and entry.item.source is not None:
                await self._start_job(entry, entry.item.source)

    async def _start_job(self, entry: _Entry, source: ImageSource) -> None:
        async def admit() -> RateLimited | None:
            return await self._admission.admit(self._user_id)

        try:
            entry.ticket = await self._cutouts.start(source, _no_upload, admit=admit)
        except RateLimited as limited:
            entry.state = _State.LIMITED
            entry.refusal = limited.refusal
        except Exception as err:  # e.g. JobAborted while shutting down
            self._record_failure(entry, err)

    async def _post_status(self, count: int) -> bool:
        """Post the status reply and the chat action; False if the user blocked the bot."""
        try:
            self._status = await self._bot.send_message(
                chat_id=self._chat_id,
                text=messages.album_working(count),
                reply_parameters=self._reply(),
            )
            await note_status_message(self._status)
        except Forbidden as err:
            logger.warning("Cannot write to chat %s: %s", self._chat_id, err.message)
            for entry in self._entries:
                if entry.ticket is not None:
                    entry.ticket.cancel()
                if entry.state is _State.PENDING:
                    entry.fail(Outcome.UNDELIVERABLE)
            return False
        except TelegramError as err:
            # Not fatal: the work goes on and the summary, if any, becomes a fresh reply.
            logger.warning("Could not post the album status in chat %s: %s", self._chat_id, err)
        await quietly(
            self._bot.send_chat_action(chat_id=self._chat_id, action=ChatAction.UPLOAD_DOCUMENT),
            f"chat action in {self._chat_id}",
        )
        return True

    async def _await_result(self, entry: _Entry) -> None:
        assert entry.ticket is not None
        try:
            produced = await entry.ticket.result()
        except Exception as err:
            self._record_failure(entry, err)
            return
        if produced.file_id is None and produced.cutout is None:
            logger.error("A shared job produced neither bytes nor a file id")
            entry.fail(Outcome.INTERNAL_ERROR)
            return
        entry.produced = produced

    def _record_failure(self, entry: _Entry, err: Exception) -> None:
        outcome, _ = classify(err)
        if outcome is Outcome.BAD_KEY:
            logger.error("Freepik refused the API key (%s): check FREEPIK_API_KEY", err)
        elif outcome is Outcome.INTERNAL_ERROR:
            logger.error("Unexpected error in an album job", exc_info=err)
        else:
            logger.info("Album image failed: %s: %s", type(err).__name__, err)
        entry.fail(outcome)

    async def _send_cutouts(self) -> bool:
        """Send the finished cutouts in albums of up to ten; False if the user blocked the bot."""
        ready = [e for e in self._entries if e.state is _State.PENDING and e.produced is not None]
        for start in range(0, len(ready), ALBUM_SIZE):
            chunk = ready[start : start + ALBUM_SIZE]
            rerun = False
            while chunk:
                try:
                    sent = await self._send_chunk(chunk)
                except Forbidden as err:
                    logger.warning("Chat %s blocked the bot: %s", self._chat_id, err.message)
                    for entry in ready[start:]:
                        if entry.state is _State.PENDING:
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
                await self._record_sent(chunk, sent)
                break
        return True

    def _undeliverable(self, chunk: list[_Entry], err: TelegramError) -> None:
        logger.error("Could not send an album to chat %s: %s", self._chat_id, err)
        for entry in chunk:
            entry.fail(Outcome.UNDELIVERABLE)

    async def _rerun_rejected(self, chunk: list[_Entry], err: BadRequest) -> list[_Entry]:
        """Drop the cached file ids Telegram rejected and make those images again.

        Returns what is left to send: the chunk with the remade images, without any refused
        by the limits or failed this time.
        """
        cached = [
            (entry, entry.item.source, entry.produced.file_id)
            for entry in chunk
            if entry.item.source is not None and entry.produced and entry.produced.file_id
        ]
        if not cached:
            self._undeliverable(chunk, err)
            return []
        bad = await rejected_file_ids(self._bot, (file_id for _, _, file_id in cached))
        # If getFile confirms no culprit, none of the chunk's file ids is trusted.
        stale = [c for c in cached if c[2] in bad] or cached
        for entry, source, file_id in stale:
            await drop_rejected(self._cutouts, source, file_id)
            entry.produced = None
            entry.ticket = None
            await self._start_job(entry, source)
        rerun = [entry for entry, _, _ in stale if entry.ticket is not None]
        await asyncio.gather(*(self._await_result(e) for e in rerun))
        return [e for e in chunk if e.state is _State.PENDING and e.produced is not None]

    async def _record_sent(self, chunk: list[_Entry], sent: Sequence[Message]) -> None:
        for index, entry in enumerate(chunk):
            message = sent[index] if index < len(sent) else None
            file_id = message.document.file_id if message and message.document else None
            if message and message.document:
                self._documents.append(message.document)
            await self._delivered(entry, file_id)

    async def _send_chunk(self, chunk: list[_Entry]) -> Sequence[Message]:
        if len(chunk) == 1:
            # sendMediaGroup needs at least two items.
            message = await self._bot.send_document(
                chat_id=self._chat_id,
                document=_media_file(chunk[0], attach=False),
                reply_parameters=self._reply(),
                disable_content_type_detection=True,
            )
            return [message]
        media = [
            InputMediaDocument(
                _media_file(entry, attach=True), disable_content_type_detection=True
            )
            for entry in chunk
        ]
        return await self._bot.send_media_group(
            chat_id=self._chat_id, media=media, reply_parameters=self._reply()
        )

    async def _delivered(self, entry: _Entry, file_id: str | None) -> None:
        entry.state = _State.OK
        produced = entry.produced
        if produced is None or not file_id:
            return
        source = entry.item.source
        if produced.file_id is None and source is not None:
            # Uploaded from bytes here: cache Telegram's copy so the next request is free.
            stored = await self._cutouts.remember(source, file_id, produced.file_name)
        else:
            stored = StoredCutout(file_id, produced.file_name, time.time())
        await self._store.push_recent(self._user_id, stored)

    async def _finish(self) -> None:
        """Delete the status if all went well, else turn it into the one summary."""
        if all(e.state is _State.OK for e in self._entries):
            if self._status is not None:
                await quietly(
                    self._bot.delete_message(
                        chat_id=self._chat_id, message_id=self._status.message_id
                    ),
                    f"delete status in chat {self._chat_id}",
                )
            return
        text = self._summary()
        if self._status is not None:
            edited = await quietly(
                self._bot.edit_message_text(
                    chat_id=self._chat_id, message_id=self._status.message_id, text=text
                ),
                f"edit status in chat {self._chat_id}",
            )
            if edited:
                return
        await quietly(
            self._bot.send_message(
                chat_id=self._chat_id, text=text, reply_parameters=self._reply()
            ),
            f"reply to chat {self._chat_id}",
        )

    def _summary(self) -> str:
        """One line per reason, naming the images it applies to."""
        ok = sum(1 for e in self._entries if e.state is _State.OK)
        reasons: dict[str, list[int]] = {}
        limited = [e for e in self._entries if e.state is _State.LIMITED]
        for entry in self._entries:
            if entry.state in (_State.FAILED, _State.PENDING):
                reason = entry.reason or messages.album_outcome_reason(Outcome.INTERNAL_ERROR)
                reasons.setdefault(reason, []).append(entry.number)
        lines = [messages.album_summary_header(ok, len(self._entries))]
        if limited:
            waits = [e.refusal.retry_after for e in limited if e.refusal is not None]
            wait_text = format_wait(max(waits, default=60.0))
            numbers = [e.number for e in limited]
            scopes = {e.refusal.scope for e in limited if e.refusal is not None}
            scope = "budget" if "budget" in scopes else "user"
            reason = messages.album_limited_reason(len(numbers), wait_text, scope)
            lines.append(messages.album_summary_line(messages.album_image_names(numbers), reason))
        lines.extend(
            messages.album_summary_line(messages.album_image_names(numbers), reason)
            for reason, numbers in reasons.items()
        )
        return "\n".join(lines)

    def _reply(self) -> ReplyParameters:
        return ReplyParameters(message_id=self._reply_to, allow_sending_without_reply=True)


def _media_file(entry: _Entry, *, attach: bool) -> InputFile | str:
    """Telegram's copy when there is one (no re-upload), else the PNG bytes."""
    produced = entry.produced
    assert produced is not None
    if produced.file_id is not None:
        return produced.file_id
    assert produced.cutout is not None
    # Inside a media group a file must be referenced as attach://<name>; alone it is a plain part.
    return upload_file(produced.cutout, attach=attach)
