"""Payments in Telegram Stars in the fake Bot API, with Telegram's rules and error texts.

Sources of the error texts: the Bot API server's own checks (tdlib/telegram-bot-api Client.cpp:
'Parameter "x" is required', "There must be at least one price", "Can't parse prices JSON
object"), Telegram's error names passed through as "Bad Request: NAME" (payments.exportInvoice
lists CURRENCY_TOTAL_AMOUNT_INVALID, INVOICE_PAYLOAD_INVALID, PAYMENT_PROVIDER_INVALID and
STARS_INVOICE_INVALID; refunds answer CHARGE_ALREADY_REFUNDED and CHARGE_NOT_FOUND), and
client libraries' documented answers for the title and description (TITLE_INVALID,
DESCRIPTION_INVALID).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from tests.fakes.forms import UploadedFile
from tests.fakes.tg_state import JsonDict, TelegramState, bad_request

Files = dict[str, UploadedFile]

# The same text as answerInlineQuery's and answerCallbackQuery's.
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
MAX_TITLE = 32
MAX_DESCRIPTION = 255
MAX_PAYLOAD_BYTES = 128
# One-off Stars invoices Telegram accepted when last measured (150000 was refused).
MAX_STARS = 100_000
MAX_TRANSACTIONS = 100


def _required(params: JsonDict, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise bad_request(f'Parameter "{name}" is required')
    return str(value)


def _prices(params: JsonDict) -> list[JsonDict]:
    raw = params.get("prices")
    if raw is None or raw == "":
        raise bad_request('Parameter "prices" is required')
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as err:
            raise bad_request("Can't parse prices JSON object") from err
    if not isinstance(raw, list):
        raise bad_request("Expected an Array of labeled prices")
    for price in raw:
        if not isinstance(price, dict):
            raise bad_request("Can't parse labeled price: LabeledPrice must be an Object")
        if not str(price.get("label") or ""):
            raise bad_request("Can't parse labeled price: LabeledPrice label must be non-empty")
        if not isinstance(price.get("amount"), int) or isinstance(price.get("amount"), bool):
            raise bad_request('Can\'t parse labeled price: Field "amount" must be a Number')
    if not raw:
        raise bad_request("There must be at least one price")
    return raw


def check_invoice(params: JsonDict) -> JsonDict:
    """Validate sendInvoice/createInvoiceLink parameters; the invoice as the fake keeps it."""
    title = _required(params, "title")
    description = _required(params, "description")
    payload = _required(params, "payload")
    currency = _required(params, "currency")
    prices = _prices(params)
    if len(title) > MAX_TITLE:
        raise bad_request("TITLE_INVALID")
    if len(description) > MAX_DESCRIPTION:
        raise bad_request("DESCRIPTION_INVALID")
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise bad_request("INVOICE_PAYLOAD_INVALID")
    total = sum(int(p["amount"]) for p in prices)
    if currency == "XTR":
        if str(params.get("provider_token") or ""):
            raise bad_request("PAYMENT_PROVIDER_INVALID")
        if len(prices) != 1:
            raise bad_request("STARS_INVOICE_INVALID")
        if params.get("max_tip_amount") or params.get("suggested_tip_amounts"):
            raise bad_request("STARS_INVOICE_INVALID")
        if not 1 <= total <= MAX_STARS:
            raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
    else:
        # The fake sells digital goods only: any other currency needs a provider it lacks.
        raise bad_request("PAYMENT_PROVIDER_INVALID")
    return {
        "title": title,
        "description": description,
        "payload": payload,
        "currency": currency,
        "total_amount": total,
        "start_parameter": str(params.get("start_parameter") or ""),
    }


class PaymentMethods:
    """sendInvoice, createInvoiceLink, answerPreCheckoutQuery and the Stars methods."""

    state: TelegramState

    if TYPE_CHECKING:

        def _chat_of(self, params: JsonDict) -> JsonDict: ...

        def _common(self, params: JsonDict, chat: JsonDict) -> JsonDict: ...

    async def m_send_invoice(self, params: JsonDict, files: Files) -> JsonDict:
        """sendInvoice in Stars: one price, no provider token, Telegram's length rules."""
        chat = self._chat_of(params)
        invoice = check_invoice(params)
        message = self.state.new_message(
            chat,
            invoice={k: v for k, v in invoice.items() if k != "payload"},
            **self._common(params, chat),
        )
        with self.state.lock:
            self.state.invoices[(chat["id"], message["message_id"])] = invoice
        return message

    async def m_create_invoice_link(self, params: JsonDict, files: Files) -> str:
        """createInvoiceLink: the same rules; a t.me/$ link."""
        invoice = check_invoice(params)
        slug = secrets.token_urlsafe(12)
        with self.state.lock:
            self.state.invoice_links[slug] = invoice
        return f"https://t.me/${slug}"

    async def m_answer_pre_checkout_query(self, params: JsonDict, files: Files) -> bool:
        """answerPreCheckoutQuery: once, within 10 s; ok=false needs an error_message."""
        query_id = str(params.get("pre_checkout_query_id") or "")
        ok = params.get("ok") is True or params.get("ok") == "true"
        if not ok and not str(params.get("error_message") or ""):
            raise bad_request('Parameter "error_message" is required')
        with self.state.lock:
            pushed = self.state.pre_checkout_queries.pop(query_id, None)
            if pushed is None or time.monotonic() - pushed[0] > self.state.pre_checkout_ttl:
                raise bad_request(QUERY_TOO_OLD)
            self.state.pre_checkout_answers[query_id] = {
                "ok": ok,
                "error_message": params.get("error_message"),
                "query": pushed[1],
                "at": time.monotonic() - pushed[0],
            }
        return True

    async def m_refund_star_payment(self, params: JsonDict, files: Files) -> bool:
        """refundStarPayment: the payer's charge, once."""
        user_id = params.get("user_id")
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise bad_request('Parameter "user_id" is required')
        charge_id = _required(params, "telegram_payment_charge_id")
        with self.state.lock:
            payment = self.state.star_payments.get(charge_id)
            if payment is None or payment["user"]["id"] != user_id:
                raise bad_request("CHARGE_NOT_FOUND")
            if payment["refunded"]:
                raise bad_request("CHARGE_ALREADY_REFUNDED")
            payment["refunded"] = True
            self.state.star_transactions.append(
                {
                    "id": charge_id,
                    "amount": payment["total_amount"],
                    "date": int(time.time()),
                    "receiver": {
                        "type": "user",
                        "transaction_type": "invoice_payment",
                        "user": payment["user"],
                        "invoice_payload": payment["invoice_payload"],
                    },
                }
            )
            listener = self.state.refund_listener if self.state.refund_messages else None
        if listener is not None:
            listener(charge_id)  # Telegram tells the bot with a refunded_payment message too
        return True

    async def m_get_star_transactions(self, params: JsonDict, files: Files) -> JsonDict:
        """getStarTransactions: newest first; offset and limit (1-100) clamped as Telegram does."""
        offset = max(0, _int_arg(params, "offset", 0))
        limit = min(MAX_TRANSACTIONS, max(1, _int_arg(params, "limit", MAX_TRANSACTIONS)))
        with self.state.lock:
            newest_first = list(reversed(self.state.star_transactions))
        return {"transactions": newest_first[offset : offset + limit]}

    async def m_get_my_star_balance(self, params: JsonDict, files: Files) -> JsonDict:
        """getMyStarBalance: Stars received minus Stars refunded."""
        with self.state.lock:
            total = sum(
                t["amount"] if "source" in t else -t["amount"]
                for t in self.state.star_transactions
            )
        return {"amount": total}


def _int_arg(params: JsonDict, name: str, default: int) -> int:
    value: Any = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default  # the Bot API server reads a malformed integer as its default
