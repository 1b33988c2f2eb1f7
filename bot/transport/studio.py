"""The cutout studio: the buttons under every cutout, and what a press makes of the cutout.

A press works from what Telegram already holds: the cutout's `file_id` -> getFile -> download
-> a plain image function in the CPU pool -> one reply. No Freepik call, no rate-limit slot.
What a keyboard needs survives restarts: its callback data carries a versioned action code and
a storage token, the token's record (who may press, which cutouts) lives in the state store,
and a single cutout's own message can stand in for a lost record. Every result is cached by the
cutout's `file_unique_id` like cutouts are, so the same press twice is a re-send by `file_id`.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar

from telegram import (
    Bot,
    CallbackQuery,
    Document,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaDocument,
    InputSticker,
    Message,
    ReplyParameters,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.i18n import messages
from bot.imaging import edits as imaging
from bot.imaging.pool import CpuBusy, CpuPool, CpuWorkerLost
from bot.ops.metrics import Metrics
from bot.storage.base import StateStore, StorageUnavailable, StoredCutout
from bot.studio.actions import ACTIONS, Action, Delivery, action_name
from bot.studio.callback import new_token, parse_callback
from bot.studio.packs import STICKER_EMOJI, pack_link, pack_name
from bot.studio.records import MIN_RECORD_TTL, Item, Record
from bot.transport.keyboards import KEYBOARDS, main_keyboard
from bot.transport.migrations import Migrations, Send

logger = logging.getLogger(__name__)

T = TypeVar("T")

# getFile hands out files up to 20 MB (MB as Telegram counts them).
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
# sendMediaGroup takes 2-10 items.
ALBUM_SIZE = 10


# --- outcomes ---------------------------------------------------------------------------------


class Refusal(Exception):
    """A press that ends in a plain explanation instead of a result."""

    def __init__(self, outcome: str, text: Callable[[], str]) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.text = text


_IMAGING_REFUSALS: list[tuple[type[Exception], str, Callable[[], str]]] = [
    (imaging.ImageTooLarge, "too_many_pixels", messages.studio_too_many_pixels),
    (imaging.NoSubject, "no_subject", messages.studio_no_subject),
    (imaging.ImageUnreadable, "unreadable", messages.studio_unreadable),
    (imaging.ImagingError, "unreadable", messages.studio_unreadable),
    (CpuBusy, "busy", messages.studio_busy),
    (CpuWorkerLost, "worker_lost", messages.studio_failed),
]


@dataclass(slots=True)
class Made:
    """One result: Telegram's copy from the cache, or fresh bytes to upload."""

    item: Item
    cache_key: str
    file_name: str
    file_id: str | None = None
    data: bytes | None = None

    def upload(self, *, attach: bool = False) -> InputFile | str:
        """The file id when cached, else the bytes as an upload."""
        if self.file_id is not None:
            return self.file_id
        assert self.data is not None
        return InputFile(
            io.BytesIO(self.data), filename=self.file_name, attach=attach, read_file_handle=False
        )


@dataclass(slots=True)
class _Press:
    """One button press: its query, where replies go, and whether it was answered."""

    query: CallbackQuery
    chat_id: int = 0
    reply_to: int | None = None
    thread_id: int | None = None
    answered: bool = False
    action: str = "-"


# --- the studio -------------------------------------------------------------------------------


class Studio:
    """Keyboards for cutouts, and the answer to every press of their buttons."""

    def __init__(
        self,
        bot: Bot,
        store: StateStore,
        cpu: CpuPool,
        *,
        cache_ttl: float,
        metrics: Metrics | None = None,
        migrations: Migrations | None = None,
    ) -> None:
        self._bot = bot
        self._migrations = migrations or Migrations()
        self._metrics = metrics or Metrics()
        self._store = store
        self._cpu = cpu
        self._cache_ttl = cache_ttl
        self._record_ttl = max(cache_ttl, MIN_RECORD_TTL)
        # One conversion at a time per (result, cutouts): a quick second press waits, then
        # finds the first one's result in the cache.
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # keyboards

    def keyboard(self) -> tuple[str, InlineKeyboardMarkup]:
        """A new token and the keyboard for it; `remember` the documents once sent."""
        token = new_token()
        return token, main_keyboard(token)

    async def remember(
        self, token: str, owner: int, chat_id: int, documents: Sequence[Document]
    ) -> None:
        """Store a keyboard's record (best effort: a single cutout's message can stand in)."""
        record = Record(owner, chat_id, tuple(Item.of(d) for d in documents))
        try:
            await self._store.put_studio(token, record.dumps(), self._record_ttl)
        except StorageUnavailable as err:
            logger.warning("Could not store the buttons of a cutout: %s", err)

    async def follow_up(
        self, chat_id: int, owner: int, documents: Sequence[Document], reply_to: int
    ) -> None:
        """Album cutouts cannot carry buttons: one message after them carries them for all."""
        if not documents:
            return
        token, markup = self.keyboard()
        await self.remember(token, owner, chat_id, documents)
        try:
            await self._bot.send_message(
                chat_id=chat_id,
                text=messages.studio_album(),
                reply_markup=markup,
                reply_parameters=ReplyParameters(
                    message_id=reply_to, allow_sending_without_reply=True
                ),
            )
        except TelegramError as err:
            logger.warning("Could not send the album's buttons to chat %s: %s", chat_id, err)

    # presses

    async def handle(self, query: CallbackQuery) -> None:
        """Answer one press (answerCallbackQuery at once) and end it in exactly one reply."""
        started = time.monotonic()
        press = _Press(query)
        outcome = "internal_error"
        items = 0
        try:
            items, outcome = await self._handle(press)
        except Forbidden as err:
            logger.warning("Cannot answer a button press in chat %s: %s", press.chat_id, err)
            outcome = "undeliverable"
        except Exception:
            logger.exception("Unexpected error in a studio button press")
            await self._explain(press, messages.studio_failed)
        finally:
            self._metrics.studio_press(action_name(press.action), outcome)
            (logger.info if outcome in ("ok", "keyboard") else logger.warning)(
                "studio user=%s action=%s items=%d outcome=%s total=%.3fs",
                query.from_user.id,
                action_name(press.action),
                items,
                outcome,
                time.monotonic() - started,
            )

    async def _handle(self, press: _Press) -> tuple[int, str]:
        """(cutouts acted on, outcome) of one press."""
        query = press.query
        parsed = parse_callback(query.data)
        if parsed is None:
            await self._toast(press, messages.studio_invalid())
            return 0, "invalid"
        studio_action, token = parsed
        action = press.action = studio_action.code
        try:
            record = await self._record(token, query)
        except StorageUnavailable as err:
            logger.error("Storage unavailable: %s", err)
            await self._toast(press, messages.studio_storage_down())
            return 0, "storage_down"
        if record is None:
            await self._toast(press, messages.studio_expired())
            return 0, "expired"
        if query.from_user.id != record.owner:
            await self._toast(press, messages.studio_not_yours())
            return len(record.items), "not_owner"
        self._where(press, record)
        if studio_action.delivery is Delivery.KEYBOARD:
            await self._toast(press, None)
            await self._switch_keyboard(press, KEYBOARDS[studio_action.keyboard](token))
            return len(record.items), "keyboard"
        await self._toast(press, messages.studio_working())
        try:
            await self._work(press, action, record)
        except Refusal as refusal:
            await self._explain(press, refusal.text)
            return len(record.items), refusal.outcome
        return len(record.items), "ok"

    async def _record(self, token: str, query: CallbackQuery) -> Record | None:
        try:
            raw = await self._store.get_studio(token)
        except StorageUnavailable:
            # A single cutout's message is enough to go on; an album's buttons need the store.
            if (fallback := self._from_message(query)) is not None:
                return fallback
            raise
        record = Record.loads(raw) if raw else None
        return record if record is not None else self._from_message(query)

    @staticmethod
    def _from_message(query: CallbackQuery) -> Record | None:
        """A single cutout's record from its own message: its document and who asked for it."""
        # The stored record is gone (memory store restarted, expired, storage down): the
        # cutout's message holds its document and its owner (the private chat, or the sender
        # of the message the cutout replies to).
        message = query.message
        if not isinstance(message, Message) or message.document is None:
            return None
        if message.chat.type == ChatType.PRIVATE:
            owner = message.chat.id
        elif message.reply_to_message is not None and message.reply_to_message.from_user:
            owner = message.reply_to_message.from_user.id
        else:
            return None
        return Record(owner, message.chat.id, (Item.of(message.document),))

    @staticmethod
    def _where(press: _Press, record: Record) -> None:
        message = press.query.message
        if isinstance(message, Message):
            press.chat_id = message.chat.id
            press.reply_to = message.message_id
            if message.is_topic_message:
                press.thread_id = message.message_thread_id
        else:  # too old for Telegram to include: the record knows the chat
            press.chat_id = record.chat

    async def _toast(self, press: _Press, text: str | None) -> None:
        if press.answered:
            return
        press.answered = True
        try:
            await press.query.answer(text=text)
        except TelegramError as err:
            # Too late for a toast ("query is too old"): the reply still follows.
            logger.info("Could not answer a button press: %s", err)

    async def _explain(self, press: _Press, text: Callable[[], str]) -> None:
        if not press.answered:
            await self._toast(press, text()[:200])
            return
        if not press.chat_id:
            return
        try:
            await self._to_chat(
                press,
                lambda chat_id, thread_id: self._bot.send_message(
                    chat_id=chat_id,
                    text=text(),
                    reply_parameters=self._reply(press, chat_id),
                    message_thread_id=thread_id,
                ),
            )
        except TelegramError as err:
            logger.warning("Could not explain a button press in chat %s: %s", press.chat_id, err)

    async def _switch_keyboard(self, press: _Press, markup: InlineKeyboardMarkup) -> None:
        message = press.query.message
        if not isinstance(message, Message):
            return
        try:
            await self._bot.edit_message_reply_markup(
                chat_id=message.chat.id, message_id=message.message_id, reply_markup=markup
            )
        except BadRequest as err:
            # A double tap: the keyboard already shows what was asked for.
            if "not modified" not in err.message.lower():
                raise

    async def _to_chat(self, press: _Press, send: Send[T]) -> T:
        """Send to the press's chat (and topic); if the group became a supergroup, there."""
        return await self._migrations.send(press.chat_id, press.thread_id, send)

    @staticmethod
    def _reply(press: _Press, chat_id: int | None = None) -> ReplyParameters | None:
        # The message pressed under stayed behind in the basic group: nothing to reply to.
        if press.reply_to is None or (chat_id is not None and chat_id != press.chat_id):
            return None
        return ReplyParameters(message_id=press.reply_to, allow_sending_without_reply=True)

    # the work

    async def _work(self, press: _Press, action: str, record: Record) -> None:
        if action == Action.PACK:
            await self._pack(press, record)
            return
        kind, make = self._maker(action)
        async with self._lock(kind, record):
            made, problems = await self._make_all(record, make)
            if made:
                if ACTIONS[action].delivery is Delivery.STICKER:
                    await self._send_stickers(press, made)
                else:
                    await self._send_documents(press, made)
        self._raise_problems(record, problems)

    def _maker(self, action: str) -> tuple[str, Callable[[Item], Awaitable[Made]]]:
        """The cache kind of an action's result, and how to make it from one cutout."""
        spec = ACTIONS[action]
        assert spec.function is not None
        make = functools.partial(
            self._make, kind=spec.kind, suffix=spec.suffix, function=spec.function, args=spec.args
        )
        return spec.kind, make

    async def _make_all(
        self, record: Record, make: Callable[[Item], Awaitable[Made]]
    ) -> tuple[list[Made], dict[int, Refusal]]:
        made: list[Made] = []
        problems: dict[int, Refusal] = {}
        for number, item in enumerate(record.items, start=1):
            try:
                made.append(await make(item))
            except Refusal as refusal:
                problems[number] = refusal
        return made, problems

    @staticmethod
    def _raise_problems(record: Record, problems: dict[int, Refusal]) -> None:
        if not problems:
            return
        if len(record.items) == 1:
            raise next(iter(problems.values()))
        lines = [messages.studio_partly()] + [
            messages.studio_item_problem(number, refusal.text())
            for number, refusal in problems.items()
        ]
        text = "\n".join(lines)
        raise Refusal("partly", lambda: text)

    def _lock(self, kind: str, record: Record) -> _KeyLock:
        key = kind + ":" + ",".join(sorted(i.unique_id for i in record.items))
        return _KeyLock(self._locks, key)

    async def _sticker_maker(self, item: Item) -> Made:
        return await self._make(item, kind="st", suffix=".webp", function=imaging.sticker)

    async def _make(
        self,
        item: Item,
        *,
        kind: str,
        suffix: str,
        function: Callable[..., bytes],
        args: tuple[Any, ...] = (),
    ) -> Made:
        """The result of `function` on the cutout: from the cache, or downloaded and made."""
        stem = PurePosixPath(item.name).stem.removesuffix("-nobg") or "cutout"
        file_name = "sticker.webp" if suffix == ".webp" else f"{stem}{suffix}"
        key = f"studio:{kind}:{item.unique_id}"
        cached = await self._cached(key)
        if cached is not None:
            return Made(item, key, cached.file_name, file_id=cached.file_id)
        data = await self._download(item)
        try:
            result = await self._cpu.run(function, data, *args)
        except Exception as err:
            for kind_of, outcome, text in _IMAGING_REFUSALS:
                if isinstance(err, kind_of):
                    logger.info("Studio conversion refused: %s: %s", type(err).__name__, err)
                    raise Refusal(outcome, text) from err
            raise
        return Made(item, key, file_name, data=result)

    async def _cached(self, key: str) -> StoredCutout | None:
        try:
            return await self._store.get_cutout(key)
        except StorageUnavailable as err:
            logger.warning("Studio cache unavailable: %s", err)
            return None

    async def _remember(self, made: Made, file_id: str | None) -> None:
        if not file_id or made.file_id is not None:
            return
        try:
            await self._store.put_cutout(
                made.cache_key, StoredCutout(file_id, made.file_name, time.time()), self._cache_ttl
            )
        except StorageUnavailable as err:
            logger.warning("Could not cache a studio result: %s", err)

    async def _download(self, item: Item) -> bytes:
        """The cutout's bytes from Telegram (getFile hands out files up to 20 MB)."""
        if item.size is not None and item.size > MAX_DOWNLOAD_BYTES:
            raise Refusal("too_large", messages.studio_too_large)
        try:
            telegram_file = await self._bot.get_file(item.file_id)
            data = await telegram_file.download_as_bytearray()
        except BadRequest as err:
            if "too big" in err.message.lower():
                raise Refusal("too_large", messages.studio_too_large) from err
            logger.warning("Could not get a cutout from Telegram: %s", err.message)
            raise Refusal("gone", messages.studio_gone) from err
        return bytes(data)

    # sending

    async def _send_stickers(self, press: _Press, made: list[Made]) -> None:
        for result in made:

            def sticker(
                chat_id: int, thread_id: int | None, result: Made = result
            ) -> Awaitable[Message]:
                return self._bot.send_sticker(
                    chat_id=chat_id,
                    sticker=result.upload(),
                    emoji=STICKER_EMOJI,
                    reply_parameters=self._reply(press, chat_id),
                    message_thread_id=thread_id,
                )

            sent = await self._to_chat(press, sticker)
            await self._remember(result, sent.sticker.file_id if sent.sticker else None)

    async def _send_documents(self, press: _Press, made: list[Made]) -> None:
        for start in range(0, len(made), ALBUM_SIZE):
            chunk = made[start : start + ALBUM_SIZE]
            if len(chunk) == 1:

                def document(
                    chat_id: int, thread_id: int | None, one: Made = chunk[0]
                ) -> Awaitable[Message]:
                    return self._bot.send_document(
                        chat_id=chat_id,
                        document=one.upload(),
                        reply_parameters=self._reply(press, chat_id),
                        message_thread_id=thread_id,
                        disable_content_type_detection=True,
                    )

                sent = [await self._to_chat(press, document)]
            else:

                def group(
                    chat_id: int, thread_id: int | None, chunk: list[Made] = chunk
                ) -> Awaitable[tuple[Message, ...]]:
                    # Fresh uploads per attempt: a refused one has used up its streams.
                    media = [
                        InputMediaDocument(
                            r.upload(attach=True), disable_content_type_detection=True
                        )
                        for r in chunk
                    ]
                    return self._bot.send_media_group(
                        chat_id=chat_id,
                        media=media,
                        reply_parameters=self._reply(press, chat_id),
                        message_thread_id=thread_id,
                    )

                sent = list(await self._to_chat(press, group))
            for result, message in zip(chunk, sent, strict=False):
                await self._remember(
                    result, message.document.file_id if message.document else None
                )

    # the user's own sticker pack

    async def _pack(self, press: _Press, record: Record) -> None:
        owner = record.owner
        username = self._bot.username
        name = pack_name(owner, username)
        link = pack_link(name)
        async with self._lock(f"pk{owner}", record):
            made, problems = await self._make_all(record, self._pack_maker(owner))
            created = False
            added = 0
            for result in made:
                if result.data is None and result.file_id is None:
                    added += 1  # already in the pack
                    continue
                created = await self._add_to_pack(owner, name, username, result) or created
                added += 1
                await self._mark_packed(owner, result.item)
            if added:
                reply = messages.pack_created if created else messages.pack_added
                text = reply(link, added)
                await self._to_chat(
                    press,
                    lambda chat_id, thread_id: self._bot.send_message(
                        chat_id=chat_id,
                        text=text,
                        reply_parameters=self._reply(press, chat_id),
                        message_thread_id=thread_id,
                    ),
                )
        self._raise_problems(record, problems)

    def _pack_maker(self, owner: int) -> Callable[[Item], Awaitable[Made]]:
        async def make(item: Item) -> Made:
            key = f"studio:pk{owner}:{item.unique_id}"
            if await self._cached(key) is not None:
                return Made(item, key, "sticker.webp")  # neither bytes nor id: already there
            return await self._sticker_maker(item)

        return make

    async def _mark_packed(self, owner: int, item: Item) -> None:
        key = f"studio:pk{owner}:{item.unique_id}"
        try:
            await self._store.put_cutout(
                key, StoredCutout(item.file_id, item.name, time.time()), self._cache_ttl
            )
        except StorageUnavailable as err:
            logger.warning("Could not remember a packed sticker: %s", err)

    async def _add_to_pack(self, owner: int, name: str, username: str, result: Made) -> bool:
        """Add one sticker to the user's pack, making the pack first if needed (True)."""
        sticker = InputSticker(
            result.file_id if result.file_id is not None else (result.data or b""),
            emoji_list=[STICKER_EMOJI],
            format="static",
        )
        try:
            await self._bot.add_sticker_to_set(user_id=owner, name=name, sticker=sticker)
            return False
        except BadRequest as err:
            problem = err.message.lower()
            if "stickerset_invalid" not in problem:
                raise _pack_refusal(err, username) from err
        try:
            await self._bot.create_new_sticker_set(
                user_id=owner,
                name=name,
                title=messages.pack_title(username),
                stickers=[sticker],
            )
        except BadRequest as err:
            if "occupied" in err.message.lower():
                # Made meanwhile by another press or replica: add to it after all.
                try:
                    await self._bot.add_sticker_to_set(user_id=owner, name=name, sticker=sticker)
                except BadRequest as again:
                    raise _pack_refusal(again, username) from again
                return False
            raise _pack_refusal(err, username) from err
        return True

    # inline mode

    async def sticker_for(self, file_id: str, chat_id: int) -> str | None:
        """A sticker's file id for a cutout (made and uploaded to `chat_id` when not cached)."""
        try:
            telegram_file = await self._bot.get_file(file_id)
        except TelegramError as err:
            logger.info("No sticker for an inline cutout: %s", err)
            return None
        key = f"studio:st:{telegram_file.file_unique_id}"
        cached = await self._cached(key)
        if cached is not None:
            return cached.file_id
        try:
            data = bytes(await telegram_file.download_as_bytearray())
            result = await self._cpu.run(imaging.sticker, data)
            sent = await self._bot.send_sticker(
                chat_id=chat_id,
                sticker=InputFile(io.BytesIO(result), filename="sticker.webp"),
                emoji=STICKER_EMOJI,
                disable_notification=True,
            )
        except (TelegramError, imaging.ImagingError, CpuBusy, CpuWorkerLost) as err:
            logger.info("No sticker for an inline cutout: %s: %s", type(err).__name__, err)
            return None
        if sent.sticker is None:
            return None
        made = Made(Item(file_id, telegram_file.file_unique_id, "", None), key, "sticker.webp")
        await self._remember(made, sent.sticker.file_id)
        return sent.sticker.file_id

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to work that outlives its request (an inline sticker in progress)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _pack_refusal(err: BadRequest, username: str) -> Exception:
    problem = err.message.lower()
    if "stickers_too_much" in problem:
        return Refusal("pack_full", messages.pack_full)
    if "peer_id_invalid" in problem or "user not found" in problem:
        text = messages.pack_needs_start(username)
        return Refusal("needs_start", lambda: text)
    return err


class _KeyLock:
    """An asyncio lock per key, dropped once nobody holds or waits for it."""

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, list[int]]], key: str) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._locks.setdefault(self._key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._locks[self._key][0].release()
        self._leave()

    def _leave(self) -> None:
        _lock, users = self._locks[self._key]
        users[0] -= 1
        if users[0] == 0:
            del self._locks[self._key]
