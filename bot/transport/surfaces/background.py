"""The photo that answers a My background press: the subject on it, and never a removal.

A press of My background (bot/transport/surfaces/press.py) leaves a wait in the state store
(bot/studio/waits.py). Every photo, image file, text or other message a user sends in a private
chat, and every reply to the bot in a group, is offered here before anything else looks at it:
while that user waits in that chat, the message is this flow's, so no Freepik call, no credit
and no rate-limit slot is spent on it. A photo becomes the background of every cutout of the
pressed keyboard (one JPEG document each, made with `with_background` in the CPU pool, cached
per photo and cutout); anything else is explained and the wait goes on. Each such message gets
exactly one reply, one log line and one count of `nobg_studio_presses_total`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from telegram import Bot, Message
from telegram.constants import ChatType
from telegram.error import Forbidden, TelegramError

from bot.i18n import messages
from bot.imaging import edits as imaging
from bot.imaging.pool import CpuBusy, CpuPool, CpuWorkerLost
from bot.ops.metrics import Metrics
from bot.removal.sources import image_type_from_name
from bot.storage.base import StorageUnavailable
from bot.studio.actions import ACTIONS, Action
from bot.studio.making import Backdrop, BackdropRefused, Declined
from bot.studio.records import Item
from bot.studio.waits import Wait, Waits
from bot.studio.work import Workshop
from bot.transport.migrations import Migrations
from bot.transport.surfaces.outlet import MAX_DOWNLOAD_BYTES, ChatOutlet

logger = logging.getLogger(__name__)


def background_item(message: Message) -> Item | None:
    """The photo (largest size) or image file of `message`, if it has one."""
    if message.photo:
        largest = message.photo[-1]
        return Item(largest.file_id, largest.file_unique_id, "background.jpg", largest.file_size)
    document = message.document
    if document is None:
        return None
    mime = (document.mime_type or "").lower()
    name = (document.file_name or "").lower()
    if mime.startswith("image/") or image_type_from_name(name):
        return Item(
            document.file_id, document.file_unique_id, name or "background", document.file_size
        )
    return None


class BackgroundReply(ChatOutlet):
    """A My background job's results and explanations, as replies to the user's photo."""

    def __init__(self, bot: Bot, migrations: Migrations, message: Message) -> None:
        super().__init__(bot, migrations)
        self.chat_id = message.chat_id
        self._reply_to = message.message_id
        self._thread_id = message.message_thread_id if message.is_topic_message else None

    async def say(self, text: Callable[[], str]) -> None:
        """One line in reply to the user's message."""
        await self._message(text())


class Backgrounds:
    """Takes the message a My background press waits for, before a removal could start."""

    def __init__(
        self,
        bot: Bot,
        waits: Waits,
        workshop: Workshop,
        cpu: CpuPool,
        migrations: Migrations,
        metrics: Metrics,
    ) -> None:
        self._bot = bot
        self._waits = waits
        self._workshop = workshop
        self._cpu = cpu
        self._migrations = migrations
        self._metrics = metrics

    async def offer(self, message: Message, user_id: int) -> bool:
        """True when `message` was for the user's wait here (and got its one reply)."""
        # An album is several photos: it is removed as usual (and the wait goes on).
        if message.media_group_id:
            return False
        if message.chat.type != ChatType.PRIVATE and not self._replies_to_bot(message):
            return False  # in a group only a reply to the bot is meant for it
        item = background_item(message)
        try:
            if item is None:
                wait = await self._waits.current(message.chat_id, user_id)
            else:  # taken at once: one photo, one job, whichever replica has it
                wait = await self._waits.take(message.chat_id, user_id)
        except StorageUnavailable as err:
            # Nothing known of a wait: the message is handled as if there were none.
            logger.warning("Could not look for a background wait: %s", err)
            return False
        if wait is None:
            return False
        started = time.monotonic()
        reply = BackgroundReply(self._bot, self._migrations, message)
        outcome = "internal_error"
        try:
            outcome = await self._answer(reply, message, wait, item)
        except Forbidden as err:
            logger.warning("Cannot answer a background photo in chat %s: %s", reply.chat_id, err)
            outcome = "undeliverable"
        except Exception:
            logger.exception("Unexpected error with a background photo")
            await self._say(reply, messages.studio_failed)
        finally:
            self._metrics.studio_press("my_background", outcome)
            logger.info(
                "studio user=%s action=my_background items=%d outcome=%s total=%.3fs",
                user_id,
                len(wait.record.items),
                outcome,
                time.monotonic() - started,
            )
        return True

    async def _answer(
        self, reply: BackgroundReply, message: Message, wait: Wait, item: Item | None
    ) -> str:
        if item is None:
            waiting = message.text is not None and not message.text.startswith("/")
            await reply.say(
                messages.background_waiting if waiting else messages.background_not_a_photo
            )
            return "waiting" if waiting else "not_a_photo"
        backdrop = Backdrop(item, functools.partial(self._usable, reply, item))
        try:
            action = ACTIONS[Action.MY_BACKGROUND]
            await self._workshop.run(action, wait.record, reply, on=backdrop)
        except BackdropRefused as refused:
            await self._waits.put_back(wait)  # the wait goes on, with its own deadline
            await self._say(reply, refused.text)
            return refused.outcome
        except Declined as declined:
            await self._say(reply, declined.text)
            return declined.outcome
        return "ok"

    async def _usable(self, reply: BackgroundReply, item: Item) -> bytes:
        """The photo's bytes if it can be a background (downloadable, readable, <= 25 MP)."""
        unusable = BackdropRefused("unusable", messages.background_unusable)
        if item.size is not None and item.size > MAX_DOWNLOAD_BYTES:
            raise unusable
        try:
            data = await reply.download(item)
            await self._cpu.run(imaging.check_size, data)
        except (Declined, imaging.ImagingError) as err:
            logger.info("Background photo refused: %s: %s", type(err).__name__, err)
            raise unusable from err
        except (CpuBusy, CpuWorkerLost) as err:
            raise BackdropRefused("busy", messages.studio_busy) from err
        return data

    def _replies_to_bot(self, message: Message) -> bool:
        replied = message.reply_to_message
        return bool(replied and replied.from_user and replied.from_user.id == self._bot.id)

    async def _say(self, reply: BackgroundReply, text: Callable[[], str]) -> None:
        try:
            await reply.say(text)
        except TelegramError as err:
            logger.warning("Could not answer a background photo in %s: %s", reply.chat_id, err)
