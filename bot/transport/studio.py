"""The cutout studio on Telegram: the buttons under every cutout, presses, inline stickers.

A press works from what Telegram already holds: the cutout's `file_id` -> getFile -> download
-> a plain image function in the CPU pool -> one reply. No Freepik call, no rate-limit slot.
What a keyboard needs survives restarts: its callback data carries a versioned action code and
a storage token, the token's record (who may press, which cutouts) lives in the state store,
and a single cutout's own message can stand in for a lost record. Every result is cached by the
cutout's `file_unique_id` like cutouts are, so the same press twice is a re-send by `file_id`.

Where things are: actions, callback data, records and what a press computes in bot/studio/
(no Telegram code); a press's steps in bot/requests/presses.py; its Telegram calls in
bot/transport/surfaces/press.py; the keyboards in bot/transport/keyboards.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Sequence
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, InputFile, ReplyParameters
from telegram.error import TelegramError

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.imaging import edits as imaging
from bot.imaging.pool import CpuBusy, CpuPool, CpuWorkerLost
from bot.ops.metrics import Metrics
from bot.requests.presses import Presses
from bot.storage.base import StateStore
from bot.studio.actions import ACTIONS, Action
from bot.studio.callback import new_token
from bot.studio.making import Made, Maker, cache_key
from bot.studio.packs import STICKER_EMOJI
from bot.studio.records import Item, Records, SentFile
from bot.studio.waits import BACKGROUND_WAIT, Wait, Waits
from bot.studio.work import Workshop
from bot.transport.keyboards import main_keyboard
from bot.transport.migrations import Migrations

logger = logging.getLogger(__name__)


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
        background_wait: float = BACKGROUND_WAIT,
        wait_sweep: float = 10.0,
    ) -> None:
        self._bot = bot
        # Groups upgraded to supergroups: a press's replies follow them (bot/transport/handlers).
        self.migrations = migrations or Migrations()
        metrics = metrics or Metrics()
        self._metrics = metrics
        self._records = Records(store, cache_ttl=cache_ttl)
        self._maker = Maker(store, cpu, cache_ttl=cache_ttl)
        self.workshop = Workshop(self._maker)
        # Every press of the buttons runs here, as a ButtonPress (bot/transport/surfaces/press.py).
        self.presses = Presses(self._records, self.workshop, metrics=metrics)
        # My background's presses waiting for a photo (the photos that answer them go to
        # `Backgrounds`, bot/transport/surfaces/background.py, built beside the studio).
        self.waits = Waits(store, length=background_wait)
        self._wait_sweep = wait_sweep
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # keyboards

    def keyboard(self) -> tuple[str, InlineKeyboardMarkup]:
        """A new token and the keyboard for it; `remember` the documents once sent."""
        token = new_token()
        return token, main_keyboard(token)

    async def remember(
        self, token: str, owner: int, chat_id: int, documents: Sequence[SentFile]
    ) -> None:
        """Store a keyboard's record (best effort: a single cutout's message can stand in)."""
        await self._records.put(token, owner, chat_id, documents)

    async def follow_up(
        self, chat_id: int, owner: int, documents: Sequence[SentFile], reply_to: int
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

    # My background: the waits that run out

    def start(self) -> None:
        """Start looking for background waits that ran out (every replica looks; one ends each)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name="studio_waits"
            )

    async def aclose(self) -> None:
        """Stop looking for waits that ran out."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._wait_sweep)
            for wait in await self.waits.ran_out():
                await self._ran_out(wait)

    async def _ran_out(self, wait: Wait) -> None:
        """The one line that ends a wait nobody answered, in the owner's language."""
        with i18n.using(wait.locale):
            text = messages.background_timeout()
        reply = (
            ReplyParameters(message_id=wait.reply_to, allow_sending_without_reply=True)
            if wait.reply_to is not None
            else None
        )
        try:
            await self._bot.send_message(
                chat_id=wait.record.chat,
                text=text,
                reply_parameters=reply,
                message_thread_id=wait.thread_id,
            )
        except TelegramError as err:
            logger.info("Could not say a background wait ran out: %s", err)
        self._metrics.studio_press("my_background", "timeout")
        logger.info("studio user=%s action=my_background outcome=timeout", wait.record.owner)

    # inline mode

    async def sticker_for(self, file_id: str, chat_id: int) -> str | None:
        """A sticker's file id for a cutout (made and uploaded to `chat_id` when not cached)."""
        try:
            telegram_file = await self._bot.get_file(file_id)
        except TelegramError as err:
            logger.info("No sticker for an inline cutout: %s", err)
            return None
        action = ACTIONS[Action.STICKER]
        key = cache_key(action.kind, telegram_file.file_unique_id)
        cached = await self._maker.cached(key)
        if cached is not None:
            return cached.file_id
        try:
            data = bytes(await telegram_file.download_as_bytearray())
            result = await self._maker.compute(action, data)
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
        await self._maker.remember(made, sent.sticker.file_id)
        return sent.sticker.file_id

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to work that outlives its request (an inline sticker in progress)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
