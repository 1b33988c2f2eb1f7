"""Where a studio job's results go: documents, stickers and the pack, in one chat and topic.

Shared by a button press (bot/transport/surfaces/press.py) and the photo that answers a My
background press (bot/transport/surfaces/background.py): getFile, sendSticker / sendDocument /
sendMediaGroup, the user's sticker pack, and replies that follow a group upgraded to a
supergroup.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Sequence

from telegram import (
    InputFile,
    InputMediaDocument,
    Message,
)
from telegram.error import BadRequest

from bot.i18n import messages
from bot.studio.actions import Delivery
from bot.studio.making import Declined, Made
from bot.studio.packs import STICKER_EMOJI, pack_link, pack_name
from bot.studio.records import Item
from bot.studio.work import Sent
from bot.transport.migrations import Send
from bot.transport.packs import add_sticker
from bot.transport.surfaces.replies import ChatReplies

logger = logging.getLogger(__name__)

# getFile hands out files up to 20 MB (MB as Telegram counts them).
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
# sendMediaGroup takes 2-10 items.
ALBUM_SIZE = 10


class ChatOutlet(ChatReplies):
    """Results as replies to one message, in its chat and forum topic."""

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


def _upload(made: Made, *, attach: bool = False) -> InputFile | str:
    """The file id when cached, else the bytes as an upload."""
    if made.file_id is not None:
        return made.file_id
    assert made.data is not None
    return InputFile(
        io.BytesIO(made.data), filename=made.file_name, attach=attach, read_file_handle=False
    )
