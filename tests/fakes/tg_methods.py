"""The Bot API methods the fake implements, answering like Telegram does."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

from tests.fakes.forms import UploadedFile
from tests.fakes.tg_format import EntityError, plain_text
from tests.fakes.tg_payments import PaymentMethods
from tests.fakes.tg_state import (
    MAX_GETFILE_SIZE,
    MAX_UPLOAD_SIZE,
    ApiError,
    JsonDict,
    StoredFile,
    TelegramState,
    _Waiter,
    bad_request,
)
from tests.fakes.tg_stickers import NOT_MODIFIED, StudioMethods, check_inline_keyboard

Files = dict[str, UploadedFile]
Handler = Callable[[JsonDict, Files], Awaitable[Any]]

MAX_TEXT = 4096
MAX_CAPTION = 1024
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
CONFLICT_POLL = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
# Bot API limits for the command menu and the profile texts.
MAX_COMMAND_DESCRIPTION = 256
MAX_DESCRIPTION = 512
MAX_SHORT_DESCRIPTION = 120
_LANGUAGE_CODE = re.compile(r"[a-z]{2}")


def _int(params: JsonDict, name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise bad_request(f'field "{name}" must be of type Integer') from exc


def _image_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return (0, 0)


class BotApi(StudioMethods, PaymentMethods):
    """Implements Bot API methods on a TelegramState."""

    def __init__(self, state: TelegramState) -> None:
        self.state = state
        self.handlers: dict[str, tuple[str, Handler]] = {}
        for name in [
            "getMe",
            "deleteWebhook",
            "setWebhook",
            "getWebhookInfo",
            "getUpdates",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "setMyDescription",
            "getMyDescription",
            "setMyShortDescription",
            "getMyShortDescription",
            "sendMessage",
            "editMessageText",
            "deleteMessage",
            "sendChatAction",
            "getFile",
            "sendDocument",
            "sendPhoto",
            "sendMediaGroup",
            "answerInlineQuery",
            "answerCallbackQuery",
            "editMessageReplyMarkup",
            "sendSticker",
            "createNewStickerSet",
            "addStickerToSet",
            "getStickerSet",
            "sendInvoice",
            "createInvoiceLink",
            "answerPreCheckoutQuery",
            "refundStarPayment",
            "getStarTransactions",
            "getMyStarBalance",
            "close",
            "logOut",
        ]:
            attr = "m_" + "".join("_" + c.lower() if c.isupper() else c for c in name)
            self.handlers[name.lower()] = (name, getattr(self, attr))

    # helpers

    def _own_message(self, params: JsonDict) -> JsonDict:
        """The bot's own message named by chat_id and message_id, as an edit needs it."""
        chat = self._chat_of(params)
        found = self.state.find_message(chat["id"], params.get("message_id"))
        if found is None:
            raise bad_request("message to edit not found")
        if found.get("from", {}).get("id") != self.state.bot_id:
            raise bad_request("message can't be edited")
        return found

    def _chat_of(self, params: JsonDict) -> JsonDict:
        if "chat_id" not in params:
            raise bad_request("chat_id is empty")
        return self.state.chat(params["chat_id"])

    def _text(self, params: JsonDict, name: str, limit: int, *, required: bool) -> str | None:
        raw = params.get(name)
        if raw is None:
            if required:
                raise bad_request("message text is empty")
            return None
        try:
            shown = plain_text(str(raw), params.get("parse_mode"))
        except EntityError as exc:
            raise bad_request(f"can't parse entities: {exc}") from exc
        if required and not shown.strip():
            raise bad_request("message text is empty")
        if len(shown.encode("utf-16-le")) // 2 > limit:
            raise bad_request(
                "message is too long" if name == "text" else "message caption is too long"
            )
        return shown

    def _reply_to(self, params: JsonDict, chat: JsonDict) -> JsonDict | None:
        reply = params.get("reply_parameters")
        if reply is None and "reply_to_message_id" in params:
            reply = {"message_id": params["reply_to_message_id"]}
        if not isinstance(reply, dict):
            return None
        target_chat = reply.get("chat_id", chat["id"])
        found = self.state.find_message(target_chat, reply.get("message_id"))
        if found is None:
            if reply.get("allow_sending_without_reply") or params.get(
                "allow_sending_without_reply"
            ):
                return None
            raise bad_request("message to be replied not found")
        shallow = dict(found)
        shallow.pop("reply_to_message", None)
        return shallow

    def _common(self, params: JsonDict, chat: JsonDict) -> JsonDict:
        markup = params.get("reply_markup")
        check_inline_keyboard(markup)
        thread_id = self._thread(params, chat)
        return {
            "reply_to_message": self._reply_to(params, chat),
            "reply_markup": markup
            if isinstance(markup, dict) and "inline_keyboard" in markup
            else None,
            "message_thread_id": thread_id,
            "is_topic_message": True if thread_id is not None else None,
        }

    def _thread(self, params: JsonDict, chat: JsonDict) -> int | None:
        """message_thread_id: only a known topic of a forum supergroup."""
        thread_id = params.get("message_thread_id")
        if thread_id is None:
            return None
        if not isinstance(thread_id, int) or isinstance(thread_id, bool):
            raise bad_request("message thread not found")
        with self.state.lock:
            known = (chat["id"], thread_id) in self.state.topics
        if not chat.get("is_forum") or not known:
            raise bad_request("message thread not found")
        return thread_id

    def _input_file(self, value: Any, files: Files, field: str, kind: str) -> StoredFile:
        upload: UploadedFile | None = files.get(field) if value is None else None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
            if upload is None:
                raise bad_request(f"file {value} not found")
        if upload is not None:
            if not upload.data:
                raise bad_request("file must be non-empty")
            if len(upload.data) > MAX_UPLOAD_SIZE:
                raise ApiError(413, "Request Entity Too Large")
            return self.state.store_file(
                upload.data,
                kind=kind,
                mime_type=upload.content_type if kind != "photo" else "image/jpeg",
                file_name=upload.filename,
            )
        if value is None:
            raise bad_request(f"there is no {field} in the request")
        if not isinstance(value, str):
            raise bad_request(f"wrong type of the {field} parameter")
        with self.state.lock:
            stored = self.state.files.get(value)
        if stored is not None:
            return stored
        if value.startswith(("http://", "https://")):
            raise bad_request("wrong type of the web page content")
        raise bad_request("wrong file identifier/HTTP URL specified")

    @staticmethod
    def _document(stored: StoredFile) -> JsonDict:
        document: JsonDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "mime_type": stored.mime_type,
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        return document

    @staticmethod
    def _photo(stored: StoredFile) -> list[JsonDict]:
        width, height = _image_size(stored.data)
        return [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_size": stored.file_size,
                "width": width,
                "height": height,
            }
        ]

    # methods

    async def m_get_me(self, params: JsonDict, files: Files) -> JsonDict:
        """getMe."""
        return {
            **self.state.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def m_delete_webhook(self, params: JsonDict, files: Files) -> bool:
        """deleteWebhook."""
        with self.state.lock:
            self.state.webhook.clear()
            if params.get("drop_pending_updates") is True:
                self.state.updates.clear()
        return True

    async def m_set_webhook(self, params: JsonDict, files: Files) -> bool:
        """setWebhook (any URL is accepted; nothing is delivered to it)."""
        if not params.get("url"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        with self.state.lock:
            self.state.webhook.clear()
            self.state.webhook.update(
                {key: value for key, value in params.items() if key != "certificate"}
            )
            if params.get("drop_pending_updates") is True:
                self.state.updates.clear()
        return True

    async def m_get_webhook_info(self, params: JsonDict, files: Files) -> JsonDict:
        """getWebhookInfo."""
        with self.state.lock:
            webhook = dict(self.state.webhook)
            pending = len(self.state.updates)
        info: JsonDict = {
            "url": webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": pending,
        }
        if webhook.get("url"):
            info["max_connections"] = webhook.get("max_connections", 40)
            if webhook.get("allowed_updates") is not None:
                info["allowed_updates"] = webhook["allowed_updates"]
        return info

    async def m_get_updates(self, params: JsonDict, files: Files) -> list[JsonDict]:
        """getUpdates with real long polling."""
        state = self.state
        offset = _int(params, "offset", 0)
        limit = min(100, max(1, _int(params, "limit", 100)))
        timeout = max(0.0, float(params.get("timeout") or 0))
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        with state.lock:
            if state.webhook.get("url"):
                raise ApiError(409, CONFLICT_WEBHOOK)
            if offset > 0:
                state.updates[:] = [u for u in state.updates if u["update_id"] >= offset]
            elif offset < 0:
                state.updates[:] = state.updates[offset:]
            state.poll_generation += 1
            generation = state.poll_generation
            stale = list(state.waiters)
        for waiter in stale:  # an older long poll is terminated by this one
            _wake(waiter)
        while True:
            waiter = _Waiter(loop, asyncio.Event(), generation)
            with state.lock:
                if state.poll_generation != generation:
                    raise ApiError(409, CONFLICT_POLL)
                batch = copy.deepcopy(state.updates[:limit])
                remaining = deadline - time.monotonic()
                if batch or state.closing or remaining <= 0:
                    return batch
                state.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter.event.wait(), remaining)
            except TimeoutError:
                pass
            finally:
                with state.lock:
                    if waiter in state.waiters:
                        state.waiters.remove(waiter)

    @staticmethod
    def _language_code(params: JsonDict) -> str:
        """A two-letter ISO 639-1 code or empty (all users without a dedicated one)."""
        code = str(params.get("language_code") or "")
        if code and not _LANGUAGE_CODE.fullmatch(code):
            raise bad_request("LANG_CODE_INVALID")
        return code

    @classmethod
    def _scope_key(cls, params: JsonDict) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, cls._language_code(params)], sort_keys=True)

    async def m_set_my_commands(self, params: JsonDict, files: Files) -> bool:
        """setMyCommands."""
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("can't parse BotCommand array")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            if not (1 <= len(name) <= 32) or not name.replace("_", "").isalnum():
                raise bad_request("BOT_COMMAND_INVALID")
            if name.lower() != name or not name.isascii():
                raise bad_request("BOT_COMMAND_INVALID")
            description = str(command.get("description") or "").strip()
            if not description:
                raise bad_request("command description must be non-empty")
            if len(description) > MAX_COMMAND_DESCRIPTION:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        with self.state.lock:
            self.state.commands[self._scope_key(params)] = commands
        return True

    async def m_get_my_commands(self, params: JsonDict, files: Files) -> list[JsonDict]:
        """getMyCommands."""
        with self.state.lock:
            return list(self.state.commands.get(self._scope_key(params), []))

    async def m_delete_my_commands(self, params: JsonDict, files: Files) -> bool:
        """deleteMyCommands."""
        with self.state.lock:
            self.state.commands.pop(self._scope_key(params), None)
        return True

    def _profile_text(self, params: JsonDict, name: str, limit: int, error: str) -> str:
        text = str(params.get(name) or "")
        if len(text.encode("utf-16-le")) // 2 > limit:
            raise bad_request(error)
        return text

    async def m_set_my_description(self, params: JsonDict, files: Files) -> bool:
        """setMyDescription: 0-512 characters, per language_code; empty removes it."""
        code = self._language_code(params)
        text = self._profile_text(
            params, "description", MAX_DESCRIPTION, "BOT_DESCRIPTION_INVALID"
        )
        with self.state.lock:
            if text:
                self.state.descriptions[code] = text
            else:
                self.state.descriptions.pop(code, None)
        return True

    async def m_get_my_description(self, params: JsonDict, files: Files) -> JsonDict:
        """getMyDescription: the language's own text, else the default one."""
        code = self._language_code(params)
        with self.state.lock:
            found = self.state.descriptions.get(code, self.state.descriptions.get("", ""))
        return {"description": found}

    async def m_set_my_short_description(self, params: JsonDict, files: Files) -> bool:
        """setMyShortDescription: 0-120 characters, per language_code; empty removes it."""
        code = self._language_code(params)
        text = self._profile_text(
            params, "short_description", MAX_SHORT_DESCRIPTION, "ABOUT_TOO_LONG"
        )
        with self.state.lock:
            if text:
                self.state.short_descriptions[code] = text
            else:
                self.state.short_descriptions.pop(code, None)
        return True

    async def m_get_my_short_description(self, params: JsonDict, files: Files) -> JsonDict:
        """getMyShortDescription: the language's own text, else the default one."""
        code = self._language_code(params)
        with self.state.lock:
            texts = self.state.short_descriptions
            found = texts.get(code, texts.get("", ""))
        return {"short_description": found}

    async def m_send_message(self, params: JsonDict, files: Files) -> JsonDict:
        """sendMessage."""
        chat = self._chat_of(params)
        text = self._text(params, "text", MAX_TEXT, required=True)
        entities = params.get("entities")
        return self.state.new_message(
            chat,
            text=text,
            entities=entities if isinstance(entities, list) and entities else None,
            **self._common(params, chat),
        )

    async def m_edit_message_text(self, params: JsonDict, files: Files) -> JsonDict | bool:
        """editMessageText (of the bot's own messages, or inline messages)."""
        text = self._text(params, "text", MAX_TEXT, required=True)
        if params.get("inline_message_id"):
            return True
        found = self._own_message(params)
        markup = params.get("reply_markup")
        if found.get("text") == text and found.get("reply_markup") == markup:
            raise bad_request(NOT_MODIFIED)
        edited = dict(found, text=text, edit_date=int(time.time()))
        if isinstance(markup, dict):
            edited["reply_markup"] = markup
        else:
            edited.pop("reply_markup", None)
        self.state.remember_message(edited)
        return edited

    async def m_delete_message(self, params: JsonDict, files: Files) -> bool:
        """deleteMessage."""
        chat = self._chat_of(params)
        message_id = params.get("message_id")
        with self.state.lock:
            if (
                not isinstance(message_id, int)
                or (chat["id"], message_id) not in self.state.messages
            ):
                raise bad_request("message to delete not found")
            del self.state.messages[(chat["id"], message_id)]
        return True

    async def m_send_chat_action(self, params: JsonDict, files: Files) -> bool:
        """sendChatAction."""
        self._thread(params, self._chat_of(params))
        if not params.get("action"):
            raise bad_request("wrong parameter action in request")
        return True

    async def m_get_file(self, params: JsonDict, files: Files) -> JsonDict:
        """getFile: relative file_path, 20 MB limit."""
        file_id = params.get("file_id")
        with self.state.lock:
            stored = self.state.files.get(file_id) if isinstance(file_id, str) else None
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.file_size > MAX_GETFILE_SIZE:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def m_send_document(self, params: JsonDict, files: Files) -> JsonDict:
        """sendDocument (upload, attach:// or file_id; URLs are refused)."""
        chat = self._chat_of(params)
        caption = self._text(params, "caption", MAX_CAPTION, required=False)
        stored = self._input_file(params.get("document"), files, "document", "document")
        return self.state.new_message(
            chat, document=self._document(stored), caption=caption, **self._common(params, chat)
        )

    async def m_send_photo(self, params: JsonDict, files: Files) -> JsonDict:
        """sendPhoto (recorded; the real server would re-encode to JPEG)."""
        chat = self._chat_of(params)
        caption = self._text(params, "caption", MAX_CAPTION, required=False)
        stored = self._input_file(params.get("photo"), files, "photo", "photo")
        return self.state.new_message(
            chat, photo=self._photo(stored), caption=caption, **self._common(params, chat)
        )

    async def m_send_media_group(self, params: JsonDict, files: Files) -> list[JsonDict]:
        """sendMediaGroup of 2-10 items; documents only with documents."""
        chat = self._chat_of(params)
        media = params.get("media")
        if not isinstance(media, list) or not all(isinstance(m, dict) for m in media):
            raise bad_request("can't parse media JSON object")
        if not 2 <= len(media) <= 10:
            raise bad_request("wrong number of messages in media group")
        kinds = {item.get("type") for item in media}
        if not kinds <= {"photo", "document"}:
            raise bad_request("the fake only groups photo and document media")
        if len(kinds) > 1:
            raise bad_request("document can't be mixed with other media types")
        group_id = str(10**17 + secrets.randbelow(9 * 10**17))
        reply = self._common(params, chat)
        prepared: list[JsonDict] = []
        for item in media:
            caption = self._text(item, "caption", MAX_CAPTION, required=False)
            kind = str(item["type"])
            stored = self._input_file(item.get("media"), files, "media", kind)
            content: JsonDict = {"caption": caption}
            if kind == "photo":
                content["photo"] = self._photo(stored)
            else:
                content["document"] = self._document(stored)
            prepared.append(content)
        return [
            self.state.new_message(chat, media_group_id=group_id, **content, **reply)
            for content in prepared
        ]

    async def m_answer_inline_query(self, params: JsonDict, files: Files) -> bool:
        """answerInlineQuery: the query must be pushed, fresh and answered (successfully) once."""
        query_id = params.get("inline_query_id")
        results = params.get("results")
        with self.state.lock:
            pushed_at = self.state.inline_queries.get(str(query_id))
        if pushed_at is None or time.monotonic() - pushed_at > self.state.inline_query_ttl:
            raise bad_request(QUERY_TOO_OLD)
        if not isinstance(results, list):
            raise bad_request("can't parse inline query results JSON object")
        if len(results) > 50:
            raise bad_request("RESULTS_TOO_MUCH")
        ids = [r.get("id") for r in results if isinstance(r, dict)]
        if len(ids) != len(results) or not all(isinstance(i, str) and i for i in ids):
            raise bad_request("RESULT_ID_EMPTY")
        if len(set(ids)) != len(ids):
            raise bad_request("RESULT_ID_DUPLICATE")
        for result in results:
            file_id = result.get("document_file_id") or result.get("photo_file_id")
            sticker_id = result.get("sticker_file_id")
            with self.state.lock:
                known = file_id is None or file_id in self.state.files
                sticker = self.state.files.get(sticker_id) if sticker_id else None
            if not known:
                raise bad_request("wrong file identifier/HTTP URL specified")
            if sticker_id is not None and (sticker is None or sticker.kind != "sticker"):
                raise bad_request("wrong file identifier/HTTP URL specified")
        with self.state.lock:
            # Only an accepted answer uses the query up: a refused one may be corrected.
            if self.state.inline_queries.pop(str(query_id), None) is None:
                raise bad_request(QUERY_TOO_OLD)
        return True

    async def m_close(self, params: JsonDict, files: Files) -> bool:
        """close."""
        return True

    async def m_log_out(self, params: JsonDict, files: Files) -> bool:
        """logOut."""
        return True


def _wake(waiter: _Waiter) -> None:
    with contextlib.suppress(RuntimeError):  # the server loop is closed
        waiter.loop.call_soon_threadsafe(waiter.event.set)


def wake_all(state: TelegramState) -> None:
    """Wake every waiting long poll."""
    with state.lock:
        waiters = list(state.waiters)
    for waiter in waiters:
        _wake(waiter)
