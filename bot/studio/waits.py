"""My background: a press waits for its owner's next photo in that chat (no Telegram code).

The wait lives in the state store under `<chat id>:<user id>` (memory, SQLite or Redis), so it
survives a restart and every replica sees it; taking it is atomic, so one photo, one `/cancel`
or one timeout line ends it, on one replica.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from bot.storage.base import StateStore, StorageUnavailable
from bot.studio.records import Record

logger = logging.getLogger(__name__)

# How long the bot waits for the background photo.
BACKGROUND_WAIT = 600.0


def wait_key(chat_id: int, user_id: int) -> str:
    """Where the wait of `user_id` in `chat_id` is stored."""
    return f"{chat_id}:{user_id}"


@dataclass(frozen=True, slots=True)
class Wait:
    """A press of My background waiting for a photo: whose, which cutouts, until when."""

    record: Record
    until: float
    # The pressed message and its forum topic: the timeout line replies there.
    reply_to: int | None
    thread_id: int | None
    # The owner's language when pressing: the timeout line comes without an update to read it.
    locale: str

    def dumps(self) -> str:
        """JSON for the store (the record's own fields, `owner` first among them)."""
        data = json.loads(self.record.dumps())
        data.update(
            until=self.until, reply_to=self.reply_to, thread=self.thread_id, locale=self.locale
        )
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> Wait | None:
        """Inverse of `dumps` (None for anything unreadable)."""
        record = Record.loads(raw)
        try:
            data = json.loads(raw)
            until = float(data["until"])
            reply_to = data.get("reply_to")
            thread = data.get("thread")
            return (
                cls(
                    record,
                    until,
                    int(reply_to) if reply_to is not None else None,
                    int(thread) if thread is not None else None,
                    str(data.get("locale") or "en"),
                )
                if record is not None
                else None
            )
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def key(self) -> str:
        """Where this wait is stored."""
        return wait_key(self.record.chat, self.record.owner)


class Waits:
    """Background waits in the state store."""

    def __init__(self, store: StateStore, *, length: float = BACKGROUND_WAIT) -> None:
        self._store = store
        self.length = length

    def new(
        self, record: Record, reply_to: int | None, thread_id: int | None, locale: str
    ) -> Wait:
        """A wait for `record`'s owner's photo in `record.chat`, from now on."""
        return Wait(record, time.time() + self.length, reply_to, thread_id, locale)

    async def start(self, wait: Wait) -> bool:
        """Store `wait` (raises StorageUnavailable); True if it replaced one still running."""
        before = await self.current(wait.record.chat, wait.record.owner)
        await self._store.put_wait(wait.key, wait.dumps(), wait.until)
        return before is not None

    async def current(self, chat_id: int, user_id: int) -> Wait | None:
        """The user's running wait in the chat (raises StorageUnavailable)."""
        raw = await self._store.get_wait(wait_key(chat_id, user_id))
        wait = Wait.loads(raw) if raw else None
        return wait if wait is not None and wait.until > time.time() else None

    async def take(self, chat_id: int, user_id: int) -> Wait | None:
        """End the user's running wait in the chat and return it (None: none was running)."""
        raw = await self._store.take_wait(wait_key(chat_id, user_id))
        wait = Wait.loads(raw) if raw else None
        return wait if wait is not None and wait.until > time.time() else None

    async def put_back(self, wait: Wait) -> None:
        """Let a taken wait go on until its own deadline (best effort)."""
        try:
            await self._store.put_wait(wait.key, wait.dumps(), wait.until)
        except StorageUnavailable as err:
            logger.warning("Could not let a background wait go on: %s", err)

    async def ran_out(self) -> list[Wait]:
        """Waits whose time ran out, each taken here (so no other replica has it)."""
        try:
            keys = await self._store.due_waits(time.time())
        except StorageUnavailable as err:
            logger.warning("Could not look for background waits that ran out: %s", err)
            return []
        ended: list[Wait] = []
        for key in keys:
            try:
                raw = await self._store.take_wait(key)
            except StorageUnavailable as err:
                logger.warning("Could not end a background wait: %s", err)
                break
            wait = Wait.loads(raw) if raw else None
            if wait is not None:
                ended.append(wait)
        return ended
