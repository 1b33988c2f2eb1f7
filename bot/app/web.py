"""The bot's one HTTP server: webhook, health, readiness, metrics and relay links."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from telegram import Bot, Update

from bot.app.wiring import AnyApplication
from bot.removal.relay import RelayNotFound
from bot.storage.base import StorageUnavailable
from bot.transport.services import services_of

logger = logging.getLogger(__name__)

MAX_UPDATE_BYTES = 1024 * 1024  # updates are small JSON documents
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


@dataclass
class WebState:
    """What the routes need; `accepting` turns off webhook intake at shutdown."""

    application: AnyApplication
    webhook_path: str | None
    webhook_secret: str
    accepting: bool = True
    ready: bool = False
    body_timeout: float = 10.0  # a webhook body sent slower than this is dropped
    notes: list[str] = field(default_factory=list)


class MalformedUpdate(ValueError):
    """A webhook body that is not an update python-telegram-bot can use."""


def parse_update(body: bytes, bot: Bot) -> tuple[Update, str]:
    """The update in a webhook body and its JSON as sent; `MalformedUpdate` for anything else.

    The JSON is what the journal records: `Update.to_dict()` does not always serialise.
    """
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise MalformedUpdate("not a JSON object")
        update_id = data.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise MalformedUpdate("no integer update_id")
        # Telegram sends valid UTF-8: a lone surrogate (a "\ud800" escape) would only fail
        # later, when a handler encodes the text.
        json.dumps(data, ensure_ascii=False).encode()
        raw = json.dumps(data, separators=(",", ":"))
        update = Update.de_json(data, bot)
    except MalformedUpdate:
        raise
    except RecursionError as err:  # deeply nested brackets
        raise MalformedUpdate("nested too deeply") from err
    except Exception as err:
        # de_json trusts the shape: a string where an object belongs raises AttributeError,
        # TypeError, ... Name the error only: the body may hold users' texts.
        raise MalformedUpdate(type(err).__name__) from err
    if update is None:
        raise MalformedUpdate("empty update")
    return update, raw


def create_web_app(state: WebState) -> Starlette:
    """The Starlette app serving every route of the bot."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        problems = await _readiness_problems(state)
        if problems:
            return PlainTextResponse("not ready: " + "; ".join(problems), status_code=503)
        return PlainTextResponse("ready")

    async def metrics(request: Request) -> Response:
        services = services_of(state.application)
        if services.gate.budget.budget is not None:
            try:  # the gauge shows what all replicas spent, read at scrape time
                await services.gate.budget.remaining()
            except StorageUnavailable as err:
                logger.warning("Could not read the Freepik budget: %s", err)
        return Response(
            services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def relay(request: Request) -> Response:
        services = services_of(state.application)
        if services.relay is None:
            return PlainTextResponse("not found", status_code=404)
        try:
            image = await services.relay.open(request.path_params["token"])
        except RelayNotFound as err:
            logger.info("Relay link refused: %s", err)
            return PlainTextResponse("not found", status_code=404)
        except StorageUnavailable as err:
            logger.error("Relay link lookup failed: %s", err)
            return PlainTextResponse("temporarily unavailable", status_code=503)
        headers = {"cache-control": "no-store"}
        if image.length is not None:
            headers["content-length"] = str(image.length)
        if request.method == "HEAD":
            await image.body.aclose()
            return Response(status_code=200, media_type=image.content_type, headers=headers)
        return StreamingResponse(image.body, media_type=image.content_type, headers=headers)

    async def webhook(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), state.webhook_secret.encode()):
            return PlainTextResponse("forbidden", status_code=403)
        if not state.accepting:
            # Shutting down: Telegram keeps the update and delivers it again later.
            return PlainTextResponse("shutting down", status_code=503)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPDATE_BYTES:
            return PlainTextResponse("too large", status_code=413)
        body = bytearray()
        try:
            async with asyncio.timeout(state.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_UPDATE_BYTES:
                        return PlainTextResponse("too large", status_code=413)
        except TimeoutError:
            return PlainTextResponse("request body too slow", status_code=408)
        try:
            update, raw = parse_update(bytes(body), state.application.bot)
        except MalformedUpdate as err:
            logger.warning("Rejected a malformed webhook body: %s", err)
            return PlainTextResponse("malformed update", status_code=400)
        # Recorded before the 200: once Telegram has its answer it will not send it again.
        services = services_of(state.application)
        if services.stream is not None:
            # Several replicas: into the shared stream; whichever replica is free takes it.
            try:
                await services.stream.append(update, raw)
            except StorageUnavailable as err:
                logger.error("Could not add the webhook update to the stream: %s", err)
                return PlainTextResponse("storage unavailable", status_code=503)
            return PlainTextResponse("ok")
        journal = services.journal
        try:
            if not await journal.accept(update, raw):
                return PlainTextResponse("ok")  # a repeat of an update already taken
        except StorageUnavailable as err:
            logger.error("Could not record webhook update: %s", err)
            return PlainTextResponse("storage unavailable", status_code=503)
        journal.queued(update)
        # Answer at once; the Application processes it (Telegram must not time out and retry).
        await state.application.update_queue.put(update)
        return PlainTextResponse("ok")

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/files/{token}", relay, methods=["GET", "HEAD"]),
    ]
    if state.webhook_path:
        routes.append(Route(state.webhook_path, webhook, methods=["POST"]))
    return Starlette(routes=routes)


async def _readiness_problems(state: WebState) -> list[str]:
    problems = []
    if not state.ready or not state.application.running:
        problems.append("bot not started")
        return problems
    services = services_of(state.application)
    if not await services.store.ping():
        problems.append("storage unreachable")
    if not await services.admission.users.ping():
        problems.append("rate-limit storage unreachable")
    return problems
