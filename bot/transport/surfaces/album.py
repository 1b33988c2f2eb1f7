"""An album in a private chat: one status, the cutouts back as albums, one summary of the rest."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from telegram import Bot, Document, InputFile, InputMediaDocument, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import Forbidden, TelegramError

from bot.i18n import messages
from bot.removal.cutouts import Produced
from bot.requests.admission import Refusal, format_wait
from bot.requests.batch import Batch, BatchSurface, Entry, State
from bot.requests.credits import CREDITS_SCOPE
from bot.requests.journal import note_status_message
from bot.requests.lifecycle import Lifecycle
from bot.requests.outcomes import Outcome
from bot.requests.rejected import rejected_file_ids
from bot.transport.albums import AlbumItem
from bot.transport.keyboards import packs_keyboard
from bot.transport.quiet import quietly
from bot.transport.studio import Studio
from bot.transport.uploads import upload_file

logger = logging.getLogger(__name__)


class AlbumRemoval:
    """Answers a collected album through the lifecycle: what `AlbumCollector` hands it to."""

    def __init__(self, bot: Bot, lifecycle: Lifecycle, *, studio: Studio | None = None) -> None:
        self._bot = bot
        self._lifecycle = lifecycle
        self._studio = studio

    async def process(self, user_id: int, chat_id: int, items: Sequence[AlbumItem]) -> None:
        """Run the album (its items in album order) to its one summary."""
        surface = AlbumSurface(self._bot, user_id, chat_id, items[0].message_id, self._studio)
        credits = self._lifecycle.till.credits
        surface.packs = [(p.credits, p.stars) for p in credits.packs] if credits else []
        await Batch(self._lifecycle, surface, [(i.source, i.problem) for i in items]).run()


class AlbumSurface(BatchSurface):
    """Replies to the album's first message: the status, albums of cutouts, the summary."""

    # sendMediaGroup takes 2-10 items.
    chunk_size = 10

    def __init__(
        self, bot: Bot, user_id: int, chat_id: int, reply_to: int, studio: Studio | None
    ) -> None:
        self._bot = bot
        self.user_id = user_id
        self.chat_id = chat_id
        self._reply_to = reply_to
        self._studio = studio
        self._status: Message | None = None
        # The cutouts as sent, for the one follow-up message with the studio buttons.
        self._documents: list[Document] = []
        # The packs on sale (credits, Stars), offered when the album lacks credits.
        self.packs: list[tuple[int, int]] = []

    async def show_status(self, count: int) -> None:
        """Reply "removing the background from N images" and show the upload action."""
        try:
            self._status = await self._bot.send_message(
                chat_id=self.chat_id,
                text=messages.album_working(count),
                reply_parameters=self._reply(),
            )
            await note_status_message(self._status)
        except Forbidden:
            raise
        except TelegramError:
            await self._chat_action()  # the jobs go on: show they are being made
            raise
        await self._chat_action()

    async def send(self, cutouts: Sequence[Produced]) -> Sequence[str | None]:
        """Send the cutouts as one album (a single one as a document); their file ids."""
        if len(cutouts) == 1:
            # sendMediaGroup needs at least two items.
            sent = [
                await self._bot.send_document(
                    chat_id=self.chat_id,
                    document=_media_file(cutouts[0], attach=False),
                    reply_parameters=self._reply(),
                    disable_content_type_detection=True,
                )
            ]
        else:
            media = [
                InputMediaDocument(
                    _media_file(produced, attach=True), disable_content_type_detection=True
                )
                for produced in cutouts
            ]
            sent = list(
                await self._bot.send_media_group(
                    chat_id=self.chat_id, media=media, reply_parameters=self._reply()
                )
            )
        self._documents.extend(m.document for m in sent if m.document)
        return [m.document.file_id if m.document else None for m in sent]

    async def rejected(self, file_ids: Sequence[str]) -> set[str]:
        """Ask Telegram (getFile) which cached file ids it no longer takes."""
        return await rejected_file_ids(self._bot, file_ids)

    async def follow_up(self) -> None:
        """Album cutouts cannot carry buttons: one message after them carries the studio's."""
        if self._studio is not None:
            await self._studio.follow_up(
                self.chat_id, self.user_id, self._documents, self._reply_to
            )

    async def succeeded(self) -> None:
        """The cutouts are the reply: the status message goes."""
        if self._status is not None:
            await quietly(
                self._bot.delete_message(chat_id=self.chat_id, message_id=self._status.message_id),
                f"delete status in chat {self.chat_id}",
            )

    async def explain(self, entries: Sequence[Entry]) -> None:
        """Turn the status into the summary; if it is gone, reply afresh."""
        text = summary(entries)
        if self._status is not None:
            edited = await quietly(
                self._bot.edit_message_text(
                    chat_id=self.chat_id, message_id=self._status.message_id, text=text
                ),
                f"edit status in chat {self.chat_id}",
            )
            if edited:
                return
        await quietly(
            self._bot.send_message(
                chat_id=self.chat_id, text=text, reply_parameters=self._reply()
            ),
            f"reply to chat {self.chat_id}",
        )

    async def refused(self, refusal: Refusal, entries: Sequence[Entry]) -> None:
        """Not enough credits for the album: how many are missing, and the packs."""
        if refusal.scope != CREDITS_SCOPE or not refusal.missing or not self.packs:
            await self.explain(entries)
            return
        await quietly(
            self._bot.send_message(
                chat_id=self.chat_id,
                text=messages.album_credits_missing(refusal.missing),
                reply_parameters=self._reply(),
                reply_markup=packs_keyboard(self.packs),
            ),
            f"offer packs in chat {self.chat_id}",
        )

    def log(self, counts: Mapping[State, int], seconds: float) -> None:
        """One line per album."""
        total = sum(counts.values())
        (logger.info if counts[State.OK] == total else logger.warning)(
            "album user=%s chat=%s items=%d ok=%d failed=%d limited=%d total=%.3fs",
            self.user_id,
            self.chat_id,
            total,
            counts[State.OK],
            counts[State.FAILED] + counts[State.PENDING],
            counts[State.LIMITED],
            seconds,
        )

    async def _chat_action(self) -> None:
        await quietly(
            self._bot.send_chat_action(chat_id=self.chat_id, action=ChatAction.UPLOAD_DOCUMENT),
            f"chat action in {self.chat_id}",
        )

    def _reply(self) -> ReplyParameters:
        return ReplyParameters(message_id=self._reply_to, allow_sending_without_reply=True)


def summary(entries: Sequence[Entry]) -> str:
    """One line per reason, naming the images it applies to."""
    ok = sum(1 for e in entries if e.state is State.OK)
    reasons: dict[str, list[int]] = {}
    limited = [e for e in entries if e.state is State.LIMITED]
    for entry in entries:
        if entry.state in (State.FAILED, State.PENDING):
            reasons.setdefault(_reason(entry), []).append(entry.number)
    lines = [messages.album_summary_header(ok, len(entries))]
    # One line per kind of refusal: the day's budget, want of credits, a rate limit.
    by_scope: dict[str, list[Entry]] = {}
    for entry in limited:
        scope = entry.refusal.scope if entry.refusal is not None else "user"
        by_scope.setdefault(scope if scope in ("budget", CREDITS_SCOPE) else "user", []).append(
            entry
        )
    for scope, group in by_scope.items():
        waits = [e.refusal.retry_after for e in group if e.refusal is not None]
        wait_text = format_wait(max(waits, default=60.0))
        numbers = [e.number for e in group]
        reason = messages.album_limited_reason(len(numbers), wait_text, scope)
        lines.append(messages.album_summary_line(messages.album_image_names(numbers), reason))
    lines.extend(
        messages.album_summary_line(messages.album_image_names(numbers), reason)
        for reason, numbers in reasons.items()
    )
    return "\n".join(lines)


def _reason(entry: Entry) -> str:
    """The short reason one image did not come back."""
    if entry.outcome is Outcome.BAD_INPUT:
        return messages.album_problem_reason(entry.problem or messages.not_an_image())
    return messages.album_outcome_reason(entry.outcome or Outcome.INTERNAL_ERROR)


def _media_file(produced: Produced, *, attach: bool) -> InputFile | str:
    """Telegram's copy when there is one (no re-upload), else the PNG bytes."""
    if produced.file_id is not None:
        return produced.file_id
    assert produced.cutout is not None
    # Inside a media group a file must be referenced as attach://<name>; alone it is a plain part.
    return upload_file(produced.cutout, attach=attach)
