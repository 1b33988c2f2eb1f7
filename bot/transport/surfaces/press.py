"""A press of a studio button: the callback answer at once, results in the chat, or a toast.

The press lifecycle (bot/requests/presses.py) runs the steps; this is every Telegram call they
need: answerCallbackQuery, editMessageReplyMarkup, and (from `ChatOutlet`) getFile, the results
and the user's sticker pack; My background's question, and its wait in the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from telegram import Bot, CallbackQuery, Message
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError

from bot.i18n import messages
from bot.i18n.locales import current_locale
from bot.requests.presses import PressSurface
from bot.studio.actions import Keyboard
from bot.studio.records import Item, Record
from bot.studio.waits import Waits
from bot.transport.keyboards import KEYBOARDS
from bot.transport.migrations import Migrations
from bot.transport.surfaces.outlet import ChatOutlet

logger = logging.getLogger(__name__)


class ButtonPress(ChatOutlet, PressSurface):
    """Answers one callback query and replies under the pressed message (and in its topic)."""

    def __init__(
        self, bot: Bot, query: CallbackQuery, migrations: Migrations, waits: Waits
    ) -> None:
        super().__init__(bot, migrations)
        self._query = query
        self._waits = waits
        self.user_id = query.from_user.id
        self.data = query.data
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

    async def ask(self, record: Record) -> None:
        """My background: wait for the owner's next photo here, and ask for it (one message)."""
        here = Record(record.owner, self.chat_id, record.items)
        wait = self._waits.new(here, self._reply_to, self._thread_id, current_locale())
        again = await self._waits.start(wait)  # before the question: a photo may follow fast
        message = self._query.message
        private = (
            message.chat.type == ChatType.PRIVATE
            if isinstance(message, Message)
            else self.chat_id == record.owner
        )
        text = messages.background_ask() if private else messages.background_ask_group()
        if again:
            text = f"{messages.background_ask_again()}\n{text}"
        await self._message(text)
