"""Bad input and faults (issue 13): each is answered plainly and never breaks the bot."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app.web import SECRET_HEADER
from bot.i18n import messages
from bot.settings import Settings
from tests.conftest import WEBHOOK_PATH, WEBHOOK_SECRET, StartBot, bot_env
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.images import huge_png
from tests.fakes.updates import (
    document_message,
    group_chat,
    inline_query,
    photo_message,
    private_user,
    text_message,
    update,
)
from tests.redis_server import free_port
from tests.support import (
    descendants,
    only_reply,
    spawn_bot_process,
    visible_messages,
    vm_hwm_mb,
    vm_rss_mb,
    wait_document,
)

USER = private_user(13001, "Dana")
GROUP = -100_1313

MALFORMED_LINKS = [
    "http://[::1/cat.jpg",
    "http://[not-an-ip]/x.png",
    "http://example\uff0ecom\uff0fcat.jpg",  # full-width dot and slash in the host
    "https://example.com:99999/cat.jpg",
]


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No ERROR line and no traceback was logged."""
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def settled_reply(telegram: FakeTelegram, chat_id: int) -> None:
    """Wait for a reply in the chat, then give a wrongly repeated one time to show up."""
    await telegram.wait_for(lambda t: bool(visible_messages(t, chat_id)), timeout=10)
    await asyncio.sleep(0.2)


# --- 1. malformed links ----------------------------------------------------------------------


@pytest.mark.parametrize("link", MALFORMED_LINKS)
async def test_malformed_link_in_private_chat_gets_the_plain_explanation(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    caplog: pytest.LogCaptureFixture,
    link: str,
) -> None:
    await start_bot()
    telegram.push_update(update(message=text_message(USER, f"cut this {link}")))
    await settled_reply(telegram, USER["id"])
    assert only_reply(telegram, USER["id"]).text == messages.not_http()
    assert not freepik.calls
    no_errors_logged(caplog)


@pytest.mark.parametrize("link", MALFORMED_LINKS[:2])
async def test_malformed_link_after_removebg_in_a_group_is_answered(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    caplog: pytest.LogCaptureFixture,
    link: str,
) -> None:
    await start_bot()
    message = text_message(USER, f"/removebg {link}", chat=group_chat(GROUP))
    telegram.push_update(update(message=message))
    await settled_reply(telegram, GROUP)
    reply = only_reply(telegram, GROUP)
    assert reply.text == messages.not_http()
    assert reply.reply_to == message["message_id"]
    assert not freepik.calls
    no_errors_logged(caplog)


async def test_malformed_link_inline_gets_the_not_http_article(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    pushed = inline_query(USER, MALFORMED_LINKS[0])
    telegram.push_update(pushed)
    query_id = pushed["inline_query"]["id"]
    (call,) = await telegram.wait_for_call(
        "answerInlineQuery", where=lambda c: c.params.get("inline_query_id") == query_id
    )
    (article,) = call.params["results"]
    assert article["title"] == messages.inline_not_http_title()
    assert not freepik.calls


async def test_an_unexpected_error_in_a_group_still_gets_one_reply(
    start_bot: StartBot,
    telegram: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr("bot.transport.handlers.group.find_source", broken)
    await start_bot()
    message = text_message(USER, "/removebg https://example.com/a.png", chat=group_chat(GROUP))
    telegram.push_update(update(message=message))
    await settled_reply(telegram, GROUP)
    reply = only_reply(telegram, GROUP)
    assert reply.text == messages.internal_error()


# --- 6. the status message is best effort ----------------------------------------------------


async def test_status_message_failure_never_becomes_a_second_reply(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot()
    telegram.fail_next("sendMessage", error_code=500, description="Internal Server Error")
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    message = photo_message(USER, file_id, unique_id)
    telegram.push_update(update(message=message))
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=15)
    await asyncio.sleep(0.3)
    reply = only_reply(telegram, USER["id"])
    assert reply.method == "sendDocument"
    assert reply.reply_to == message["message_id"]
    assert not telegram.texts_to(USER["id"])  # no "something went wrong"
    assert len(freepik.calls) == 1
    recent = await bot.services.store.recent(USER["id"])
    assert [r.file_id for r in recent] == [reply.call.result["document"]["file_id"]]
    rendered = bot.services.metrics.render()
    assert b'outcome="ok"' in rendered
    assert b'outcome="internal_error"' not in rendered


# --- 7. getFile failures ---------------------------------------------------------------------


async def test_transient_getfile_failures_are_retried(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    telegram.fail_next("getFile", error_code=500, description="Internal Server Error", times=2)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, file_id, unique_id)))
    await wait_document(telegram, USER["id"], timeout=20)
    assert len(telegram.calls_of("getFile")) == 3
    assert len(freepik.calls) == 1
    assert only_reply(telegram, USER["id"]).method == "sendDocument"


@pytest.mark.parametrize("mode", ["telegram", "relay"])
async def test_getfile_that_keeps_failing_says_the_file_could_not_be_fetched(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, mode: str
) -> None:
    await start_bot(photo_url_mode=mode)
    telegram.fail_next("getFile", error_code=502, description="Bad Gateway", times=50)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, file_id, unique_id)))
    expected = messages.source_unavailable()
    await telegram.wait_for(
        lambda t: any(v.text == expected for v in visible_messages(t, USER["id"])), timeout=20
    )
    assert only_reply(telegram, USER["id"]).text == expected
    assert messages.undeliverable() not in telegram.texts_to(USER["id"])
    assert not freepik.calls


# --- 9. malformed webhook bodies -------------------------------------------------------------

MALFORMED_BODIES = {
    "message-is-a-string": b'{"update_id": 5, "message": "hello"}',
    "message-is-a-list": b'{"update_id": 5, "message": [1, 2]}',
    "chat-is-a-string": b'{"update_id": 5, "message": {"message_id": 1, "date": 1, "chat": "x"}}',
    "inline-query-without-fields": b'{"update_id": 5, "inline_query": {"id": "1"}}',
    "lone-surrogate": (
        b'{"update_id": 5, "message": {"message_id": 1, "date": 1, '
        b'"chat": {"id": 13001, "type": "private"}, "text": "\\ud800 http://a.example/x.png"}}'
    ),
    "lone-surrogate-key": b'{"update_id": 5, "\\udc80": 1}',
    "nested-brackets": b'{"update_id": 5, "message": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "nested-top-level": b"[" * 100_000 + b"]" * 100_000,
    "bool-update-id": b'{"update_id": true}',
    "invalid-utf8": b'{"update_id": 5, "x": "\xff"}',
}


async def test_every_malformed_webhook_body_gets_400_and_no_traceback(
    start_bot: StartBot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot(mode="webhook")
    headers = {"content-type": "application/json", SECRET_HEADER: WEBHOOK_SECRET}
    async with httpx.AsyncClient(base_url=str(bot.http_url), timeout=10) as client:
        statuses = {
            name: (await client.post(WEBHOOK_PATH, content=body, headers=headers)).status_code
            for name, body in MALFORMED_BODIES.items()
        }
        assert statuses == dict.fromkeys(MALFORMED_BODIES, 400)
        # Still serving: a good update afterwards is answered.
        good = update(message=text_message(USER, "hello"), update_id=77)
        assert (await client.post(WEBHOOK_PATH, json=good, headers=headers)).status_code == 200
    await settled_reply(telegram, USER["id"])
    assert only_reply(telegram, USER["id"]).text == messages.no_link()
    assert "Exception in ASGI application" not in caplog.text
    no_errors_logged(caplog)


async def test_uvicorn_log_lines_go_through_the_bots_json_logging(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    port = free_port()
    env = bot_env(
        telegram,
        freepik,
        MODE="webhook",
        WEBHOOK_URL="https://bot.example.test/telegram",
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        LISTEN_HOST="127.0.0.1",
        LISTEN_PORT=str(port),
        LOG_FORMAT="json",
    )
    process = await spawn_bot_process(env=env, cwd=tmp_path)
    try:
        await telegram.wait_for_call("setWebhook", timeout=20)
        # Garbage instead of HTTP: uvicorn itself logs "Invalid HTTP request received."
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await asyncio.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's too
    assert any(e["logger"].startswith("uvicorn") for e in entries), lines


# --- 2. an update the library cannot parse ---------------------------------------------------


def old_server_poll(update_id: int) -> dict[str, Any]:
    """A poll message as a Bot API server older than the library sends it (no persistent_id)."""
    message = text_message(USER, "x")
    del message["text"]
    message["poll"] = {
        "id": "5001",
        "question": "SECRET-QUESTION-TEXT?",
        "options": [{"text": "yes", "voter_count": 0}, {"text": "no", "voter_count": 0}],
        "total_voter_count": 0,
        "is_closed": False,
        "is_anonymous": True,
        "type": "regular",
        "allows_multiple_answers": False,
    }
    return {"update_id": update_id, "message": message}


async def test_an_update_the_library_cannot_parse_is_skipped_and_polling_goes_on(
    start_bot: StartBot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    await start_bot()
    before = len(telegram.calls_of("getUpdates"))
    telegram.push_update(old_server_poll(500))
    telegram.push_update(update(message=text_message(USER, "hello"), update_id=501))
    await telegram.wait_for(lambda t: bool(visible_messages(t, USER["id"])), timeout=10)
    assert only_reply(telegram, USER["id"]).text == messages.no_link()
    # The offset moved past both: nothing is fetched again and polling is not a busy loop.
    await asyncio.sleep(1.5)
    polls = telegram.calls_of("getUpdates")[before:]
    assert len(polls) <= 6, len(polls)
    assert not telegram.pending_updates
    # A later poll alone in its batch is skipped too, and later messages are still served.
    telegram.push_update(old_server_poll(502))
    await asyncio.sleep(0.3)
    telegram.push_update(update(message=text_message(USER, "again"), update_id=503))
    await telegram.wait_for(lambda t: len(t.texts_to(USER["id"])) == 2, timeout=10)
    skipped = [r for r in caplog.records if "cannot parse" in r.getMessage()]
    assert [r.levelno for r in skipped] == [logging.WARNING, logging.WARNING]
    assert "SECRET-QUESTION-TEXT" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- Also: routine transient errors are one warning line --------------------------------------


async def test_a_getupdates_502_is_one_warning_line(
    start_bot: StartBot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    await start_bot()
    telegram.fail_next("getUpdates", error_code=502, description="Bad Gateway")
    await telegram.wait_for(
        lambda t: any(not c.ok and c.response is not None for c in t.calls_of("getUpdates")),
        timeout=10,
    )
    telegram.push_update(update(message=text_message(USER, "hello")))
    await telegram.wait_for(lambda t: bool(visible_messages(t, USER["id"])), timeout=10)
    lines = [r for r in caplog.records if "Bad Gateway" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.exc_info], caplog.text


# --- 5. deadlines for the result download and the job ----------------------------------------


async def test_a_trickling_result_link_is_given_up_and_frees_its_slot(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(max_concurrent_jobs=1, result_download_timeout=1.5)
    freepik.trickle_next(interval=0.5)
    first_id, first_unique = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, first_id, first_unique)))
    second_user = private_user(13002)
    second_id, second_unique = telegram.add_file(make_image("PNG", size=(40, 30)))
    await freepik.wait_for_calls(1)
    telegram.push_update(update(message=photo_message(second_user, second_id, second_unique)))
    expected = messages.timed_out()
    await telegram.wait_for(
        lambda t: any(v.text == expected for v in visible_messages(t, USER["id"])), timeout=10
    )
    assert only_reply(telegram, USER["id"]).text == expected
    # The slot was given back: the other user's job, queued behind it, is served.
    await wait_document(telegram, second_user["id"], timeout=20)


async def test_a_job_past_its_deadline_is_answered(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(job_timeout=1.5, freepik_timeout=30.0)
    freepik.hang_next()
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, file_id, unique_id)))
    expected = messages.timed_out()
    await telegram.wait_for(
        lambda t: any(v.text == expected for v in visible_messages(t, USER["id"])), timeout=10
    )
    assert only_reply(telegram, USER["id"]).text == expected


# --- 10. idle and half-sent connections ------------------------------------------------------


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds."""
    try:
        data = await asyncio.wait_for(reader.read(), within)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


async def test_idle_and_half_sent_connections_are_dropped(start_bot: StartBot) -> None:
    bot = await start_bot(photo_url_mode="relay", http_header_timeout=1.0)
    assert bot.http_url is not None
    port = int(bot.http_url.rsplit(":", 1)[1])
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
    for index, (_, writer) in enumerate(connections):
        if index % 2:  # half of them send part of a request head, then nothing
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\nX-Slow: ")
            await writer.drain()
    # A complete request still gets its answer meanwhile.
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{bot.http_url}/healthz")).status_code == 200
    closed = await asyncio.gather(*(_closed_by_server(r, 4.0) for r, _ in connections))
    assert all(closed), f"{closed.count(False)} connections still open"
    for _, writer in connections:
        writer.close()


async def test_a_kept_alive_connection_sending_half_a_request_is_dropped(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(photo_url_mode="relay", http_header_timeout=1.0)
    assert bot.http_url is not None
    port = int(bot.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"ok"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    writer.write(b"GET /healthz HTTP/1.1\r\nHo")  # the next request never completes
    await writer.drain()
    assert await _closed_by_server(reader, 4.0)
    writer.close()


async def test_connections_beyond_the_cap_are_closed_at_once(start_bot: StartBot) -> None:
    bot = await start_bot(
        photo_url_mode="relay", http_header_timeout=30.0, http_max_connections=20
    )
    assert bot.http_url is not None
    port = int(bot.http_url.rsplit(":", 1)[1])
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    assert all(await asyncio.gather(*(_closed_by_server(r, 2.0) for r, _ in extra)))
    assert not any(await asyncio.gather(*(_closed_by_server(r, 0.3) for r, _ in held)))
    for _, writer in held + extra:
        writer.close()
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{bot.http_url}/healthz")).status_code == 200


async def test_a_webhook_body_sent_too_slowly_is_dropped(start_bot: StartBot) -> None:
    bot = await start_bot(mode="webhook", http_header_timeout=1.0)
    assert bot.http_url is not None
    port = int(bot.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: bot\r\n{SECRET_HEADER}: {WEBHOOK_SECRET}\r\n"
        "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(200), 5)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


# --- 8. one user's text flood ------------------------------------------------------------------


async def test_hints_to_a_flooding_user_are_limited(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot(hint_rate_limit="5/minute")
    for number in range(30):
        telegram.push_update(update(message=text_message(USER, f"hello {number}")))
    await telegram.wait_for(lambda t: len(t.texts_to(USER["id"])) >= 5, timeout=10)
    await asyncio.sleep(1.0)
    assert telegram.texts_to(USER["id"]) == [messages.no_link()] * 5
    # Another user is answered as usual.
    other = private_user(13003)
    telegram.push_update(update(message=text_message(other, "hi")))
    await telegram.wait_for(lambda t: t.texts_to(other["id"]) == [messages.no_link()], timeout=10)


async def test_one_chats_backlog_does_not_delay_another_chats_cutout(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(hint_rate_limit="", telegram_max_rate=20)
    for number in range(120):
        telegram.push_update(update(message=text_message(USER, f"spam {number}")))
    other = private_user(13004)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(other, file_id, unique_id)))
    await wait_document(telegram, other["id"], timeout=20)
    (document,) = telegram.sent_documents(other["id"])
    flood_replies_before = [
        c
        for c in telegram.calls_of("sendMessage")
        if c.chat_id == USER["id"] and c.at < document.at
    ]
    # Chats take turns at the overall rate: the cutout did not wait for the 120 hints.
    assert len(flood_replies_before) < 40, len(flood_replies_before)


# More texts than python-telegram-bot's pool of 256 handlers: before the handler slots were
# shared in turns, the other user's photo waited behind 164 of the flood's replies (~5 s).
FLOOD_TEXTS = 420


async def test_a_flood_larger_than_the_handler_pool_does_not_hold_up_another_user(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    # Every text answered, at the production overall rate: the flood's replies need 14 s.
    rate = Settings.model_fields["telegram_max_rate"].default
    await start_bot(hint_rate_limit="", telegram_max_rate=rate, grace=0.5)
    other = private_user(13005)

    async def cutout_for_other() -> float:
        """Push a new photo from `other`; seconds until its cutout was sent."""
        file_id, unique_id = telegram.add_file(make_image("JPEG"))
        count = len(telegram.sent_documents(other["id"]))
        pushed = time.monotonic()
        telegram.push_update(update(message=photo_message(other, file_id, unique_id)))
        await telegram.wait_for(
            lambda t: len(t.sent_documents(other["id"])) > count, timeout=FLOOD_TEXTS / rate + 10
        )
        return telegram.sent_documents(other["id"])[-1].at - pushed

    alone = min([await cutout_for_other() for _ in range(2)])
    for number in range(FLOOD_TEXTS):
        telegram.push_update(update(message=text_message(USER, f"spam {number}")))
    during = await cutout_for_other()
    document = telegram.sent_documents(other["id"])[-1]
    flood_replies_before = [
        c
        for c in telegram.calls_of("sendMessage")
        if c.chat_id == USER["id"] and c.at < document.at
    ]
    # Measured on 2 cores: alone 0.1-0.2 s, during 0.4-0.5 s after about 30 of the flood's
    # replies (before the fix: 4.9 s, after 170 of them).
    assert len(flood_replies_before) < FLOOD_TEXTS // 4, len(flood_replies_before)
    assert during < alone + 2.5, (alone, during)


async def test_the_rate_limiter_giving_up_is_one_warning_line(
    start_bot: StartBot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    await start_bot()
    telegram.fail_next(
        "sendMessage", error_code=429, description="Too Many Requests", retry_after=1, times=4
    )
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, file_id, unique_id)))
    await wait_document(telegram, USER["id"], timeout=20)
    for _ in range(100):  # the status message gives up after the cutout is already there
        gave_up = [r for r in caplog.records if "Rate limit hit after maximum" in r.getMessage()]
        if gave_up:
            break
        await asyncio.sleep(0.1)
    assert len(gave_up) == 1
    assert gave_up[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.exc_info], caplog.text


# --- 3. decompression bombs in relay mode ------------------------------------------------------


def png_document(telegram: FakeTelegram, user: dict[str, Any], data: bytes) -> dict[str, Any]:
    """A PNG file message whose bytes are registered with the fake Bot API."""
    file_id, unique_id = telegram.add_file(data)
    return document_message(
        user, file_id, unique_id, file_name="big.png", mime_type="image/png", file_size=len(data)
    )


async def test_a_144_megapixel_png_is_converted_within_the_memory_budget(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    port = free_port()
    env = bot_env(
        telegram,
        freepik,
        PHOTO_URL_MODE="relay",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        LISTEN_HOST="127.0.0.1",
        LISTEN_PORT=str(port),
        IMAGE_WORKERS="1",
    )
    process = await spawn_bot_process(env=env, cwd=tmp_path)
    try:
        await telegram.wait_for_call("getUpdates", timeout=20)
        idle = vm_rss_mb(process.pid)
        telegram.push_update(update(message=png_document(telegram, USER, huge_png(12000, 12000))))
        await wait_document(telegram, USER["id"], timeout=60)
        bot_peak = vm_hwm_mb(process.pid) - idle
        workers = {pid: vm_hwm_mb(pid) for pid in descendants(process.pid)}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert bot_peak <= 400, f"bot process peaked {bot_peak:.0f} MB above idle"
    assert workers, "the conversion ran in no worker process"
    assert max(workers.values()) <= 400, workers
    (call,) = freepik.calls
    assert call.status == 200
    assert b"Converted a PNG image of 12000x12000" in stderr


async def test_an_image_over_the_pixel_limit_is_refused_before_decoding(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(photo_url_mode="relay")
    telegram.push_update(update(message=png_document(telegram, USER, huge_png(20000, 20000))))
    expected = messages.too_many_pixels()
    await telegram.wait_for(
        lambda t: any(v.text == expected for v in visible_messages(t, USER["id"])), timeout=10
    )
    assert only_reply(telegram, USER["id"]).text == expected
    assert not freepik.calls


async def test_a_freepik_retry_does_not_decode_the_image_again(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.removal.relay")
    await start_bot(photo_url_mode="relay", image_workers=1)
    freepik.expire_next()  # the result link lapses: the job runs again, Freepik fetches again
    telegram.push_update(update(message=png_document(telegram, USER, huge_png(6000, 5000))))
    await wait_document(telegram, USER["id"], timeout=20)
    assert len(freepik.fetched) == 2
    conversions = [r for r in caplog.records if r.getMessage().startswith("Converted a PNG")]
    assert len(conversions) == 1


# --- 4. conversions never block the event loop ----------------------------------------------


async def test_conversions_leave_the_event_loop_and_other_users_alone(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(photo_url_mode="relay", image_workers=2)
    data = huge_png(12000, 12000)
    users = [private_user(13100 + n) for n in range(2)]
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.02)
            gaps.append(loop.time() - before - 0.02)

    ticking = asyncio.create_task(ticker())
    try:
        for user in users:
            telegram.push_update(update(message=png_document(telegram, user, data)))
        await asyncio.sleep(0.3)
        other = private_user(13199)
        file_id, unique_id = telegram.add_file(make_image("JPEG"))
        telegram.push_update(update(message=photo_message(other, file_id, unique_id)))
        async with httpx.AsyncClient(base_url=str(bot.http_url), timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
        # The fake Freepik cuts out the 25 MP results too, on the same cores: be patient.
        await wait_document(telegram, other["id"], timeout=60)
        for user in users:
            await wait_document(telegram, user["id"], timeout=60)
    finally:
        ticking.cancel()
    # The target is "within 1 s of normal"; before the fix the loop stalled ~8 s. The
    # fakes share this process and both cores, so the bound is the target, not a tighter one.
    assert max(gaps) < 1.0, f"the event loop stalled for {max(gaps):.2f}s"
