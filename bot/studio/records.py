"""A keyboard's record: who may press it, where it is, which cutouts it acts on.

Callback data carries only a token; the record behind it lives in the state store, so buttons
work across restarts and replicas. A single cutout's own message can stand in for a lost record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.storage.base import StateStore, StorageUnavailable

logger = logging.getLogger(__name__)

# Records outlive short cache settings: a keyboard should work for at least a day.
MIN_RECORD_TTL = 24 * 3600.0


def record_ttl(cache_ttl: float) -> float:
    """How long a keyboard's record is kept (what /privacy tells the user, too)."""
    return max(cache_ttl, MIN_RECORD_TTL)


class SentFile(Protocol):
    """What the studio needs of a file Telegram holds (a `telegram.Document` has it all)."""

    @property
    def file_id(self) -> str:
        """Telegram's id to send or download the file again."""

    @property
    def file_unique_id(self) -> str:
        """The same for the same file, whatever bot or time: the cache key."""

    @property
    def file_name(self) -> str | None:
        """The file's name as sent."""

    @property
    def file_size(self) -> int | None:
        """The file's size in bytes, when Telegram says."""


@dataclass(frozen=True, slots=True)
class Item:
    """One cutout a keyboard acts on: Telegram's document."""

    file_id: str
    unique_id: str
    name: str
    size: int | None

    @classmethod
    def of(cls, document: SentFile) -> Item:
        """The item for a sent document."""
        return cls(
            document.file_id,
            document.file_unique_id,
            document.file_name or "cutout.png",
            document.file_size,
        )


@dataclass(frozen=True, slots=True)
class Record:
    """Who may press a keyboard, where it is, and which cutouts it acts on."""

    owner: int
    chat: int
    items: tuple[Item, ...]

    def dumps(self) -> str:
        """JSON for the store."""
        return json.dumps(
            {
                "v": 1,
                "owner": self.owner,
                "chat": self.chat,
                "items": [[i.file_id, i.unique_id, i.name, i.size] for i in self.items],
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, raw: str) -> Record | None:
        """Inverse of `dumps` (None for anything unreadable)."""
        try:
            data = json.loads(raw)
            items = tuple(
                Item(str(f), str(u), str(n), int(s) if s is not None else None)
                for f, u, n, s in data["items"]
            )
            return cls(int(data["owner"]), int(data["chat"]), items)
        except (ValueError, KeyError, TypeError):
            return None


class Records:
    """Keyboard records in the state store, by token."""

    def __init__(self, store: StateStore, *, cache_ttl: float) -> None:
        self._store = store
        self._ttl = record_ttl(cache_ttl)

    async def put(self, token: str, owner: int, chat_id: int, files: Sequence[SentFile]) -> None:
        """Store a keyboard's record (best effort: a single cutout's message can stand in)."""
        record = Record(owner, chat_id, tuple(Item.of(f) for f in files))
        try:
            await self._store.put_studio(token, record.dumps(), self._ttl)
        except StorageUnavailable as err:
            logger.warning("Could not store the buttons of a cutout: %s", err)

    async def get(self, token: str) -> Record | None:
        """The record behind `token`, or None (expired, unreadable); raises StorageUnavailable."""
        raw = await self._store.get_studio(token)
        return Record.loads(raw) if raw else None
