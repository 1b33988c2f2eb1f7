"""What the real Telegram refuses or does that a lenient fake would hide."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bot.i18n import messages
from bot.removal.sources import ImageSource, SourceKind
from bot.settings import ConfigError, load_settings
from bot.storage.base import StoredCutout
from tests.conftest import BOT_TOKEN, FREEPIK_KEY, WEBHOOK_SECRET, StartBot, bot_env
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import (
    group_chat,
    photo_message,
    private_user,
    sent_again,
    text_message,
    update,
)
from tests.redis_server import free_port
from tests.support import spawn_bot_process, visible_messages

ADMIN = 4400
USER = 4401


def send_photo(telegram: FakeTelegram, user_id: int) -> None:
    """Push a new private photo (a new image each time: no cache hit)."""
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(40, 30)))
    telegram.push_update(update(message=photo_message(private_user(user_id), file_id, unique_id)))


async def stop(process: asyncio.subprocess.Process) -> str:
    """SIGTERM the bot and return its stderr."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    return stderr.decode()


# --- ADMIN_IDS as a JSON list ---------------------------------------------------------------


def test_admin_ids_json_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", FREEPIK_KEY)
    monkeypatch.setenv("ADMIN_IDS", "[1, 22]")
    assert load_settings(_env_file=None).admin_ids == frozenset({1, 22})
    for bad in ('[1, "x"]', "[1,", '{"a": 1}', "[true]"):
        monkeypatch.setenv("ADMIN_IDS", bad)
        with pytest.raises(ConfigError, match="ADMIN_IDS"):
            load_settings(_env_file=None)


async def test_json_admin_ids_start_the_bot_and_exempt_the_admin(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    process = await spawn_bot_process(
        env=bot_env(telegram, freepik, ADMIN_IDS=f"[{ADMIN}, 2]", RATE_LIMIT="1/minute"),
        cwd=tmp_path,
    )
    try:
        await telegram.wait_for_call("getUpdates", timeout=15)
        for _ in range(2):
            send_photo(telegram, ADMIN)
            send_photo(telegram, USER)
        await telegram.wait_for(lambda t: len(t.sent_documents(ADMIN)) == 2, timeout=20)
        await telegram.wait_for(lambda t: len(t.sent_documents(USER)) == 1, timeout=20)
        await telegram.wait_for(
            lambda t: any("your limit" in (v.text or "") for v in visible_messages(t, USER)),
            timeout=20,
        )
        await asyncio.sleep(0.3)  # nothing more comes for the refused photo
        assert len(telegram.sent_documents(USER)) == 1
    finally:
        stderr = await stop(process)
    assert "Configuration error" not in stderr


# --- WEBHOOK_URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://bot.example.com/telegram", "https://"),
        ("https://bot.example.com:8080/telegram", "8080"),
    ],
)
async def test_webhook_url_telegram_would_refuse_stops_the_start(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path, url: str, needle: str
) -> None:
    process = await spawn_bot_process(
        env=bot_env(
            telegram,
            freepik,
            MODE="webhook",
            WEBHOOK_URL=url,
            WEBHOOK_SECRET=WEBHOOK_SECRET,
            LISTEN_HOST="127.0.0.1",
            LISTEN_PORT=str(free_port()),
        ),
        cwd=tmp_path,
    )
    _, stderr_bytes = await asyncio.wait_for(process.communicate(), 30)
    stderr = stderr_bytes.decode()
    assert process.returncode == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "WEBHOOK_URL" in lines[0]
    assert needle in lines[0]
    assert telegram.calls_of("setWebhook") == []


def test_webhook_url_allowed_forms() -> None:
    base = {
        "telegram_bot_token": BOT_TOKEN,
        "freepik_api_key": FREEPIK_KEY,
        "mode": "webhook",
        "webhook_secret": "abc",
        "_env_file": None,
    }
    for url in (
        "https://bot.example.com/telegram",
        "https://bot.example.com:8443/t",
        "https://bot.example.com:88/t",
        "http://127.0.0.1:9000/t",  # loopback: a local Bot API server or a test
        "http://localhost:9000/t",
    ):
        assert load_settings(**base, webhook_url=url).webhook_url == url
    with pytest.raises(ConfigError, match="WEBHOOK_URL"):
        load_settings(**base, webhook_url="http://10.0.0.5/t")


# --- cached file ids Telegram rejects, and bots sharing one Redis -----------------------------


def test_default_redis_prefix_carries_the_bot_id() -> None:
    base = {"telegram_bot_token": BOT_TOKEN, "freepik_api_key": FREEPIK_KEY, "_env_file": None}
    assert load_settings(**base).redis_prefix == f"nobg:{BOT_TOKEN.split(':')[0]}:"
    assert load_settings(**base, redis_prefix="shared:").redis_prefix == "shared:"


async def test_rejected_cached_file_id_is_dropped_and_the_job_runs_afresh(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot()
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(40, 30)))
    source = ImageSource.telegram_file(SourceKind.PHOTO, file_id, unique_id)
    stale = StoredCutout("BQACAgIAAxkBAAIstale-from-another-bot", "cutout.png", time.time())
    await bot.services.store.put_cutout(source.key, stale, 3600)

    message = photo_message(private_user(USER), file_id, unique_id)
    telegram.push_update(update(message=message))
    await telegram.wait_for(
        lambda t: [v.method for v in visible_messages(t, USER)] == ["sendDocument"], timeout=15
    )
    rejected, sent = telegram.calls_of("sendDocument")
    assert rejected.params["document"] == stale.file_id
    assert not rejected.ok
    assert "document" in sent.files  # uploaded afresh
    assert len(freepik.calls) == 1
    fresh = await bot.services.store.get_cutout(source.key)
    assert fresh is not None
    assert fresh.file_id == sent.result["document"]["file_id"]

    # The fresh entry now serves the same image for free.
    again = sent_again(message)
    telegram.push_update(update(message=again))
    await telegram.wait_for(lambda t: len(t.sent_documents(USER)) == 2, timeout=15)
    assert len(freepik.calls) == 1


async def test_two_bots_sharing_redis_never_mix_file_ids(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str
) -> None:
    other_token = "654321:OTHER-token_abcdefghijklmnopqrstuvw"
    image = make_image("JPEG", size=(40, 30))
    with FakeTelegram(token=other_token, bot_id=654321, username="other_bot") as other:
        await start_bot(storage_url=redis_url)
        await start_bot(
            storage_url=redis_url, telegram_bot_token=other_token, telegram_api_url=other.url
        )
        await other.wait_for_call("getUpdates", timeout=10)
        # The same photo in both bots: the same file_unique_id, each bot its own file_id.
        file_id, unique_id = telegram.add_file(image)
        telegram.push_update(update(message=photo_message(private_user(USER), file_id, unique_id)))
        await telegram.wait_for(lambda t: len(t.sent_documents(USER)) == 1, timeout=15)
        other_file_id, _ = other.add_file(image)
        other.push_update(
            update(message=photo_message(private_user(USER), other_file_id, unique_id))
        )
        await other.wait_for(lambda t: len(t.sent_documents(USER)) == 1, timeout=15)
        assert all(call.ok for call in other.calls_of("sendDocument"))
        assert len(freepik.calls) == 2


# --- forum topics and groups upgraded mid-job ---------------------------------------------------


def group_photo_command(
    telegram: FakeTelegram, chat: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A photo captioned /removebg in a group chat (extra fields merged into the message)."""
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(40, 30)))
    message = photo_message(private_user(USER), file_id, unique_id, caption="/removebg", chat=chat)
    message.update(extra)
    return message


async def test_forum_topic_request_is_answered_in_its_topic(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    forum = dict(group_chat(-1005001, "Forum"), is_forum=True)
    await start_bot()
    freepik.latency = 0.3  # the status message and chat action go out before the PNG
    message = group_photo_command(telegram, forum, message_thread_id=77, is_topic_message=True)
    telegram.push_update(update(message=message))
    await telegram.wait_for(lambda t: len(t.sent_documents(forum["id"])) == 1, timeout=15)
    sent = [
        call
        for call in telegram.calls
        if call.method in ("sendMessage", "sendChatAction", "sendDocument")
    ]
    assert {call.method for call in sent} == {"sendMessage", "sendChatAction", "sendDocument"}
    for call in sent:
        assert call.ok, telegram.summary()
        assert call.params.get("message_thread_id") == 77
    (document,) = telegram.sent_documents(forum["id"])
    assert document.result["message_thread_id"] == 77


async def test_thread_id_is_not_sent_outside_topics(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    plain = group_chat(-1005002, "Plain supergroup")
    await start_bot()
    telegram.push_update(update(message=group_photo_command(telegram, plain)))
    await telegram.wait_for(lambda t: len(t.sent_documents(plain["id"])) == 1, timeout=15)
    assert all("message_thread_id" not in call.params for call in telegram.calls)


async def test_group_upgraded_mid_job_gets_the_cutout_in_the_new_supergroup(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    old = group_chat(-4001, "Family", chat_type="group")
    new_id = -1004001
    await start_bot()
    freepik.latency = 1.0
    telegram.push_update(update(message=group_photo_command(telegram, old)))
    await telegram.wait_for_call(
        "sendMessage", where=lambda c: c.chat_id == old["id"] and c.ok, timeout=15
    )
    telegram.migrate_chat(old["id"], new_id)
    await telegram.wait_for(lambda t: len(t.sent_documents(new_id)) == 1, timeout=15)
    # Telegram said so once (to whichever call came first), and the bot remembered it.
    told = [c for c in telegram.calls if c.chat_id == old["id"] and not c.ok]
    assert told
    assert all("upgraded to a supergroup" in c.response["description"] for c in told)
    assert telegram.sent_documents(old["id"]) == []
    assert len(freepik.calls) == 1


async def test_handler_replies_follow_a_group_upgraded_to_a_supergroup(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    old = group_chat(-4002, "Club", chat_type="group")
    new_id = -1004002
    await start_bot()
    telegram.migrate_chat(old["id"], new_id)
    # A usage hint (a handler's own reply), then a job, both from the group's old id.
    telegram.push_update(update(message=text_message(private_user(USER), "/removebg", chat=old)))
    await telegram.wait_for(lambda t: messages.removebg_usage() in t.texts_to(new_id), timeout=15)
    [hint] = [c for c in telegram.calls_of("sendMessage") if c.chat_id == new_id]
    # The command stayed behind in the basic group: the hint quotes nothing in the new one.
    assert "reply_parameters" not in hint.params
    telegram.push_update(update(message=group_photo_command(telegram, old)))
    await telegram.wait_for(lambda t: len(t.sent_documents(new_id)) == 1, timeout=15)
    (document,) = [c for c in telegram.calls_of("sendDocument") if c.ok]
    assert "reply_parameters" not in document.params
    assert telegram.texts_to(old["id"]) == []
    assert len(freepik.calls) == 1
