"""Shared fixtures: the fake servers and the real bot running against them."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot

from bot.app.runner import run_bot
from bot.app.services import ServiceOptions
from bot.app.wiring import AnyApplication, build_application
from bot.removal.freepik import RetryPolicy
from bot.settings import Settings, load_settings
from bot.transport.services import Services, services_of
from tests.fakes import FakeFreepik, FakeTelegram, ThreadedServer
from tests.fakes.images import sniff_mime
from tests.fakes.server import listening_socket
from tests.redis_server import RedisServer

BOT_TOKEN = "123456:TEST-token_abcdefghijklmnopqrstuvwx"
FREEPIK_KEY = "test-freepik-key"
WEBHOOK_SECRET = "test-webhook-secret_123"
WEBHOOK_PATH = "/telegram"
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, max_retry_after=5.0)


@pytest.fixture
def freepik() -> Iterator[FakeFreepik]:
    """A fake Freepik server on 127.0.0.1."""
    with FakeFreepik(api_key=FREEPIK_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One redis-server for the whole run (tests flush it)."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_session: RedisServer) -> str:
    """An empty Redis database."""
    redis_session.flush()
    return redis_session.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and restart."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The test's log records at INFO and above (the bot's request lines are INFO)."""
    with caplog.at_level(logging.INFO):
        yield caplog


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    """A fake Telegram Bot API server on 127.0.0.1."""
    with FakeTelegram(token=BOT_TOKEN) as fake:
        yield fake


@pytest.fixture
async def bot(telegram: FakeTelegram) -> AsyncIterator[Bot]:
    """python-telegram-bot's Bot on the fake Telegram, for tests of the fake itself."""
    url = telegram.url
    async with Bot(BOT_TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot") as made:
        yield made


_DATA_ROOT = Path(tempfile.mkdtemp(prefix="nobg-test-data-"))
atexit.register(shutil.rmtree, _DATA_ROOT, ignore_errors=True)


def scratch_data_dir() -> Path:
    """A fresh DATA_DIR outside the checkout (the default ./data must never be written)."""
    return Path(tempfile.mkdtemp(prefix="data-", dir=_DATA_ROOT))


def bot_env(telegram: FakeTelegram, freepik: FakeFreepik, **extra: str) -> dict[str, str]:
    """Environment for a `python -m bot` subprocess pointed at the fakes."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in {name.upper() for name in Settings.model_fields}
    }
    env.update(
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        FREEPIK_API_KEY=FREEPIK_KEY,
        TELEGRAM_API_URL=telegram.url,
        FREEPIK_API_URL=freepik.url,
        RATE_LIMIT="",
        DATA_DIR=str(scratch_data_dir()),
    )
    env.update(extra)
    return env


class ImageHost:
    """A plain web server on 127.0.0.1 hosting images, standing in for any site a user links."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}
        self.server = ThreadedServer(Starlette(routes=[Route("/img/{name}", self._serve)]))

    async def _serve(self, request: Request) -> Response:
        data = self.images.get(request.path_params["name"])
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type=sniff_mime(data, request.path_params["name"]))

    def add(self, name: str, data: bytes) -> str:
        """Host `data` as `name`; return its URL."""
        self.images[name] = data
        return f"{self.server.url}/img/{name}"


@pytest.fixture
def image_host() -> Iterator[ImageHost]:
    """A web server hosting images for link tests."""
    host = ImageHost()
    with host.server:
        yield host


@dataclass
class RunningBot:
    """The real Application, polling the fake Bot API from a task in the test's loop."""

    application: AnyApplication
    settings: Settings
    stop: asyncio.Event
    task: asyncio.Task[None]
    http_url: str | None = None

    @property
    def services(self) -> Services:
        """The started services."""
        return services_of(self.application)

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Ask the bot to stop and wait until it has."""
        self.stop.set()
        await asyncio.wait_for(asyncio.shield(self.task), timeout)


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest.fixture
async def start_bot(telegram: FakeTelegram, freepik: FakeFreepik) -> AsyncIterator[StartBot]:
    """Start the bot with setting overrides; every bot is stopped at teardown."""
    running: list[RunningBot] = []

    async def start(
        *,
        grace: float = 10.0,
        retry: RetryPolicy = FAST_RETRY,
        options: ServiceOptions | None = None,
        **overrides: Any,
    ) -> RunningBot:
        values: dict[str, Any] = {
            "telegram_bot_token": BOT_TOKEN,
            "freepik_api_key": FREEPIK_KEY,
            "telegram_api_url": telegram.url,
            "freepik_api_url": freepik.url,
            "rate_limit": "",
            "freepik_timeout": 5.0,
            "shutdown_grace": grace,
            "data_dir": scratch_data_dir(),
        }
        values.update(overrides)
        sockets: list[socket.socket] | None = None
        http_url: str | None = None
        if values.get("mode") == "webhook" or values.get("photo_url_mode") == "relay":
            # Bind the bot's HTTP port up front, so the URLs are known before it starts.
            sock = listening_socket()
            sockets = [sock]
            http_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            values.setdefault("public_base_url", http_url)
            values.setdefault("webhook_url", f"https://bot.example.test{WEBHOOK_PATH}")
            values.setdefault("webhook_secret", WEBHOOK_SECRET)
            values.setdefault("webhook_path", WEBHOOK_PATH)
        settings = load_settings(_env_file=None, **values)
        options = dataclasses.replace(options or ServiceOptions(), freepik_retry=retry)
        application = build_application(settings, options)
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_bot(application, settings, stop, poll_timeout=1, sockets=sockets)
        )
        bot = RunningBot(application, settings, stop, task, http_url)
        running.append(bot)
        started = "setWebhook" if settings.mode == "webhook" else "getUpdates"
        await telegram.wait_for_call(started, timeout=10)
        while not application.running:  # the webhook route needs the Application started
            await asyncio.sleep(0.01)
        return bot

    yield start
    for bot in running:
        if not bot.task.done():
            await bot.shutdown()
        else:
            bot.task.result()  # surface a crash of the bot as a test error
