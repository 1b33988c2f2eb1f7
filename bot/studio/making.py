"""What a press computes: an action's result for one cutout, from the cache or made afresh.

Made afresh means the cutout's bytes (downloaded by the caller: Telegram's getFile) through the
action's image function in the CPU pool (`bot/imaging/pool.py`), never on the event loop. Every
result is cached by the cutout's `file_unique_id`, so the same press twice is a re-send by id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.i18n import messages
from bot.imaging import edits as imaging
from bot.imaging.pool import CpuBusy, CpuPool, CpuWorkerLost
from bot.storage.base import StateStore, StorageUnavailable, StoredCutout
from bot.studio.actions import StudioAction
from bot.studio.records import Item, Record

logger = logging.getLogger(__name__)

# The cutout's bytes, however the caller gets them (raises `Declined` when it cannot).
Download = Callable[[Item], Awaitable[bytes]]


class Declined(Exception):
    """A press that ends in a plain explanation instead of a result."""

    def __init__(self, outcome: str, text: Callable[[], str]) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.text = text


_IMAGING_REFUSALS: list[tuple[type[Exception], str, Callable[[], str]]] = [
    (imaging.ImageTooLarge, "too_many_pixels", messages.studio_too_many_pixels),
    (imaging.NoSubject, "no_subject", messages.studio_no_subject),
    (imaging.ImagingError, "unreadable", messages.studio_unreadable),
    (CpuBusy, "busy", messages.studio_busy),
    (CpuWorkerLost, "worker_lost", messages.studio_failed),
]


@dataclass(slots=True)
class Made:
    """One result: Telegram's copy from the cache, or fresh bytes to upload (neither: packed)."""

    item: Item
    cache_key: str
    file_name: str
    file_id: str | None = None
    data: bytes | None = None

    @property
    def already_packed(self) -> bool:
        """The cutout's sticker is in the owner's pack already: nothing to send."""
        return self.file_id is None and self.data is None


class BackdropRefused(Declined):
    """The photo that answered My background cannot be used (unlike a cutout's problem)."""


class Backdrop:
    """The photo a My background press was answered with, fetched once for every cutout.

    Fetched only when a result is not cached, so the same photo again is a re-send with no
    download; `fetch` raises `BackdropRefused` for a photo that cannot be a background.
    """

    def __init__(self, item: Item, fetch: Callable[[], Awaitable[bytes]]) -> None:
        self.item = item
        self._fetch = fetch
        self._data: bytes | None = None
        self._refused: BackdropRefused | None = None

    async def data(self) -> bytes:
        """The photo's bytes (fetched on first use; a refusal is raised again, not refetched)."""
        if self._refused is not None:
            raise self._refused
        if self._data is None:
            try:
                self._data = await self._fetch()
            except BackdropRefused as refused:
                self._refused = refused
                raise
        return self._data


def cache_key(kind: str, unique_id: str) -> str:
    """Where the result of kind `kind` for one cutout is cached."""
    return f"studio:{kind}:{unique_id}"


def packed_key(owner: int, unique_id: str, kind: str = "st") -> str:
    """Where it is noted that a cutout's sticker of kind `kind` is in `owner`'s pack."""
    # The plain sticker keeps the key it always had: marks stored before outlines still count.
    return cache_key(f"pk{owner}" if kind == "st" else f"pk{owner}-{kind}", unique_id)


class Maker:
    """Makes actions' results, cached by the cutout's file id like cutouts are."""

    def __init__(self, store: StateStore, cpu: CpuPool, *, cache_ttl: float) -> None:
        self._store = store
        self._cpu = cpu
        self._cache_ttl = cache_ttl

    async def make_all(
        self,
        action: StudioAction,
        record: Record,
        download: Download,
        *,
        pack_of: int | None = None,
        on: Backdrop | None = None,
    ) -> tuple[list[Made], dict[int, Declined]]:
        """Every cutout's result, and what was declined for which (numbered from 1)."""
        made: list[Made] = []
        problems: dict[int, Declined] = {}
        for number, item in enumerate(record.items, start=1):
            try:
                if pack_of is not None and (packed := await self._packed(pack_of, item, action)):
                    made.append(packed)
                else:
                    made.append(await self.make(action, item, download, on=on))
            except BackdropRefused:
                raise  # the photo's problem, not this cutout's: nothing else can be made
            except Declined as declined:
                problems[number] = declined
        return made, problems

    async def make(
        self, action: StudioAction, item: Item, download: Download, *, on: Backdrop | None = None
    ) -> Made:
        """The action's result for one cutout: from the cache, or downloaded and made.

        `on`: the user's photo for My background, the function's second argument; the result
        is cached per (photo, cutout), so the same photo again is a re-send.
        """
        assert action.function is not None, f"{action.name} makes nothing"
        kind = action.kind if on is None else f"{action.kind}-{on.item.unique_id}"
        key = cache_key(kind, item.unique_id)
        cached = await self.cached(key)
        if cached is not None:
            return Made(item, key, cached.file_name, file_id=cached.file_id)
        data = await download(item)
        args = action.args if on is None else (await on.data(), *action.args)
        try:
            result = await self._cpu.run(action.function, data, *args)
        except Exception as err:
            for kind_of, outcome, text in _IMAGING_REFUSALS:
                if isinstance(err, kind_of):
                    logger.info("Studio conversion refused: %s: %s", type(err).__name__, err)
                    raise Declined(outcome, text) from err
            raise
        return Made(item, key, action.file_name(item.name), data=result)

    async def compute(self, action: StudioAction, data: bytes) -> bytes:
        """The action's function on `data` in the CPU pool (errors as the pool raises them)."""
        assert action.function is not None, f"{action.name} makes nothing"
        return await self._cpu.run(action.function, data, *action.args)

    async def cached(self, key: str) -> StoredCutout | None:
        """Telegram's copy of a result made before, if the cache has it (and is up)."""
        try:
            return await self._store.get_cutout(key)
        except StorageUnavailable as err:
            logger.warning("Studio cache unavailable: %s", err)
            return None

    async def remember(self, made: Made, file_id: str | None) -> None:
        """Cache Telegram's copy of a freshly uploaded result (best effort)."""
        if not file_id or made.file_id is not None:
            return
        try:
            await self._store.put_cutout(
                made.cache_key, StoredCutout(file_id, made.file_name, time.time()), self._cache_ttl
            )
        except StorageUnavailable as err:
            logger.warning("Could not cache a studio result: %s", err)

    async def mark_packed(self, owner: int, item: Item, kind: str = "st") -> None:
        """Note that the cutout's sticker of kind `kind` is in `owner`'s pack (best effort)."""
        try:
            await self._store.put_cutout(
                packed_key(owner, item.unique_id, kind),
                StoredCutout(item.file_id, item.name, time.time()),
                self._cache_ttl,
            )
        except StorageUnavailable as err:
            logger.warning("Could not remember a packed sticker: %s", err)

    async def _packed(self, owner: int, item: Item, action: StudioAction) -> Made | None:
        key = packed_key(owner, item.unique_id, action.kind)
        if await self.cached(key) is not None:
            return Made(item, key, "sticker.webp")  # neither bytes nor id: already there
        return None
