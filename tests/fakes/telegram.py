"""A fake Telegram Bot API server for the real python-telegram-bot to talk to over HTTP."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.forms import FormError, UploadedFile, parse_form
from tests.fakes.server import ThreadedServer
from tests.fakes.tg_methods import BotApi, wake_all
from tests.fakes.tg_state import ApiError, JsonDict, StoredFile, TelegramState, TgCall
from tests.fakes.tg_stickers import sticker_object
from tests.fakes.updates import next_message_id

__all__ = ["ApiError", "FakeTelegram", "StoredFile", "TgCall", "UploadedFile"]

# Parameters whose values are strings even when they look like numbers or JSON.
STRING_PARAMS = frozenset(
    [
        "text",
        "caption",
        "query",
        "inline_query_id",
        "callback_query_id",
        "url",
        "secret_token",
        "parse_mode",
        "action",
        "next_offset",
        "switch_pm_text",
        "switch_pm_parameter",
        "title",
        "description",
        "short_description",
        "name",
        "language_code",
        "emoji",
        "business_connection_id",
        "message_effect_id",
        "file_id",
        "document",
        "photo",
        "video",
        "audio",
        "voice",
        "animation",
        "sticker",
        "thumbnail",
        "video_note",
        "inline_message_id",
        "ip_address",
        "first_name",
        "last_name",
        "phone_number",
        "address",
        "vcard",
        "explanation",
        "question",
        "custom_title",
        "start_parameter",
        "error_message",
        "shipping_query_id",
        "pre_checkout_query_id",
        "payload",
        "currency",
        "provider_token",
        "provider_data",
        "telegram_payment_charge_id",
        "photo_url",
    ]
)
BLOCKED = "Forbidden: bot was blocked by the user"


def decode_params(fields: dict[str, str]) -> dict[str, Any]:
    """Undo PTB's encoding: non-string values were sent as JSON, strings as they are."""
    params: dict[str, Any] = {}
    for key, value in fields.items():
        if key in STRING_PARAMS:
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _tiny_webp() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (512, 512), (0, 0, 0, 0)).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


def _is_chat_send(method: str) -> bool:
    return method.startswith(("send", "edit", "copyMessage", "forwardMessage"))


class FakeTelegram:
    """The Bot API at ``{url}/bot<token>/<method>`` and files at ``{url}/file/bot<token>/...``."""

    def __init__(
        self,
        token: str = "123456:TEST-token_abcdefghijklmnopqrstuvwx",  # noqa: S107
        bot_id: int = 123456,
        username: str = "nobg_test_bot",
    ) -> None:
        self.token = token
        self.state = TelegramState(token=token, bot_id=bot_id, username=username)
        self.state.refund_listener = self._announce_refund
        self.api = BotApi(self.state)
        app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._call, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._file, methods=["GET", "HEAD"]),
            ]
        )
        self.server = ThreadedServer(app)

    # lifecycle

    def start(self) -> None:
        """Start the HTTP server."""
        with self.state.lock:
            self.state.closing = False
        self.server.start()

    def stop(self) -> None:
        """Release long polls and stop the HTTP server."""
        with self.state.lock:
            self.state.closing = True
        wake_all(self.state)
        self.server.stop()

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:port`` (bot API under ``/bot``)."""
        return self.server.url

    @property
    def bot_id(self) -> int:
        """The bot's user id."""
        return self.state.bot_id

    @property
    def username(self) -> str:
        """The bot's username."""
        return self.state.username

    @property
    def bot_user(self) -> JsonDict:
        """The bot's User object."""
        return self.state.bot_user

    @property
    def latency(self) -> dict[str, float]:
        """Per-method delay in seconds, applied before answering (mutable)."""
        return self.state.latency

    @property
    def webhook(self) -> JsonDict:
        """The parameters of the last setWebhook (empty after deleteWebhook)."""
        with self.state.lock:
            return dict(self.state.webhook)

    @property
    def inline_query_ttl(self) -> float:
        """Seconds an inline query can be answered after it was pushed."""
        return self.state.inline_query_ttl

    @inline_query_ttl.setter
    def inline_query_ttl(self, value: float) -> None:
        self.state.inline_query_ttl = value

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # updates

    def push_update(self, update: JsonDict) -> int:
        """Queue an update (assigning update_id if missing) and wake the long poll.

        A new message must not take an id its chat already gave another message (Telegram
        numbers a chat's messages in one sequence): that is an AssertionError. The same message
        again (a redelivery) is fine.
        """
        update = copy.deepcopy(update)
        for key in ("message", "channel_post"):
            message = update.get(key)
            if isinstance(message, dict):
                self._check_new(message)
        state = self.state
        with state.lock:
            if "update_id" not in update:
                update["update_id"] = state.next_update_id
            state.next_update_id = max(state.next_update_id, update["update_id"] + 1)
            state.updates.append(update)
            state.updates.sort(key=lambda u: u["update_id"])
            query = update.get("inline_query")
            if isinstance(query, dict):
                state.inline_queries[str(query.get("id"))] = time.monotonic()
            pressed = update.get("callback_query")
            if isinstance(pressed, dict):
                state.callback_queries[str(pressed.get("id"))] = time.monotonic()
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            message = update.get(key)
            if isinstance(message, dict):
                self.state.remember_message(message)
                reply = message.get("reply_to_message")
                # The fake's copy is the current one (a bot message may have been edited since).
                if isinstance(reply, dict) and self._unknown(reply):
                    self.state.remember_message(reply)
        wake_all(state)
        return int(update["update_id"])

    def _unknown(self, message: JsonDict) -> bool:
        chat = message.get("chat") or {}
        return self.state.find_message(chat.get("id"), message.get("message_id")) is None

    def _check_new(self, message: JsonDict) -> None:
        chat = message.get("chat") or {}
        held = self.state.find_message(chat.get("id"), message.get("message_id"))
        if held is not None and held != message:
            raise AssertionError(
                f"message_id {message.get('message_id')} is already used in chat "
                f"{chat.get('id')}: take the chat's next id (updates.next_message_id)"
            )

    def push_message(self, message: JsonDict) -> int:
        """Push ``{"message": message}``."""
        return self.push_update({"message": message})

    def press(
        self,
        user: JsonDict,
        message: JsonDict,
        data: str,
        *,
        query_id: str | None = None,
    ) -> str:
        """A user presses a callback button of one of the bot's messages; returns the query id.

        The message is the bot's copy as the fake holds it now (edits applied), as Telegram
        sends it; `message` may be a sent message's result or any dict with chat and id.
        """
        chat_id = message["chat"]["id"]
        current = self.state.find_message(chat_id, message["message_id"]) or message
        query_id = query_id or f"{secrets.randbelow(10**18)}"
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user,
                    "message": copy.deepcopy(current),
                    "chat_instance": str(abs(chat_id) * 7919),
                    "data": data,
                }
            }
        )
        return query_id

    # payments in Stars

    def invoices_to(self, chat_id: int) -> list[tuple[JsonDict, JsonDict]]:
        """(message, invoice with its payload) of every invoice sent to a chat, in order."""
        with self.state.lock:
            return [
                (copy.deepcopy(self.state.messages.get(key, {})), dict(invoice))
                for key, invoice in self.state.invoices.items()
                if key[0] == chat_id
            ]

    def checkout(
        self,
        user: JsonDict,
        *,
        payload: str,
        total_amount: int,
        currency: str = "XTR",
        query_id: str | None = None,
    ) -> str:
        """The user presses Pay on an invoice: a pre_checkout_query; returns its id."""
        query_id = query_id or f"{secrets.randbelow(10**18)}"
        query = {
            "id": query_id,
            "from": user,
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": payload,
        }
        with self.state.lock:
            self.state.pre_checkout_queries[query_id] = (time.monotonic(), query)
        self.push_update({"pre_checkout_query": query})
        return query_id

    def checkout_invoice(self, user: JsonDict, invoice: JsonDict) -> str:
        """`checkout` of an invoice the bot sent (from `invoices_to`)."""
        return self.checkout(
            user,
            payload=str(invoice["payload"]),
            total_amount=int(invoice["total_amount"]),
            currency=str(invoice["currency"]),
        )

    def pre_checkout_answer(self, query_id: str) -> JsonDict | None:
        """The bot's answerPreCheckoutQuery for a query, once answered."""
        with self.state.lock:
            answer = self.state.pre_checkout_answers.get(query_id)
            return dict(answer) if answer is not None else None

    @property
    def pre_checkout_ttl(self) -> float:
        """Seconds a pre-checkout query can be answered after it was pushed."""
        return self.state.pre_checkout_ttl

    @pre_checkout_ttl.setter
    def pre_checkout_ttl(self, value: float) -> None:
        self.state.pre_checkout_ttl = value

    def complete_payment(self, query_id: str) -> tuple[str, JsonDict]:
        """Telegram takes the Stars of an approved checkout: (charge id, the message pushed).

        Refuses (AssertionError) a checkout the bot did not answer with ok=True.
        """
        answer = self.pre_checkout_answer(query_id)
        assert answer is not None, f"checkout {query_id} was not answered"
        assert answer["ok"], f"checkout {query_id} was not approved"
        query = answer["query"]
        charge_id = f"stxc{secrets.token_hex(20)}"
        user = query["from"]
        with self.state.lock:
            self.state.star_payments[charge_id] = {
                "user": user,
                "total_amount": query["total_amount"],
                "invoice_payload": query["invoice_payload"],
                "refunded": False,
            }
            self.state.star_transactions.append(
                {
                    "id": charge_id,
                    "amount": query["total_amount"],
                    "date": int(time.time()),
                    "source": {
                        "type": "user",
                        "transaction_type": "invoice_payment",
                        "user": user,
                        "invoice_payload": query["invoice_payload"],
                    },
                }
            )
        message = self.payment_message(
            user,
            "successful_payment",
            {
                "currency": query["currency"],
                "total_amount": query["total_amount"],
                "invoice_payload": query["invoice_payload"],
                "telegram_payment_charge_id": charge_id,
                "provider_payment_charge_id": "",
            },
        )
        self.push_message(message)
        return charge_id, message

    def payment_message(self, user: JsonDict, kind: str, payment: JsonDict) -> JsonDict:
        """A service message in the user's private chat (successful_ or refunded_payment)."""
        chat = {"id": user["id"], "type": "private", "first_name": user.get("first_name", "")}
        return {
            "message_id": next_message_id(user["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            kind: payment,
        }

    def refund_elsewhere(self, charge_id: str) -> JsonDict:
        """Telegram refunds a payment without the bot asking (a dispute): refunded_payment."""
        with self.state.lock:
            payment = self.state.star_payments[charge_id]
            assert not payment["refunded"], "already refunded"
            payment["refunded"] = True
        return self._announce_refund(charge_id)

    def _announce_refund(self, charge_id: str) -> JsonDict:
        with self.state.lock:
            payment = dict(self.state.star_payments[charge_id])
        message = self.payment_message(
            payment["user"],
            "refunded_payment",
            {
                "currency": "XTR",
                "total_amount": payment["total_amount"],
                "invoice_payload": payment["invoice_payload"],
                "telegram_payment_charge_id": charge_id,
            },
        )
        self.push_message(message)
        return message

    def star_payment(self, charge_id: str) -> JsonDict | None:
        """What the fake knows of a payment (user, total_amount, invoice_payload, refunded)."""
        with self.state.lock:
            found = self.state.star_payments.get(charge_id)
            return copy.deepcopy(found) if found is not None else None

    @property
    def refund_messages(self) -> bool:
        """Whether refundStarPayment is followed by a refunded_payment message."""
        return self.state.refund_messages

    @refund_messages.setter
    def refund_messages(self, value: bool) -> None:
        self.state.refund_messages = value

    def callback_answer(self, query_id: str) -> JsonDict | None:
        """The parameters of the answerCallbackQuery for a query, once answered."""
        with self.state.lock:
            answer = self.state.callback_answers.get(query_id)
            return dict(answer) if answer is not None else None

    @property
    def callback_query_ttl(self) -> float:
        """Seconds a callback query can be answered after it was pushed."""
        return self.state.callback_query_ttl

    @callback_query_ttl.setter
    def callback_query_ttl(self, value: float) -> None:
        self.state.callback_query_ttl = value

    def start_user(self, user_id: int) -> None:
        """The user opens a private chat with the bot (as pressing Start does)."""
        with self.state.lock:
            self.state.started_users.add(user_id)

    def sticker_set(self, name: str) -> JsonDict | None:
        """A sticker set as getStickerSet would return it, or None."""
        with self.state.lock:
            found = self.state.sticker_sets.get(name.lower())
            return copy.deepcopy(found) if found is not None else None

    def make_sticker_set(self, owner: int, name: str, count: int) -> None:
        """Create a static sticker set owned by `owner` holding `count` stickers."""
        stickers = []
        for _ in range(count):
            stored = self.state.store_file(
                _tiny_webp(), kind="sticker", mime_type="image/webp", file_name="sticker.webp"
            )
            stickers.append(sticker_object(stored, 512, 512, name, "🙂"))
        with self.state.lock:
            self.state.sticker_sets[name.lower()] = {
                "name": name,
                "title": name,
                "sticker_type": "regular",
                "owner": owner,
                "stickers": stickers,
            }

    @property
    def pending_updates(self) -> list[JsonDict]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self.state.lock:
            return copy.deepcopy(self.state.updates)

    # files

    def add_file(
        self,
        data: bytes,
        *,
        file_size: int | None = None,
        file_path: str | None = None,
    ) -> tuple[str, str]:
        """Register a downloadable file; returns (file_id, file_unique_id)."""
        stored = self.state.store_file(
            data, kind="photo", file_size=file_size, file_path=file_path
        )
        return stored.file_id, stored.file_unique_id

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes stored under a file_id (uploads by the bot included)."""
        with self.state.lock:
            return self.state.files[file_id].data

    def stored_file(self, file_id: str) -> StoredFile | None:
        """The stored file for a file_id, if known."""
        with self.state.lock:
            return self.state.files.get(file_id)

    @property
    def file_downloads(self) -> list[str]:
        """file_paths downloaded from the file endpoint (with the right token)."""
        with self.state.lock:
            return list(self.state.file_downloads)

    # recordings

    @property
    def calls(self) -> list[TgCall]:
        """Every Bot API request, in arrival order (responses filled in when answered)."""
        with self.state.lock:
            return list(self.state.calls)

    def calls_of(self, method: str) -> list[TgCall]:
        """Requests of one method."""
        return [call for call in self.calls if call.method == method]

    def sent_documents(self, chat_id: int | None = None) -> list[TgCall]:
        """Successful sendDocument calls (optionally to one chat)."""
        return [
            call
            for call in self.calls_of("sendDocument")
            if call.ok and (chat_id is None or call.chat_id == chat_id)
        ]

    def texts_to(self, chat_id: int) -> list[str]:
        """Texts of successful sendMessage and editMessageText calls to a chat, in order."""
        return [
            str(call.params.get("text"))
            for call in self.calls
            if call.method in ("sendMessage", "editMessageText")
            and call.ok
            and call.chat_id == chat_id
        ]

    def reset_calls(self) -> None:
        """Forget recorded calls and file downloads."""
        with self.state.lock:
            self.state.calls.clear()
            self.state.file_downloads.clear()

    def summary(self, last: int = 40) -> str:
        """A readable list of the last recorded calls."""
        lines = []
        for call in self.calls[-last:]:
            params = {k: v for k, v in call.params.items() if k not in ("media", "results")}
            shown = json.dumps(params, ensure_ascii=False, default=str)[:160]
            if call.response is None:
                outcome = "pending"
            elif call.ok:
                outcome = "ok"
            else:
                outcome = f"{call.response.get('error_code')} {call.response.get('description')}"
            files = f" files={sorted(call.files)}" if call.files else ""
            lines.append(f"  {call.method} {shown}{files} -> {outcome}")
        return "\n".join(lines) or "  (no calls)"

    async def wait_for(
        self, predicate: Callable[[FakeTelegram], bool], timeout: float = 5.0
    ) -> None:
        """Poll predicate(self) every 10 ms until true."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s; calls:\n{self.summary()}"
                )
            await asyncio.sleep(0.01)

    async def wait_for_call(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[TgCall], bool] | None = None,
    ) -> list[TgCall]:
        """Wait until count calls of method (matching where) were recorded; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_of(method) if where is None or where(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} {method} call(s) within {timeout}s, got {len(found)}; "
                    f"calls:\n{self.summary()}"
                )
            await asyncio.sleep(0.01)

    # fault injection

    def fail_next(
        self,
        method: str,
        *,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next calls of method with this error."""
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        error = ApiError(error_code, description, parameters)
        with self.state.lock:
            self.state.faults.setdefault(method, deque()).extend([error] * times)

    def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        """Upgrade a basic group to a supergroup: its old id answers 400 migrate_to_chat_id."""
        with self.state.lock:
            self.state.migrated[old_chat_id] = new_chat_id
            old = self.state.chats.get(old_chat_id, {})
            self.state.chats[new_chat_id] = {
                "id": new_chat_id,
                "type": "supergroup",
                "title": old.get("title", "Test group"),
            }

    def block_chat(self, chat_id: int) -> None:
        """Every send*/edit* to this chat answers 403 bot was blocked by the user."""
        with self.state.lock:
            self.state.blocked.add(chat_id)

    def unblock_chat(self, chat_id: int) -> None:
        """Undo block_chat."""
        with self.state.lock:
            self.state.blocked.discard(chat_id)

    # HTTP handlers

    async def _call(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return JSONResponse(ApiError(401, "Unauthorized").payload(), status_code=401)
        name = request.path_params["method"]
        known = self.api.handlers.get(name.lower())
        method = known[0] if known else name
        body = await request.body()
        try:
            fields, files = parse_form(request.headers.get("content-type"), body)
        except FormError as exc:
            fields, files = {}, {}
            parse_error: ApiError | None = ApiError(400, f"Bad Request: {exc}")
        else:
            parse_error = None
        params = decode_params({**dict(request.query_params), **fields})
        call = TgCall(method, params, files, time.monotonic())
        with self.state.lock:
            self.state.calls.append(call)
        delay = self.state.latency.get(method, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if known is None:
                raise ApiError(404, "Not Found: method not found")
            if parse_error is not None:
                raise parse_error
            self._check_faults(method, params)
            result = await known[1](params, files)
            response: JsonDict = {"ok": True, "result": result}
            status = 200
        except ApiError as error:
            response, status = error.payload(), error.error_code
        call.response = response
        return JSONResponse(response, status_code=status)

    def _check_faults(self, method: str, params: dict[str, Any]) -> None:
        with self.state.lock:
            queue = self.state.faults.get(method)
            fault = queue.popleft() if queue else None
            blocked = params.get("chat_id") in self.state.blocked
            migrated_to = self.state.migrated.get(params.get("chat_id"))  # type: ignore[arg-type]
        if fault is not None:
            raise fault
        if migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": migrated_to},
            )
        if blocked and _is_chat_send(method):
            raise ApiError(403, BLOCKED)

    async def _file(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return JSONResponse(ApiError(401, "Unauthorized").payload(), status_code=401)
        path = request.path_params["file_path"]
        with self.state.lock:
            file_id = self.state.paths.get(path)
            stored = self.state.files.get(file_id) if file_id else None
            if request.method == "GET":
                self.state.file_downloads.append(path)
        if stored is None:
            return JSONResponse(ApiError(404, "Not Found").payload(), status_code=404)
        return Response(stored.data, media_type=stored.mime_type)
