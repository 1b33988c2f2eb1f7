"""Factories for Bot API update payloads (plain dicts in the JSON shape Telegram sends)."""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from typing import Any

JsonDict = dict[str, Any]

_inline_ids = itertools.count(1)

# Telegram numbers every message of a chat, the users' and the bot's, in one sequence. The fake
# draws its own messages from here too, so a message made here never takes the id of one the
# bot sent (the fake would overwrite it). Process-wide: fakes are many, chats' ids are few.
_last_message_ids: dict[int, int] = {}
_ids_lock = threading.Lock()

# Bare domains are only linked by Telegram when the TLD is real; a small sample suffices here.
_TLDS = frozenset(
    [
        "com",
        "org",
        "net",
        "io",
        "ru",
        "de",
        "uk",
        "co",
        "app",
        "dev",
        "me",
        "info",
        "biz",
        "xyz",
        "ai",
        "us",
        "eu",
        "fr",
        "it",
        "es",
        "nl",
        "jp",
        "cn",
        "in",
        "br",
        "ca",
        "au",
        "ly",
        "gl",
        "tv",
        "edu",
        "gov",
        "pl",
        "se",
        "ch",
        "be",
        "at",
        "cz",
        "ua",
        "kz",
        "by",
    ]
)
_SCHEME_URL = re.compile(r"(?:https?|ftp)://[^\s<>\"]+", re.IGNORECASE)
_BARE_URL = re.compile(
    r"(?<![\w@/.-])((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))"
    r"(?::\d{1,5})?(?:/[^\s<>\"]*)?"
)
_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")
_TRAILING = ".,;:!?)]}'\""


def next_message_id(chat_id: int) -> int:
    """The next message_id of a chat, in the sequence the fake's own messages share."""
    with _ids_lock:
        message_id = _last_message_ids.get(chat_id, 0) + 1
        _last_message_ids[chat_id] = message_id
    return message_id


def note_message_id(chat_id: int, message_id: int) -> None:
    """Move a chat's sequence past an id given explicitly, so no later message takes it."""
    with _ids_lock:
        _last_message_ids[chat_id] = max(_last_message_ids.get(chat_id, 0), message_id)


def sent_again(message: JsonDict) -> JsonDict:
    """The same content sent again by its user: a new message with the chat's next id."""
    return dict(message, message_id=next_message_id(message["chat"]["id"]))


def utf16_len(text: str) -> int:
    """Length of text in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _entity(text: str, start: int, end: int, kind: str) -> JsonDict:
    return {"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(text[start:end])}


def _trim(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in _TRAILING:
        end -= 1
    return end


def detect_entities(text: str) -> list[JsonDict]:
    """The url and bot_command entities Telegram would attach to text."""
    spans: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    for match in _SCHEME_URL.finditer(text):
        end = _trim(text, match.start(), match.end())
        spans.append((match.start(), end, "url"))
        taken.append((match.start(), end))
    for match in _BARE_URL.finditer(text):
        if match.group(2).lower() not in _TLDS:
            continue
        if any(a <= match.start() < b for a, b in taken):
            continue
        end = _trim(text, match.start(), match.end())
        spans.append((match.start(), end, "url"))
        taken.append((match.start(), end))
    for match in _COMMAND.finditer(text):
        if not any(a <= match.start() < b for a, b in taken):
            spans.append((match.start(), match.end(), "bot_command"))
    spans.sort()
    return [_entity(text, start, end, kind) for start, end, kind in spans]


def private_user(
    user_id: int, first_name: str = "Ann", username: str | None = None, **extra: Any
) -> JsonDict:
    """A human User."""
    user: JsonDict = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        user["username"] = username
    user.setdefault("language_code", "en")
    user.update(extra)
    return user


def private_chat(user: JsonDict) -> JsonDict:
    """The private Chat with a user."""
    chat: JsonDict = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
    if "username" in user:
        chat["username"] = user["username"]
    return chat


def group_chat(chat_id: int, title: str = "Test group", chat_type: str = "supergroup") -> JsonDict:
    """A group or supergroup Chat (use a negative id)."""
    return {"id": chat_id, "type": chat_type, "title": title}


def _message(
    user: JsonDict,
    chat: JsonDict | None,
    message_id: int | None,
    **content: Any,
) -> JsonDict:
    chat = chat if chat is not None else private_chat(user)
    if message_id is None:
        message_id = next_message_id(chat["id"])
    else:
        note_message_id(chat["id"], message_id)
    message: JsonDict = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": chat,
        "from": user,
    }
    message.update({key: value for key, value in content.items() if value is not None})
    return message


def _caption(caption: str | None) -> JsonDict:
    if caption is None:
        return {}
    entities = detect_entities(caption)
    return {"caption": caption, **({"caption_entities": entities} if entities else {})}


def text_message(
    user: JsonDict,
    text: str,
    *,
    entities: list[JsonDict] | None = None,
    message_id: int | None = None,
    chat: JsonDict | None = None,
    reply_to_message: JsonDict | None = None,
) -> JsonDict:
    """A text Message; url and bot_command entities are detected when entities is None."""
    if entities is None:
        entities = detect_entities(text)
    return _message(
        user,
        chat,
        message_id,
        text=text,
        entities=entities or None,
        reply_to_message=reply_to_message,
    )


def photo_sizes(
    file_id: str, file_unique_id: str, width: int, height: int, file_size: int | None = None
) -> list[JsonDict]:
    """Three PhotoSizes, smallest first; the largest carries the given ids."""
    sizes: list[JsonDict] = []
    for suffix, side in (("s", 90), ("m", 320)):
        scale = min(1.0, side / max(width, height))
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        sizes.append(
            {
                "file_id": f"{file_id}_{suffix}{side}",
                "file_unique_id": f"{file_unique_id}{suffix}",
                "width": w,
                "height": h,
                "file_size": max(1, w * h // 10),
            }
        )
    sizes.append(
        {
            "file_id": file_id,
            "file_unique_id": file_unique_id,
            "width": width,
            "height": height,
            "file_size": file_size if file_size is not None else max(1, width * height // 10),
        }
    )
    return sizes


def photo_message(
    user: JsonDict,
    file_id: str,
    file_unique_id: str,
    *,
    width: int = 1280,
    height: int = 960,
    file_size: int | None = None,
    caption: str | None = None,
    message_id: int | None = None,
    media_group_id: str | None = None,
    chat: JsonDict | None = None,
    reply_to_message: JsonDict | None = None,
) -> JsonDict:
    """A photo Message with three sizes (the last, largest, has file_id/file_unique_id)."""
    return _message(
        user,
        chat,
        message_id,
        media_group_id=media_group_id,
        photo=photo_sizes(file_id, file_unique_id, width, height, file_size),
        reply_to_message=reply_to_message,
        **_caption(caption),
    )


def document_message(
    user: JsonDict,
    file_id: str,
    file_unique_id: str,
    *,
    file_name: str = "image.png",
    mime_type: str = "image/png",
    file_size: int | None = 1024,
    caption: str | None = None,
    message_id: int | None = None,
    media_group_id: str | None = None,
    chat: JsonDict | None = None,
) -> JsonDict:
    """A document Message (`file_size=None` leaves the optional size out)."""
    document: JsonDict = {
        "file_id": file_id,
        "file_unique_id": file_unique_id,
        "file_name": file_name,
        "mime_type": mime_type,
    }
    if file_size is not None:
        document["file_size"] = file_size
    return _message(
        user,
        chat,
        message_id,
        media_group_id=media_group_id,
        document=document,
        **_caption(caption),
    )


def sticker_message(
    user: JsonDict,
    file_id: str = "CAACAgIAAxkBAAEStickerFileId",
    file_unique_id: str = "AgADStickerUq",
    *,
    emoji: str = "🙂",
    width: int = 512,
    height: int = 512,
    is_animated: bool = False,
    is_video: bool = False,
    message_id: int | None = None,
    chat: JsonDict | None = None,
) -> JsonDict:
    """A sticker Message."""
    sticker: JsonDict = {
        "file_id": file_id,
        "file_unique_id": file_unique_id,
        "type": "regular",
        "width": width,
        "height": height,
        "is_animated": is_animated,
        "is_video": is_video,
        "emoji": emoji,
        "file_size": 20_000,
    }
    return _message(user, chat, message_id, sticker=sticker)


def inaccessible_message(chat: JsonDict, message_id: int) -> JsonDict:
    """A message Telegram can no longer show (deleted): an InaccessibleMessage, `date` 0."""
    return {"chat": chat, "message_id": message_id, "date": 0}


def pin_notice(
    user: JsonDict,
    pinned: JsonDict,
    *,
    chat: JsonDict | None = None,
    message_id: int | None = None,
) -> JsonDict:
    """The service message "<user> pinned a message" (`pinned` may be inaccessible)."""
    return _message(user, chat, message_id, pinned_message=pinned)


def update(
    message: JsonDict | None = None,
    *,
    update_id: int | None = None,
    **other: JsonDict,
) -> JsonDict:
    """An Update wrapping a message (or e.g. edited_message=..., callback_query=...)."""
    result: JsonDict = {}
    if update_id is not None:
        result["update_id"] = update_id
    if message is not None:
        result["message"] = message
    result.update(other)
    return result


def inline_query(
    user: JsonDict,
    query: str,
    id: str | None = None,
    *,
    offset: str = "",
    chat_type: str = "sender",
) -> JsonDict:
    """An Update carrying an InlineQuery."""
    query_id = id if id is not None else f"{next(_inline_ids)}{secrets.randbelow(10**9)}"
    return {
        "inline_query": {
            "id": query_id,
            "from": user,
            "query": query,
            "offset": offset,
            "chat_type": chat_type,
        }
    }
