"""Callback buttons and stickers in the fake Bot API, with Telegram's rules and error texts.

Error texts: Bot API errors for these methods pass Telegram's own (MTProto) error names through
("Bad Request: STICKERSET_INVALID", "STICKERS_TOO_MUCH", "PEER_ID_INVALID",
"STICKER_PNG_DIMENSIONS"), while a few have Bot API wordings ("sticker set name invalid",
"sticker set name is already occupied", "message is not modified: ...", "query is too old ...").
"""

from __future__ import annotations

import io
import json
import re
import time
from typing import TYPE_CHECKING, Any

from PIL import Image

from tests.fakes.forms import UploadedFile
from tests.fakes.tg_state import ApiError, JsonDict, StoredFile, TelegramState, bad_request

Files = dict[str, UploadedFile]

# The same text as answerInlineQuery's (tg_methods.QUERY_TOO_OLD).
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
MAX_CALLBACK_TEXT = 200
MAX_CALLBACK_DATA = 64
MAX_NAME_AND_TITLE = 64
MAX_INITIAL_STICKERS = 50
MAX_STATIC_STICKERS = 120
MAX_EMOJIS = 20
STICKER_SIDE = 512
MAX_STATIC_STICKER_BYTES = 512 * 1024
_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def sticker_object(
    stored: StoredFile, width: int, height: int, set_name: str | None, emoji: str | None
) -> JsonDict:
    """A Sticker as the Bot API returns it."""
    sticker: JsonDict = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "type": "regular",
        "width": width,
        "height": height,
        "is_animated": False,
        "is_video": False,
        "file_size": stored.file_size,
    }
    if set_name:
        sticker["set_name"] = set_name
    if emoji:
        sticker["emoji"] = emoji
    return sticker


def check_inline_keyboard(markup: Any) -> None:
    """Reject callback data Telegram refuses (1-64 bytes)."""
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        return
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request(
            "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not str(button.get("text", "")).strip():
                raise bad_request("BUTTON_TEXT_INVALID")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise bad_request("BUTTON_DATA_INVALID")


def _static_sticker_size(data: bytes) -> tuple[int, int]:
    """Check uploaded bytes as a static sticker: WEBP or PNG, 512 px rule, 512 KB."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, size = image.format, image.size
            image.load()
    except Exception as err:
        raise bad_request("STICKER_PNG_NOPNG") from err
    if fmt not in ("WEBP", "PNG"):
        raise bad_request("STICKER_PNG_NOPNG")
    if max(size) != STICKER_SIDE or min(size) < 1:
        raise bad_request("STICKER_PNG_DIMENSIONS")
    if len(data) > MAX_STATIC_STICKER_BYTES:
        raise bad_request("file is too big")
    return size


class StudioMethods:
    """answerCallbackQuery, editMessageReplyMarkup and the sticker methods."""

    state: TelegramState

    if TYPE_CHECKING:

        def _chat_of(self, params: JsonDict) -> JsonDict: ...

        def _own_message(self, params: JsonDict) -> JsonDict: ...

        def _common(self, params: JsonDict, chat: JsonDict) -> JsonDict: ...

        def _input_file(self, value: Any, files: Files, field: str, kind: str) -> StoredFile: ...

    async def m_answer_callback_query(self, params: JsonDict, files: Files) -> bool:
        """answerCallbackQuery: once per query, while it is fresh; toast text up to 200."""
        query_id = str(params.get("callback_query_id"))
        text = params.get("text")
        if text is not None and len(str(text).encode("utf-16-le")) // 2 > MAX_CALLBACK_TEXT:
            raise bad_request("MESSAGE_TOO_LONG")
        with self.state.lock:
            pushed_at = self.state.callback_queries.pop(query_id, None)
            if pushed_at is None or time.monotonic() - pushed_at > self.state.callback_query_ttl:
                raise bad_request(QUERY_TOO_OLD)
            self.state.callback_answers[query_id] = dict(params)
        return True

    async def m_edit_message_reply_markup(self, params: JsonDict, files: Files) -> JsonDict | bool:
        """editMessageReplyMarkup of the bot's own message; the same markup is refused."""
        markup = params.get("reply_markup")
        check_inline_keyboard(markup)
        if params.get("inline_message_id"):
            return True
        found = self._own_message(params)
        new = markup if isinstance(markup, dict) and markup.get("inline_keyboard") else None
        if found.get("reply_markup") == new:
            raise bad_request(NOT_MODIFIED)
        edited = dict(found, edit_date=int(time.time()))
        if new is None:
            edited.pop("reply_markup", None)
        else:
            edited["reply_markup"] = new
        self.state.remember_message(edited)
        return edited

    async def m_send_sticker(self, params: JsonDict, files: Files) -> JsonDict:
        """sendSticker: a static WEBP/PNG upload (512 px rule) or a sticker's file_id."""
        chat = self._chat_of(params)
        value = params.get("sticker")
        if isinstance(value, str) and not value.startswith("attach://"):
            stored = self._input_file(value, files, "sticker", "sticker")
            if stored.kind != "sticker":
                raise bad_request("type of file mismatch")
        else:
            upload = files.get("sticker") if value is None else None
            if isinstance(value, str):
                upload = files.get(value.removeprefix("attach://"))
            if upload is None:
                raise bad_request("there is no sticker in the request")
            _static_sticker_size(upload.data)
            stored = self.state.store_file(
                upload.data, kind="sticker", mime_type="image/webp", file_name=upload.filename
            )
        width, height = _static_sticker_size(stored.data)
        sticker = sticker_object(stored, width, height, None, params.get("emoji"))
        return self.state.new_message(chat, sticker=sticker, **self._common(params, chat))

    def _owner(self, params: JsonDict) -> int:
        user_id = params.get("user_id")
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            raise bad_request("USER_ID_INVALID")
        with self.state.lock:
            started = user_id in self.state.started_users
            blocked = user_id in self.state.blocked
        if blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if not started:
            # The user never opened a private chat with the bot.
            raise bad_request("PEER_ID_INVALID")
        return user_id

    def _input_sticker(self, raw: Any, files: Files, set_name: str) -> JsonDict:
        """Validate one InputSticker and store its file as a new sticker of the set."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError as err:
                raise bad_request("can't parse InputSticker JSON object") from err
        if not isinstance(raw, dict):
            raise bad_request("can't parse InputSticker JSON object")
        if raw.get("format") != "static":
            raise bad_request("the fake only takes static stickers")
        emojis = raw.get("emoji_list")
        if not isinstance(emojis, list) or not 1 <= len(emojis) <= MAX_EMOJIS:
            raise bad_request("STICKER_EMOJI_INVALID")
        if not all(isinstance(e, str) and e.strip() for e in emojis):
            raise bad_request("STICKER_EMOJI_INVALID")
        source = self._input_file(raw.get("sticker"), files, "sticker", "sticker")
        width, height = _static_sticker_size(source.data)
        stored = self.state.store_file(
            source.data, kind="sticker", mime_type="image/webp", file_name="sticker.webp"
        )
        # Same picture, same unique id: "exactly the same sticker" is recognised by it.
        stored.file_unique_id = source.file_unique_id
        return sticker_object(stored, width, height, set_name, emojis[0])

    def _set_name(self, params: JsonDict) -> str:
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("sticker set name invalid")
        return name

    async def m_create_new_sticker_set(self, params: JsonDict, files: Files) -> bool:
        """createNewStickerSet with the name, title, owner and sticker rules."""
        owner = self._owner(params)
        name = self._set_name(params)
        suffix = f"_by_{self.state.username}".lower()
        if (
            len(name) > MAX_NAME_AND_TITLE
            or not _SET_NAME.fullmatch(name)
            or "__" in name
            or not name.lower().endswith(suffix)
            or len(name) == len(suffix)
        ):
            raise bad_request("sticker set name invalid")
        title = params.get("title")
        if not isinstance(title, str) or not 1 <= len(title) <= MAX_NAME_AND_TITLE:
            raise bad_request("PACK_TITLE_INVALID")
        if params.get("sticker_type") not in (None, "regular"):
            raise bad_request("the fake only makes regular sticker sets")
        raw = params.get("stickers")
        if isinstance(raw, str):
            raw = json.loads(raw)
        if not isinstance(raw, list) or not raw:
            raise bad_request("STICKERS_EMPTY")
        if len(raw) > MAX_INITIAL_STICKERS:
            raise bad_request("STICKERS_TOO_MUCH")
        with self.state.lock:
            if name.lower() in self.state.sticker_sets:
                raise bad_request("sticker set name is already occupied")
        stickers = [self._input_sticker(item, files, name) for item in raw]
        with self.state.lock:
            if name.lower() in self.state.sticker_sets:
                raise bad_request("sticker set name is already occupied")
            self.state.sticker_sets[name.lower()] = {
                "name": name,
                "title": title,
                "sticker_type": "regular",
                "owner": owner,
                "stickers": stickers,
            }
        return True

    async def m_add_sticker_to_set(self, params: JsonDict, files: Files) -> bool:
        """addStickerToSet: the owner's set made by this bot, up to 120 static stickers."""
        owner = self._owner(params)
        name = self._set_name(params)
        with self.state.lock:
            found = self.state.sticker_sets.get(name.lower())
            if found is None or found["owner"] != owner:
                raise bad_request("STICKERSET_INVALID")
            if len(found["stickers"]) >= MAX_STATIC_STICKERS:
                raise bad_request("STICKERS_TOO_MUCH")
        sticker = self._input_sticker(params.get("sticker"), files, found["name"])
        with self.state.lock:
            if len(found["stickers"]) >= MAX_STATIC_STICKERS:
                raise bad_request("STICKERS_TOO_MUCH")
            known = {s["file_unique_id"] for s in found["stickers"]}
            if sticker["file_unique_id"] not in known:  # the same sticker again: no change
                found["stickers"].append(sticker)
        return True

    async def m_get_sticker_set(self, params: JsonDict, files: Files) -> JsonDict:
        """getStickerSet."""
        name = params.get("name")
        with self.state.lock:
            found = self.state.sticker_sets.get(str(name).lower()) if name else None
            if found is None:
                raise bad_request("STICKERSET_INVALID")
            return {
                "name": found["name"],
                "title": found["title"],
                "sticker_type": found["sticker_type"],
                "stickers": [dict(s) for s in found["stickers"]],
            }
