"""At-least-once requests: every accepted update is recorded until its one reply is delivered.

The one lifecycle hook for every kind of request (chat messages, albums, button presses):
`RequestJournal.run` wraps the processing of an update. The record (the update itself, when it
was accepted, attempts so far) is written before the first side effect and removed when the
handlers are done, i.e. when the reply or the explanation was delivered. Records left by a
process that died are resumed at the next start; one that keeps failing is given up after
`REQUEST_ATTEMPTS` starts, with an explanation to the user. The same `update_id` is processed
once (polling after a crash and webhook retries both deliver updates again).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from telegram import Bot, Message, ReplyParameters, Update
from telegram.error import TelegramError

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.storage.base import PendingUpdate, StateStore, StorageUnavailable

logger = logging.getLogger(__name__)

# The request the running handler works for: (journal, update id, status messages so far,
# held by the stream, one-off messages sent so far by this run or a dead one).
_current: ContextVar[tuple[RequestJournal, int, list[list[int]], bool, list[str]] | None] = (
    ContextVar("nobg_request", default=None)
)

Done = Callable[[], Awaitable[None]]

# How long an answered update id is remembered, so a late redelivery is recognised. Telegram
# keeps unconfirmed updates for 24 hours.
SEEN_TTL = 24 * 3600.0


def update_json(update: Update) -> str:
    """`update` as JSON, for an update that came without its own (built in this process).

    `Update.to_dict()` is not always JSON: an `InaccessibleMessage` (a pinned message Telegram
    can no longer show) keeps its `date` as a datetime. Dates go back to Unix time, as sent.
    """
    return json.dumps(update.to_dict(), separators=(",", ":"), default=_unix_time)


def _unix_time(value: object) -> int:
    if isinstance(value, dtm.datetime):
        return int(value.timestamp())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ArrivedUpdates:
    """The JSON of updates as Telegram sent them, kept until the journal records them.

    The JSON as it arrived always serialises and round-trips exactly, whatever
    python-telegram-bot makes of it. Bounded: updates the journal never records (inline
    queries) make way for new ones.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._json: OrderedDict[int, str] = OrderedDict()
        # The ids of requests (see `recordable`) among them, for recording a batch at once,
        # and whether each of a batch already recorded was new (not a repeat).
        self._requests: OrderedDict[int, None] = OrderedDict()
        self._recorded: OrderedDict[int, bool] = OrderedDict()

    def __len__(self) -> int:
        return len(self._json)

    def keep(self, raw: Mapping[str, Any]) -> None:
        """Remember one update of a getUpdates answer (a parsed JSON object)."""
        update_id = raw.get("update_id")
        if not isinstance(update_id, int):
            return
        self._json[update_id] = json.dumps(raw, separators=(",", ":"))
        if raw.get("message") is not None or raw.get("callback_query") is not None:
            self._requests[update_id] = None
        while len(self._json) > self._limit:
            self._requests.pop(self._json.popitem(last=False)[0], None)

    async def record_batch(self, store: StateStore, update_id: int) -> bool | None:
        """Record `update_id` with the rest of its getUpdates batch in one write; whether it
        was new (not a repeat). None if it came alone: then it is recorded on its own."""
        known = self._recorded.pop(update_id, None)
        if known is not None:
            return known  # recorded with an earlier update of its batch
        batch = self.requests_from(update_id)
        if len(batch) < 2 or batch[0][0] != update_id:
            return None
        answers = await store.accept_updates(batch, SEEN_TTL)
        for (recorded_id, _), accepted in zip(batch, answers, strict=True):
            self.take(recorded_id)
            self._recorded[recorded_id] = accepted
        while len(self._recorded) > self._limit:
            self._recorded.popitem(last=False)  # never handed over (polling stopped)
        return self._recorded.pop(update_id)

    def requests_from(self, update_id: int, limit: int = 100) -> list[tuple[int, str]]:
        """(id, JSON) of the requests kept from `update_id` on, in order: its getUpdates batch."""
        found: list[tuple[int, str]] = []
        for kept in self._requests:
            if kept >= update_id:
                found.append((kept, self._json[kept]))
                if len(found) >= limit:
                    break
        return found

    def peek(self, update_id: int) -> str | None:
        """The JSON of update `update_id`, if it was kept."""
        return self._json.get(update_id)

    def take(self, update_id: int) -> str | None:
        """The JSON of update `update_id` (forgotten once taken), if it was kept."""
        self._requests.pop(update_id, None)
        return self._json.pop(update_id, None)


def recordable(update: Update) -> bool:
    """Requests that expect a reply later: new messages and button presses.

    Inline queries are not recorded: Telegram refuses answers after a few seconds, so one
    resumed after a restart could only cost a Freepik call nobody sees (the user's client asks
    again as they type). Edited messages are not requests.
    """
    return update.message is not None or update.callback_query is not None


class RequestJournal:
    """Records requests in the state store and resumes them after a crash."""

    def __init__(
        self,
        store: StateStore,
        bot: Bot,
        *,
        max_attempts: int = 3,
        arrived: ArrivedUpdates | None = None,
    ) -> None:
        self._store = store
        self._bot = bot
        self._max_attempts = max_attempts
        # Polling fills it (bot.transport.polling): the JSON to record for each update.
        self.arrived = arrived if arrived is not None else ArrivedUpdates()
        # Updates recorded (or resumed) and queued by this process: `run` takes these very
        # objects without asking the store again; any other copy of their id is a repeat.
        self._queued: dict[int, tuple[Update, Done | None, list[str]]] = {}
        self._running: dict[asyncio.Task[Any], int] = {}
        self._abandoning = False
        self._closed = False  # stopping: no request starts any more
        self._notes: set[asyncio.Task[None]] = set()

    @property
    def durable(self) -> bool:
        """Whether records survive this process (else shutdown answers "please resend")."""
        return self._store.durable

    async def accept(self, update: Update, raw: str | None = None) -> bool:
        """Record `update` (`raw`: its JSON as sent) before any work on it; False if seen before.

        Raises `StorageUnavailable` if it cannot be recorded (webhook mode answers 503 then).
        """
        update_id = update.update_id
        if not recordable(update):
            self.arrived.take(update_id)
            return True
        if raw is None:
            # Polling hands over a getUpdates batch one update after another: the batch is
            # recorded with its first one (a flood of 900 messages is 9 writes, not 900).
            batched = await self.arrived.record_batch(self._store, update_id)
            if batched is not None:
                return batched
        payload = raw or self.arrived.peek(update_id) or update_json(update)
        accepted = await self._store.accept_update(update_id, payload, SEEN_TTL)
        self.arrived.take(update_id)  # kept if storage failed: `run` tries again
        return accepted

    def queued(
        self, update: Update, on_done: Done | None = None, sent: Sequence[str] = ()
    ) -> None:
        """`update` was recorded (by `accept`, or as a stream entry) and is about to be queued.

        `on_done` runs once its reply was delivered (the stream acknowledges its entry there);
        `sent`: what a dead run of it had sent (see `note_sent`).
        """
        if recordable(update) or on_done is not None:
            self._queued[update.update_id] = (update, on_done, list(sent))

    def is_queued(self, update: Update) -> bool:
        """Whether this very update object is recorded and queued already."""
        queued = self._queued.get(update.update_id)
        return queued is not None and queued[0] is update

    async def run(self, update: object, process: Callable[[], Awaitable[None]]) -> None:
        """Process `update` under its record: skip repeats, finish the record when answered."""
        if not isinstance(update, Update):
            await process()
            return
        update_id = update.update_id
        if self._closed:  # stopping: a backlog keeps its records (stream entries) for later
            return
        recorded = True
        on_done: Done | None = None
        sent: list[str] = []
        queued = self._queued.get(update_id)
        if queued is not None and queued[0] is update:
            del self._queued[update_id]
            _, on_done, sent = queued
        elif not recordable(update):
            self.arrived.take(update_id)  # never recorded: its JSON is not needed
            await process()
            return
        else:
            try:
                if not await self.accept(update):
                    logger.info("Update %s was delivered again; it is processed once", update_id)
                    return
            except StorageUnavailable as err:
                # Serving it unrecorded beats dropping it; the handler explains storage trouble.
                logger.warning("Could not record update %s: %s", update_id, err)
                recorded = False
        task = asyncio.current_task()
        if task is not None:
            self._running[task] = update_id
        token = _current.set(
            (self, update_id, [], on_done is not None, sent) if recorded else None
        )
        try:
            await process()
        except asyncio.CancelledError:
            if self._abandoning:
                logger.info("Update %s left for the next start", update_id)
            raise
        finally:
            _current.reset(token)
            if task is not None:
                self._running.pop(task, None)
        if recorded:
            await self._finish(update_id)
        if on_done is not None:
            await on_done()

    async def _finish(self, update_id: int) -> None:
        try:
            await self._store.finish_update(update_id)
        except StorageUnavailable as err:
            # The reply went out; at worst the next start sends it once more.
            logger.warning("Could not close the record of update %s: %s", update_id, err)

    def _note_soon(self, update_id: int, note: str, *, held: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._note(update_id, note, held))
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    async def _note(self, update_id: int, note: str, held: bool) -> None:
        try:
            await self._store.note_update(update_id, note, held=held)
        except StorageUnavailable as err:
            logger.warning("Could not note a status message of update %s: %s", update_id, err)

    async def delete_status_messages(self, note: str | None) -> list[str]:
        """Delete the status messages a dead run left (its note): the new run posts its own.

        Returns what else the dead run had sent (see `note_sent`), for `queued`.
        """
        shown, sent = _read_note(note)
        for chat_id, message_id in shown:
            try:
                await self._bot.delete_message(chat_id=chat_id, message_id=message_id)
            except TelegramError as err:
                logger.debug("Could not delete a stale status message: %s", err)
        return sent

    async def resume(self, enqueue: Callable[[Update], Awaitable[None]]) -> int:
        """Hand the records a dead process left over to `enqueue`; return how many."""
        try:
            pending = await self._store.pending_updates()
        except StorageUnavailable as err:
            logger.error("Could not read unfinished requests: %s", err)
            return 0
        resumed = 0
        busy = set(self._running.values()) | set(self._queued)
        for record in pending:
            if record.update_id in busy:
                continue  # already being processed by this process
            try:
                resumed += await self._resume_one(record, enqueue)
            except StorageUnavailable as err:
                logger.error("Could not resume update %s: %s", record.update_id, err)
        if pending:
            logger.info(
                "Resumed %d unfinished request(s) of %d left by a previous run",
                resumed,
                len(pending),
            )
        return resumed

    async def _resume_one(
        self, record: PendingUpdate, enqueue: Callable[[Update], Awaitable[None]]
    ) -> int:
        try:
            update = Update.de_json(json.loads(record.payload), self._bot)
        except (ValueError, TypeError, KeyError):
            logger.error("Dropping unreadable record of update %s", record.update_id)
            await self._store.finish_update(record.update_id)
            return 0
        attempts = await self._store.count_attempt(record.update_id)
        if attempts == 0:
            # Finished since the records were read (another process answered it): not ours.
            logger.info("Update %s was finished meanwhile; not resumed", record.update_id)
            return 0
        sent = await self.delete_status_messages(record.note)
        if attempts > self._max_attempts:
            age = time.time() - record.accepted
            logger.warning(
                "Giving up update %s after %d attempts (%.0fs old)",
                record.update_id,
                attempts - 1,
                age,
            )
            await self.give_up(update)
            await self._store.finish_update(record.update_id)
            return 0
        self.queued(update, sent=sent)
        await enqueue(update)
        return 1

    async def give_up(self, update: Update) -> None:
        """Tell the user a request could not be finished (best effort)."""
        message = update.effective_message
        chat = update.effective_chat
        if chat is None:
            return
        reply = (
            ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)
            if message is not None
            else None
        )
        # Outside any update's handler (at start-up): look the user's language up here.
        user = update.effective_user
        choice: str | None = None
        if user is not None:
            with contextlib.suppress(StorageUnavailable):
                choice = await self._store.get_language(user.id)
        with i18n.using(i18n.resolve_locale(choice, user.language_code if user else None)):
            text = messages.gave_up()
        try:
            await self._bot.send_message(chat_id=chat.id, text=text, reply_parameters=reply)
        except TelegramError as err:
            logger.warning("Could not tell chat %s a request was given up: %s", chat.id, err)

    async def abandon(self, grace: float) -> int:
        """Wait up to `grace` seconds for requests in flight, then stop the rest unanswered.

        Their records stay for the next start, as do those not started (none starts now).
        Returns how many were stopped.
        """
        self._closed = True
        deadline = time.monotonic() + grace
        while self._running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(list(self._running), timeout=remaining)
        leftovers = list(self._running)
        if not leftovers:
            return 0
        self._abandoning = True
        logger.warning(
            "Grace of %.0fs is over: leaving %d request(s) for the next start",
            grace,
            len(leftovers),
        )
        for task in leftovers:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*leftovers, return_exceptions=True)
        return len(leftovers)


def current_update_id() -> int | None:
    """The update the running handler works for, if it is on record (resumed after a crash)."""
    current = _current.get()
    return None if current is None else current[1]


async def note_status_message(message: Message) -> None:
    """Remember a status message of the request being processed, for a resumed run to delete.

    Without it, a crash mid-job would leave "Removing the background…" in the chat next to
    the resumed run's answer.
    """
    current = _current.get()
    if current is None:
        return
    journal, update_id, shown, held, sent = current
    shown.append([message.chat_id, message.message_id])
    # In the background: a storage round trip must not delay the job it describes.
    journal._note_soon(update_id, _note_json(shown, sent), held=held)


def note_sent(what: str) -> None:
    """Remember that the request's one-off message `what` went out (a payment's confirmation):
    a run resumed after a crash finds it in `sent_before` and does not send it again."""
    current = _current.get()
    if current is None or what in current[4]:
        return
    journal, update_id, shown, held, sent = current
    sent.append(what)
    journal._note_soon(update_id, _note_json(shown, sent), held=held)


def sent_before(what: str) -> bool:
    """Whether this request's `what` went out already (noted by a run that died, or this one)."""
    current = _current.get()
    return current is not None and what in current[4]


def _note_json(shown: list[list[int]], sent: list[str]) -> str:
    # Status messages alone stay a plain list, as notes were before one-off messages existed.
    return json.dumps({"status": shown, "sent": sent} if sent else shown)


def _read_note(note: str | None) -> tuple[list[list[int]], list[str]]:
    """A run's note: its status messages and the one-off messages it sent."""
    try:
        data = json.loads(note) if note else []
    except ValueError:
        return [], []
    if isinstance(data, dict):
        return list(data.get("status", [])), [str(s) for s in data.get("sent", [])]
    return (data if isinstance(data, list) else []), []


class RecordingQueue(asyncio.Queue[object]):
    """The Application's update queue; records each update as it is put in.

    In polling mode python-telegram-bot confirms updates with its next getUpdates, right after
    putting them here: recording them on the way in leaves no moment in which an update is
    confirmed but not yet on record.
    """

    journal: RequestJournal | None = None

    async def put(self, item: object) -> None:
        """Record `item` (a new update) first, then queue it; drop repeats."""
        journal = self.journal
        if journal is not None and isinstance(item, Update) and not journal.is_queued(item):
            try:
                if not await journal.accept(item):
                    logger.info(
                        "Update %s was delivered again; it is processed once", item.update_id
                    )
                    return
                journal.queued(item)
            except StorageUnavailable as err:
                # `RequestJournal.run` tries again and, failing that, serves it unrecorded.
                logger.warning("Could not record update %s: %s", item.update_id, err)
        await super().put(item)
