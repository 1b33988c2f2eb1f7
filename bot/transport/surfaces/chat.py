"""A photo, file or link in a chat: a status reply, then the PNG document or an explanation."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from telegram import Bot, Message
from telegram.constants import ChatAction
from telegram.error import Forbidden, TelegramError

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.removal.cutouts import Produced
from bot.removal.pipeline import Cutout, JobTimings
from bot.removal.sources import ImageSource, SourceKind
from bot.requests.admission import Refusal
from bot.requests.credits import CREDITS_SCOPE
from bot.requests.journal import note_status_message
from bot.requests.kept import Claimed, KeptRequest, KeptRequests
from bot.requests.lifecycle import Lifecycle, Surface
from bot.requests.outcomes import Outcome, log_level
from bot.storage.base import StorageUnavailable, StoredCutout
from bot.transport.keyboards import packs_keyboard
from bot.transport.migrations import Migrations
from bot.transport.quiet import quietly
from bot.transport.studio import Studio
from bot.transport.surfaces.replies import ChatReplies
from bot.transport.uploads import upload_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A user asked, in a chat, for the background of one image to be removed."""

    source: ImageSource
    user_id: int
    chat_id: int
    message_id: int
    group: bool = False
    # The forum topic the request came from: replies, status and chat actions go there too.
    thread_id: int | None = None
    # The requester's language, fixed when the request is made: the job may run elsewhere.
    locale: str = field(default_factory=i18n.current_locale)
    # Kept when it ran out of credits and run now that a payment came (not sent again).
    kept: bool = False

    def to_kept(self) -> KeptRequest:
        """The form kept in storage until a payment comes."""
        return KeptRequest(
            self.source,
            self.user_id,
            self.chat_id,
            self.message_id,
            self.group,
            self.thread_id,
            self.locale,
            time.time(),
        )

    @classmethod
    def from_kept(cls, kept: KeptRequest) -> ChatRequest:
        """The request again, from storage."""
        return cls(
            kept.source,
            kept.user_id,
            kept.chat_id,
            kept.message_id,
            kept.group,
            kept.thread_id,
            kept.locale,
            kept=True,
        )


class ChatRemoval:
    """Turns a chat request into exactly one reply: the PNG document or an explanation."""

    def __init__(
        self,
        bot: Bot,
        lifecycle: Lifecycle,
        *,
        studio: Studio | None = None,
        migrations: Migrations | None = None,
        kept: KeptRequests | None = None,
    ) -> None:
        self._bot = bot
        self._lifecycle = lifecycle
        self._studio = studio
        self._kept = kept
        # Groups upgraded to supergroups (shared with the handlers and the studio).
        self._migrations = migrations or Migrations()

    async def process(self, request: ChatRequest) -> Outcome:
        """Run the whole request through the lifecycle."""
        surface = ChatSurface(self._bot, request, self._studio, self._migrations)
        credits = self._lifecycle.till.credits
        surface.packs = [(p.credits, p.stars) for p in credits.packs] if credits else []
        surface.kept = self._kept
        return await self._lifecycle.run(surface, request.source)

    async def take_kept(self, user_id: int, runner: str) -> KeptRun | None:
        """The user's request kept when it ran out of credits, claimed for `runner`.

        `runner` is the payment update running it. It stays in storage until `run_kept` has
        answered it: a crash before then leaves it for `runner`'s replay. None if there is
        none, or another update runs it.
        """
        if self._kept is None:
            return None
        try:
            claimed = await self._kept.claim(user_id, runner)
        except StorageUnavailable as err:
            logger.error("Could not take user %s's kept request: %s", user_id, err)
            return None
        if claimed is None:
            return None
        return KeptRun(ChatRequest.from_kept(claimed.request), claimed)

    async def run_kept(self, kept: KeptRun) -> Outcome:
        """Run a claimed kept request; once it has had its reply, it is kept no more."""
        outcome = await self.process(kept.request)
        if self._kept is not None:
            await self._kept.done(kept.claimed)
        return outcome


@dataclass(frozen=True, slots=True)
class KeptRun:
    """A kept chat request claimed by a payment, to give to `ChatRemoval.run_kept`."""

    request: ChatRequest
    claimed: Claimed


class ChatSurface(ChatReplies, Surface):
    """Replies in the request's chat (and topic), following a group that became a supergroup."""

    def __init__(
        self, bot: Bot, request: ChatRequest, studio: Studio | None, migrations: Migrations
    ) -> None:
        super().__init__(bot, migrations)
        self.chat_id = request.chat_id
        self._reply_to = request.message_id
        self._thread_id = request.thread_id
        self._request = request
        self._studio = studio
        self._status: Message | None = None
        # The packs on sale (credits, Stars), offered when a job is refused for want of credits.
        self.packs: list[tuple[int, int]] = []
        # Where such a request is kept until a payment comes (None: it is not).
        self.kept: KeptRequests | None = None
        self.kind = request.source.kind
        self.user_id = request.user_id
        self.locale = request.locale
        self.group_chat_id = request.chat_id if request.group else None

    async def refused(self, refusal: Refusal) -> None:
        """Say which limit refused the job and when to try again (or offer the packs)."""
        if refusal.scope == CREDITS_SCOPE and self.packs:
            kept = self.kept is not None and await self.kept.keep(self._request.to_kept())
            text = messages.out_of_removals(refusal.wait_text(), kept=kept)
            markup = packs_keyboard(self.packs)
            await quietly(
                self._message(text, markup), f"offer packs in chat {self._request.chat_id}"
            )
            return
        await self._reply_text(messages.rate_limited(refusal.wait_text(), refusal.scope))

    async def resend(self, stored: StoredCutout) -> None:
        """Send Telegram's copy of a cached cutout."""
        await self._send_document(stored.file_id)

    async def show_status(self, position: int) -> None:
        """Reply "queued"/"working" and show the upload action."""
        text = messages.queued(position) if position else messages.working()
        try:
            self._status = await self._message(text)
        except Forbidden:
            raise
        except TelegramError:
            await self._chat_action()  # the job goes on: show it is being made
            raise
        await note_status_message(self._status)
        await self._chat_action()

    async def working(self) -> None:
        """Turn "queued" into "working"."""
        if self._status is not None:
            await self._edit_quietly(self._status, messages.working())

    async def upload(self, cutout: Cutout) -> str | None:
        """Send the fresh PNG as the reply."""
        sent = await self._send_document(cutout)
        return sent.document.file_id if sent.document else None

    async def deliver(self, produced: Produced) -> str | None:
        """Send a cutout another request made: by file id if it has one, else the bytes."""
        if produced.file_id is not None:
            await self._send_document(produced.file_id)
            return produced.file_id
        if produced.cutout is None:
            raise RuntimeError("shared job produced neither bytes nor a file id")
        sent = await self._send_document(produced.cutout)
        return sent.document.file_id if sent.document else None

    async def succeeded(self, stored: StoredCutout) -> None:
        """The PNG is the reply: the status message goes."""
        if self._status is not None:
            status = self._status
            await quietly(
                self._bot.delete_message(chat_id=status.chat_id, message_id=status.message_id),
                f"delete status in chat {status.chat_id}",
            )

    async def explain(self, outcome: Outcome, text: str) -> None:
        """Turn the status message into the explanation; if it is gone, reply afresh."""
        if self._request.kept and (
            outcome is Outcome.SOURCE_UNAVAILABLE
            or (outcome is Outcome.REJECTED and self._request.source.kind is SourceKind.LINK)
        ):
            # Kept for the payment, the image could not be fetched any more: say so plainly.
            text = messages.kept_gone()
        if self._status is None or not await self._edit_quietly(self._status, text):
            await self._reply_text(text)

    def log(self, outcome: str, via: str, timings: JobTimings) -> None:
        """One line per job."""
        request = self._request
        logger.log(
            log_level(outcome),
            "job user=%s chat=%s kind=%s outcome=%s via=%s %s",
            request.user_id,
            request.chat_id,
            request.source.kind,
            outcome,
            via,
            timings.summary(),
        )

    async def _send_document(self, document: Cutout | str) -> Message:
        """Send the PNG (uploaded from a cutout, or Telegram's copy by file id)."""
        caption = messages.done_caption()
        # Every cutout carries the studio buttons (sticker, pack, background, crop).
        token, markup = self._studio.keyboard() if self._studio else (None, None)

        def send(chat_id: int, thread_id: int | None) -> Awaitable[Message]:
            # A fresh upload per attempt: a failed one has consumed its stream.
            upload = document if isinstance(document, str) else upload_file(document)
            return self._bot.send_document(
                chat_id=chat_id,
                document=upload,
                caption=caption,
                reply_parameters=self._reply(chat_id),
                message_thread_id=thread_id,
                disable_content_type_detection=True,
                reply_markup=markup,
            )

        sent = await self._to_chat(send)
        if self._studio is not None and token is not None and sent.document is not None:
            await self._studio.remember(token, self.user_id, sent.chat_id, [sent.document])
        return sent

    async def _reply_text(self, text: str) -> None:
        await quietly(self._message(text), f"reply to chat {self._request.chat_id}")

    async def _chat_action(self) -> None:
        def send(chat_id: int, thread_id: int | None) -> Awaitable[bool]:
            return self._bot.send_chat_action(
                chat_id=chat_id, action=ChatAction.UPLOAD_DOCUMENT, message_thread_id=thread_id
            )

        await quietly(self._to_chat(send), f"chat action in {self._request.chat_id}")

    async def _edit_quietly(self, status: Message, text: str) -> bool:
        return await quietly(
            self._bot.edit_message_text(
                chat_id=status.chat_id, message_id=status.message_id, text=text
            ),
            f"edit status in chat {status.chat_id}",
        )
