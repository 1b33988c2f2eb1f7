"""Webhook mode and the HTTP server: secret check, bad bodies, health, readiness."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bot.settings import ConfigError, load_settings
from tests.conftest import BOT_TOKEN, FREEPIK_KEY, WEBHOOK_SECRET, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import photo_message, private_user, update
from tests.support import post_update

USER = private_user(9100)


def photo_update(telegram: FakeTelegram, update_id: int = 1) -> dict[str, Any]:
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    return update(message=photo_message(USER, file_id, unique_id), update_id=update_id)


async def test_set_webhook_with_url_secret_and_update_types(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await start_bot(mode="webhook", webhook_url="https://bot.example.test/hook")
    (call,) = telegram.calls_of("setWebhook")
    assert call.params["url"] == "https://bot.example.test/hook"
    assert call.params["secret_token"] == WEBHOOK_SECRET
    assert set(call.params["allowed_updates"]) == {
        "message",
        "inline_query",
        "callback_query",
        "pre_checkout_query",
    }
    assert not telegram.calls_of("getUpdates")
    assert bot.application.updater is None


async def test_update_with_the_right_secret_is_processed(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.latency = 1.0
    bot = await start_bot(mode="webhook")
    assert bot.http_url is not None
    response = await post_update(bot.http_url, photo_update(telegram))
    # Answered at once, long before the 1 s Freepik job is done.
    assert response.status_code == 200
    assert freepik.calls == []
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=10)
    assert len(freepik.calls) == 1


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", WEBHOOK_SECRET + "x"])
async def test_wrong_or_missing_secret_is_refused(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, secret: str | None
) -> None:
    bot = await start_bot(mode="webhook")
    assert bot.http_url is not None
    response = await post_update(bot.http_url, photo_update(telegram), secret=secret)
    assert response.status_code == 403
    # A correct update afterwards proves the refused one was never queued.
    ok = await post_update(bot.http_url, photo_update(telegram, update_id=2))
    assert ok.status_code == 200
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=10)
    assert len(freepik.calls) == 1
    assert len(telegram.calls_of("getFile")) == 1


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'{"message": {}}', b'{"update_id": "x"}', b""]
)
async def test_malformed_body_is_400(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, body: bytes
) -> None:
    bot = await start_bot(mode="webhook")
    assert bot.http_url is not None
    response = await post_update(bot.http_url, body)
    assert response.status_code == 400
    assert freepik.calls == []


async def test_oversized_body_is_refused(start_bot: StartBot) -> None:
    bot = await start_bot(mode="webhook")
    assert bot.http_url is not None
    response = await post_update(bot.http_url, b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert response.status_code == 413


async def test_health_and_readiness(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.latency = 1.5
    bot = await start_bot(mode="webhook")
    assert bot.http_url is not None
    async with httpx.AsyncClient(base_url=bot.http_url) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert (await post_update(bot.http_url, photo_update(telegram))).status_code == 200
        await telegram.wait_for_call("getFile")
        bot.stop.set()
        await asyncio.sleep(0.2)
        # While the job drains: alive, not ready, and new updates are left to Telegram.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        late = await post_update(bot.http_url, photo_update(telegram, update_id=5))
        assert late.status_code == 503
    await bot.shutdown()
    assert len(telegram.sent_documents(USER["id"])) == 1


def test_webhook_mode_needs_url_and_a_valid_secret() -> None:
    base = {
        "telegram_bot_token": BOT_TOKEN,
        "freepik_api_key": FREEPIK_KEY,
        "mode": "webhook",
        "_env_file": None,
    }
    with pytest.raises(ConfigError, match="WEBHOOK_URL"):
        load_settings(**base, webhook_secret="abc")
    for secret in ("", "has space", "x" * 257, "bad!char"):
        with pytest.raises(ConfigError, match="WEBHOOK_SECRET") as caught:
            load_settings(**base, webhook_url="https://x.test/h", webhook_secret=secret)
        assert secret not in str(caught.value) or not secret
    settings = load_settings(**base, webhook_url="https://x.test/h", webhook_secret="a-B_9")
    assert settings.serves_http
