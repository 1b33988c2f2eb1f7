"""State shared by the fake Bot API: files, chats, messages, recorded calls."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.forms import UploadedFile
from tests.fakes.images import sniff_mime
from tests.fakes.updates import next_message_id, note_message_id

JsonDict = dict[str, Any]
MAX_GETFILE_SIZE = 20 * 1024 * 1024
MAX_UPLOAD_SIZE = 50 * 1024 * 1024
_KIND_PREFIX = {
    "photo": "AgACAgIAAxkBAAI",
    "document": "BQACAgIAAxkBAAI",
    "file": "BQACAgIAAxkBAAI",
    "sticker": "CAACAgIAAxkBAAI",
}
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code", "description", "parameters"}``."""

    def __init__(
        self, error_code: int, description: str, parameters: JsonDict | None = None
    ) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JsonDict:
        """The JSON body Telegram answers with."""
        body: JsonDict = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body


def bad_request(detail: str) -> ApiError:
    """A 400 ``Bad Request: <detail>``."""
    return ApiError(400, f"Bad Request: {detail}")


@dataclass
class TgCall:
    """One Bot API request; ``response`` is None while it is still being answered."""

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    at: float
    response: Any = None

    @property
    def ok(self) -> bool:
        """Whether the answer was ``{"ok": true}``."""
        return isinstance(self.response, dict) and self.response.get("ok") is True

    @property
    def result(self) -> Any:
        """The ``result`` of a successful answer (None otherwise)."""
        return self.response.get("result") if isinstance(self.response, dict) else None

    @property
    def chat_id(self) -> Any:
        """The ``chat_id`` parameter, if any."""
        return self.params.get("chat_id")

    @property
    def uploaded(self) -> bool:
        """Whether the request carried file parts."""
        return bool(self.files)


@dataclass
class StoredFile:
    """A file the fake can serve via getFile and accepts back by file_id."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_size: int
    file_path: str
    mime_type: str
    file_name: str | None = None
    kind: str = "file"


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    generation: int


@dataclass
class TelegramState:
    """Everything the fake remembers; guard every access with ``lock``."""

    token: str
    bot_id: int
    username: str
    first_name: str = "NoBG Test Bot"
    lock: threading.Lock = field(default_factory=threading.Lock)
    latency: dict[str, float] = field(default_factory=dict)
    inline_query_ttl: float = 10.0
    calls: list[TgCall] = field(default_factory=list)
    updates: list[JsonDict] = field(default_factory=list)
    next_update_id: int = 1
    poll_generation: int = 0
    waiters: list[_Waiter] = field(default_factory=list)
    closing: bool = False
    files: dict[str, StoredFile] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    file_downloads: list[str] = field(default_factory=list)
    messages: dict[tuple[int, int], JsonDict] = field(default_factory=dict)
    last_message_id: dict[int, int] = field(default_factory=dict)
    chats: dict[int, JsonDict] = field(default_factory=dict)
    inline_queries: dict[str, float] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    faults: dict[str, deque[ApiError]] = field(default_factory=dict)
    webhook: JsonDict = field(default_factory=dict)
    commands: dict[str, list[JsonDict]] = field(default_factory=dict)
    # Callback query id -> when it was pushed; removed once answered.
    callback_queries: dict[str, float] = field(default_factory=dict)
    callback_answers: dict[str, JsonDict] = field(default_factory=dict)
    callback_query_ttl: float = 15.0
    # Users with a private chat with the bot (they pressed Start or wrote to it).
    started_users: set[int] = field(default_factory=set)
    # Sticker sets by lower-cased name.
    sticker_sets: dict[str, JsonDict] = field(default_factory=dict)
    # Basic groups upgraded to supergroups: old chat id -> new chat id.
    migrated: dict[int, int] = field(default_factory=dict)
    # Forum topics seen in pushed messages: (chat id, message_thread_id).
    topics: set[tuple[int, int]] = field(default_factory=set)
    # Per language_code ("" = default): setMyDescription and setMyShortDescription.
    descriptions: dict[str, str] = field(default_factory=dict)
    short_descriptions: dict[str, str] = field(default_factory=dict)
    # Payments in Stars: invoices sent (by chat and message id) and links made, with payload.
    invoices: dict[tuple[int, int], JsonDict] = field(default_factory=dict)
    invoice_links: dict[str, JsonDict] = field(default_factory=dict)
    # Pre-checkout query id -> (when it was pushed, the query); removed once answered.
    pre_checkout_queries: dict[str, tuple[float, JsonDict]] = field(default_factory=dict)
    pre_checkout_answers: dict[str, JsonDict] = field(default_factory=dict)
    pre_checkout_ttl: float = 10.0
    # Charge id -> {"user", "total_amount", "invoice_payload", "refunded"}.
    star_payments: dict[str, JsonDict] = field(default_factory=dict)
    star_transactions: list[JsonDict] = field(default_factory=list)
    # Whether a refund by refundStarPayment is also announced with a refunded_payment message.
    refund_messages: bool = True
    refund_listener: Callable[[str], object] | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def bot_user(self) -> JsonDict:
        """The bot's User object."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    # files

    def store_file(
        self,
        data: bytes,
        *,
        kind: str = "file",
        file_size: int | None = None,
        file_path: str | None = None,
        mime_type: str | None = None,
        file_name: str | None = None,
    ) -> StoredFile:
        """Register bytes under a new file_id (caller holds no lock)."""
        number = next(self._counter)
        mime = mime_type or sniff_mime(data, file_name)
        if file_path is None:
            ext = _EXTENSIONS.get(mime, "bin")
            folder = "photos" if kind == "photo" or ext == "jpg" else "documents"
            file_path = f"{folder}/file_{number}.{ext}"
        prefix = _KIND_PREFIX.get(kind, _KIND_PREFIX["file"])
        stored = StoredFile(
            file_id=f"{prefix}{number:04d}{secrets.token_urlsafe(30)}",
            file_unique_id=f"AgAD{number:04d}{secrets.token_urlsafe(6)}",
            data=data,
            file_size=len(data) if file_size is None else file_size,
            file_path=file_path,
            mime_type=mime,
            file_name=file_name,
            kind=kind,
        )
        with self.lock:
            self.files[stored.file_id] = stored
            self.paths[file_path] = stored.file_id
        return stored

    # chats and messages

    def chat(self, chat_id: Any) -> JsonDict:
        """The Chat object for a chat_id parameter, or 400 chat not found."""
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            raise bad_request("chat not found")
        with self.lock:
            known = self.chats.get(chat_id)
        if known is not None:
            return dict(known)
        return {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}

    def remember_message(self, message: JsonDict) -> None:
        """Track a message (pushed or sent) for replies, edits and id allocation."""
        chat = message.get("chat") or {}
        chat_id, message_id = chat.get("id"), message.get("message_id")
        if not isinstance(chat_id, int) or not isinstance(message_id, int):
            return
        thread_id = message.get("message_thread_id")
        with self.lock:
            self.chats.setdefault(chat_id, dict(chat))
            self.messages[(chat_id, message_id)] = message
            if message.get("is_topic_message") and isinstance(thread_id, int):
                self.topics.add((chat_id, thread_id))
            sender = message.get("from") or {}
            if chat.get("type") == "private" and sender.get("id") == chat_id:
                self.started_users.add(chat_id)
            self.last_message_id[chat_id] = max(self.last_message_id.get(chat_id, 0), message_id)
        note_message_id(chat_id, message_id)

    def new_message(self, chat: JsonDict, **content: Any) -> JsonDict:
        """A Message from the bot in chat, with the next message_id of that chat."""
        message_id = next_message_id(chat["id"])
        message: JsonDict = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
        }
        message.update({key: value for key, value in content.items() if value is not None})
        self.remember_message(message)
        return message

    def find_message(self, chat_id: Any, message_id: Any) -> JsonDict | None:
        """A known message, or None."""
        if not isinstance(chat_id, int) or not isinstance(message_id, int):
            return None
        with self.lock:
            return self.messages.get((chat_id, message_id))
