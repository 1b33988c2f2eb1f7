"""A press of a studio button: the callback answer at once, results in the chat, or a toast.

The press lifecycle (bot/requests/presses.py) runs the steps; this is every Telegram call they
need: answerCallbackQuery, getFile, sendSticker / sendDocument / sendMediaGroup, the user's
sticker pack, and a reply that follows a group upgraded to a supergroup.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from telegram import (
    Bot,
    CallbackQuery,
    InputFile,
    InputMediaDocument,
    Message,
    ReplyParameters,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError

from bot.i18n import messages
from bot.requests.presses import PressSurface
from bot.studio.actions import Delivery, Keyboard
from bot.studio.making import Declined, Made
from bot.studio.packs import STICKER_EMOJI, pack_link, pack_name
from bot.studio.records import Item, Record
from bot.studio.work import Sent
from bot.transport.keyboards import KEYBOARDS
from bot.transport.migrations import Migrations, Send
from bot.transport.packs import add_sticker

logger = logging.getLogger(__name__)

T = TypeVar("T")

# getFile hands out files up to 20 MB (MB as Telegram counts them).
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
# sendMediaGroup takes 2-10 items.
ALBUM_SIZE = 10


class ButtonPress(PressSurface):
    """Answers one callback query and replies under the pressed message (and in its topic)."""

    def __init__(self, bot: Bot, query: CallbackQuery, migrations: Migrations) -> None:
        self._bot = bot
        self._query = query
        self._migrations = migrations
        self.user_id = query.from_user.id
        self.data = query.data
        self._reply_to: int | None = None
        self._thread_id: int | None = None
        self._answered = False

    def stand_in(self) -> Record | None:
        """A single cutout's record from its own message: its document and who asked for it."""
        # The stored record is gone (memory store restarted, expired, storage down): the
        # cutout's message holds its document and its owner (the private chat, or the sender
        # of the message the cutout replies to).
        message = self._query.message
        if not isinstance(message, Message) or message.document is None:
            return None
        if message.chat.type == ChatType.PRIVATE:
            owner = message.chat.id
        elif message.reply_to_message is not None and message.reply_to_message.from_user:
            owner = message.reply_to_message.from_user.id
        else:
            return None
        return Record(owner, message.chat.id, (Item.of(message.document),))

    def place(self, record: Record) -> None:
        """Reply to the pressed message, in its topic; the record's chat if it is too old."""
        message = self._query.message
        if isinstance(message, Message):
            self.chat_id = message.chat.id
            self._reply_to = message.message_id
            if message.is_topic_message:
                self._thread_id = message.message_thread_id
        else:  # too old for Telegram to include: the record knows the chat
            self.chat_id = record.chat

    async def answer(self, text: str | None) -> None:
        """answerCallbackQuery, once (a toast with `text`)."""
        if self._answered:
            return
        self._answered = True
        try:
            await self._query.answer(text=text)
        except TelegramError as err:
            # Too late for a toast ("query is too old"): the reply still follows.
            logger.info("Could not answer a button press: %s", err)

    async def switch(self, keyboard: Keyboard, token: str) -> None:
        """Edit the pressed message's buttons (a double tap changes nothing)."""
        message = self._query.message
        if not isinstance(message, Message):
            return
        try:
            await self._bot.edit_message_reply_markup(
                chat_id=message.chat.id,
                message_id=message.message_id,
                reply_markup=KEYBOARDS[keyboard](token),
            )
        except BadRequest as err:
            # A double tap: the keyboard already shows what was asked for.
            if "not modified" not in err.message.lower():
                raise

    async def explain(self, text: Callable[[], str]) -> None:
        """A toast while the press is unanswered, else a message replying to the cutout."""
        if not self._answered:
            await self.answer(text()[:200])
            return
        if not self.chat_id:
            return
        try:
            await self._message(text())
        except TelegramError as err:
            logger.warning("Could not explain a button press in chat %s: %s", self.chat_id, err)

    async def download(self, item: Item) -> bytes:
        """The cutout's bytes from Telegram (getFile hands out files up to 20 MB)."""
        if item.size is not None and item.size > MAX_DOWNLOAD_BYTES:
            raise Declined("too_large", messages.studio_too_large)
        try:
            telegram_file = await self._bot.get_file(item.file_id)
            data = await telegram_file.download_as_bytearray()
        except BadRequest as err:
            if "too big" in err.message.lower():
                raise Declined("too_large", messages.studio_too_large) from err
            logger.warning("Could not get a cutout from Telegram: %s", err.message)
            raise Declined("gone", messages.studio_gone) from err
        return bytes(data)

    async def send(self, delivery: Delivery, made: Sequence[Made], sent: Sent) -> None:
        """Stickers one by one; documents one, or an album of up to ten, at a time."""
        if delivery is Delivery.STICKER:
            for result in made:
                message = await self._to_chat(self._sticker(result))
                await sent(result, message.sticker.file_id if message.sticker else None)
            return
        for start in range(0, len(made), ALBUM_SIZE):
            chunk = made[start : start + ALBUM_SIZE]
            if len(chunk) == 1:
                messages_sent = [await self._to_chat(self._document(chunk[0]))]
            else:
                messages_sent = list(await self._to_chat(self._album(chunk)))
            for result, message in zip(chunk, messages_sent, strict=False):
                await sent(result, message.document.file_id if message.document else None)

    async def add_to_pack(self, owner: int, made: Made) -> bool:
        """Add one sticker to the owner's pack, making the pack first if needed (True)."""
        return await add_sticker(self._bot, owner, made)

    async def packed(self, owner: int, added: int, created: bool) -> None:
        """Say how many stickers went into the pack, with its link."""
        link = pack_link(pack_name(owner, self._bot.username))
        reply = messages.pack_created if created else messages.pack_added
        await self._message(reply(link, added))

    def _sticker(self, result: Made) -> Send[Message]:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[Message]:
            return self._bot.send_sticker(
                chat_id=chat_id,
                sticker=_upload(result),
                emoji=STICKER_EMOJI,
                reply_parameters=self._reply(chat_id),
                message_thread_id=thread_id,
            )

        return send

    def _document(self, result: Made) -> Send[Message]:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[Message]:
            return self._bot.send_document(
                chat_id=chat_id,
                document=_upload(result),
                reply_parameters=self._reply(chat_id),
                message_thread_id=thread_id,
                disable_content_type_detection=True,
            )

        return send

    def _album(self, chunk: Sequence[Made]) -> Send[tuple[Message, ...]]:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[tuple[Message, ...]]:
            # Fresh uploads per attempt: a refused one has used up its streams.
            media = [
                InputMediaDocument(_upload(r, attach=True), disable_content_type_detection=True)
                for r in chunk
            ]
            return self._bot.send_media_group(
                chat_id=chat_id,
                media=media,
                reply_parameters=self._reply(chat_id),
                message_thread_id=thread_id,
            )

        return send

    async def _message(self, text: str) -> Message:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[Message]:
            return self._bot.send_message(
                chat_id=chat_id,
                text=text,
                reply_parameters=self._reply(chat_id),
                message_thread_id=thread_id,
            )

        return await self._to_chat(send)

    async def _to_chat(self, send: Send[T]) -> T:
        """Send to the press's chat (and topic); if the group became a supergroup, there."""
        return await self._migrations.send(self.chat_id, self._thread_id, send)

    def _reply(self, chat_id: int) -> ReplyParameters | None:
        # The message pressed under stayed behind in the basic group: nothing to reply to.
        if self._reply_to is None or chat_id != self.chat_id:
            return None
        return ReplyParameters(message_id=self._reply_to, allow_sending_without_reply=True)


def _upload(made: Made, *, attach: bool = False) -> InputFile | str:
    """The file id when cached, else the bytes as an upload."""
    if made.file_id is not None:
        return made.file_id
    assert made.data is not None
    return InputFile(
        io.BytesIO(made.data), filename=made.file_name, attach=attach, read_file_handle=False
    )
