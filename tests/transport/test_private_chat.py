"""End to end in a private chat: the real Application against the fake Bot API and Freepik."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from bot.i18n import messages
from bot.removal.sources import ACCEPTED_MIME_TYPES
from tests.conftest import BOT_TOKEN, ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.images import is_transparent_png, png_size
from tests.fakes.updates import (
    document_message,
    photo_message,
    private_user,
    sticker_message,
    text_message,
)
from tests.support import USER, only_reply, photo, send, visible_messages, wait_document


async def wait_reply_text(telegram: FakeTelegram, chat_id: int, text: str) -> None:
    """Wait until the chat shows `text` as the bot's final word."""
    await telegram.wait_for(
        lambda t: any(v.text == text for v in visible_messages(t, chat_id)), timeout=15
    )


# --- the happy paths -------------------------------------------------------------------------


async def test_photo_comes_back_as_transparent_png_document(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    message = photo(telegram)
    message_id = send(telegram, message)
    await wait_document(telegram, USER)

    reply = only_reply(telegram, USER)
    assert reply.method == "sendDocument"
    assert reply.reply_to == message_id
    upload = reply.call.files["document"]
    unique_id = message["photo"][-1]["file_unique_id"]
    assert upload.filename == f"cutout-{unique_id}.png"
    assert is_transparent_png(upload.data)
    assert png_size(upload.data) == (96, 64)
    assert not telegram.calls_of("sendPhoto")

    # Freepik was given Telegram's file link of the largest size.
    assert len(freepik.calls) == 1
    largest_path = telegram.calls_of("getFile")[0].result["file_path"]
    assert freepik.calls[0].image_url == f"{telegram.url}/file/bot{BOT_TOKEN}/{largest_path}"
    assert telegram.calls_of("getFile")[0].params["file_id"] == message["photo"][-1]["file_id"]

    # The user saw it working: a status reply and the upload_document action.
    status = telegram.calls_of("sendMessage")[0]
    assert status.params["text"] == messages.working()
    assert telegram.calls_of("sendChatAction")[0].params["action"] == "upload_document"
    assert telegram.calls_of("deleteMessage")[0].params["message_id"] in (
        status.result["message_id"],
        str(status.result["message_id"]),
    )


async def test_image_file_keeps_its_name(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    file_id, unique_id = telegram.add_file(make_image("PNG", size=(40, 30)))
    send(
        telegram,
        document_message(
            private_user(USER),
            file_id,
            unique_id,
            file_name="holiday cat.png",
            mime_type="image/png",
            file_size=1234,
        ),
    )
    await wait_document(telegram, USER)
    upload = only_reply(telegram, USER).call.files["document"]
    assert upload.filename == "holiday cat-nobg.png"
    assert is_transparent_png(upload.data)
    assert len(freepik.calls) == 1


async def test_link_is_passed_to_freepik(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot()
    link = image_host.add("garden-gnome.jpg", make_image("JPEG")) + "?size=large"
    message_id = send(telegram, text_message(private_user(USER), f"please cut {link} thanks"))
    await wait_document(telegram, USER)
    reply = only_reply(telegram, USER)
    assert reply.reply_to == message_id
    assert freepik.calls[0].image_url == link
    assert reply.call.files["document"].filename == "garden-gnome-nobg.png"
    assert is_transparent_png(reply.call.files["document"].data)
    assert not telegram.calls_of("getFile")


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        # Freepik answers 400 "Failed to download the image" for a link that is gone.
        ("gone.jpg", None, messages.link_not_found),
        # A web page, not an image: Freepik fetches it and cannot read it.
        (
            "page.html",
            b"<!doctype html><html><body>a gallery</body></html>",
            messages.link_not_an_image,
        ),
    ],
    ids=["404", "html-page"],
)
async def test_a_dead_link_or_a_web_page_gets_its_own_explanation(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    image_host: ImageHost,
    name: str,
    data: bytes | None,
    expected: Any,
) -> None:
    await start_bot()
    link = f"{image_host.server.url}/img/{name}"
    if data is not None:
        image_host.add(name, data)
    send(telegram, text_message(private_user(USER), link))
    await wait_reply_text(telegram, USER, expected())
    await asyncio.sleep(0.2)
    assert only_reply(telegram, USER).text == expected()
    assert expected() != messages.image_rejected()


def test_the_formats_named_are_the_formats_taken() -> None:
    """Help, refusals and album reasons name exactly the image files the bot takes."""
    names = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP"}
    texts = [
        messages.help_text("", "nobg_bot"),
        messages.not_an_image(),
        messages.image_rejected(),
        messages.album_problem_reason(messages.not_an_image()),
    ]
    for text in texts:
        for mime, name in names.items():
            assert (name in text) == (mime in ACCEPTED_MIME_TYPES), (name, text)


async def test_start_and_help_explain_limits_and_privacy(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot(rate_limit="3/minute;20/day")
    (default,) = await telegram.wait_for_call(
        "setMyCommands", where=lambda c: not c.params.get("language_code")
    )
    names = {c["command"] for c in default.params["commands"]}
    # /privacy, /forget and /paysupport answer whether or not payments are on; /cancel ends a
    # My background wait.
    assert names == {
        "start",
        "help",
        "removebg",
        "nobg",
        "language",
        "cancel",
        "privacy",
        "forget",
        "paysupport",
    }
    for command in ("/start", "/help"):
        telegram.reset_calls()
        send(telegram, text_message(private_user(USER), command))
        await telegram.wait_for_call("sendMessage")
        text = telegram.calls_of("sendMessage")[0].params["text"]
        expected = ("photo", "link", "3 images per minute", "20 images per day", "Freepik")
        for words in (*expected, "Privacy"):
            assert words in text


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda t: document_message(
                private_user(USER),
                *t.add_file(b"%PDF-1.4"),
                file_name="a.pdf",
                mime_type="application/pdf",
                file_size=8,
            ),
            messages.not_an_image(),
        ),
        (
            lambda t: document_message(
                private_user(USER),
                *t.add_file(b"PK\x03\x04"),
                file_name="a.zip",
                mime_type="application/zip",
                file_size=4,
            ),
            messages.not_an_image(),
        ),
        (
            lambda t: document_message(
                private_user(USER),
                *t.add_file(b"x", file_size=25_000_000),
                file_name="huge.jpg",
                mime_type="image/jpeg",
                file_size=25_000_000,
            ),
            messages.input_too_large(),
        ),
        (lambda t: text_message(private_user(USER), "hello there"), messages.no_link()),
        (
            lambda t: text_message(private_user(USER), "ftp://example.org/a.png"),
            messages.not_http(),
        ),
        (lambda t: sticker_message(private_user(USER)), messages.no_link()),
        # Telegram says the file is empty: nothing Freepik could read, so no call is spent.
        (
            lambda t: document_message(
                private_user(USER),
                *t.add_file(b"", file_size=0),
                file_name="empty.png",
                mime_type="image/png",
                file_size=0,
            ),
            messages.image_rejected(),
        ),
        (
            lambda t: photo_message(
                private_user(USER), *t.add_file(b"", file_size=0), file_size=0
            ),
            messages.image_rejected(),
        ),
        # Freepik takes JPEG and PNG: a WebP file would be a paid call for a refusal.
        (
            lambda t: document_message(
                private_user(USER),
                *t.add_file(make_image("WEBP")),
                file_name="a.webp",
                mime_type="image/webp",
            ),
            messages.not_an_image(),
        ),
    ],
    ids=[
        "pdf",
        "zip",
        "too-large",
        "no-link",
        "ftp-link",
        "sticker",
        "empty-file",
        "empty-photo",
        "webp-file",
    ],
)
async def test_bad_input_gets_one_clear_reply_and_no_freepik_call(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, make, expected: str
) -> None:
    await start_bot()
    send(telegram, make(telegram))
    await wait_reply_text(telegram, USER, expected)
    await asyncio.sleep(0.2)
    assert only_reply(telegram, USER).text == expected
    assert freepik.calls == []


async def test_file_telegram_refuses_to_serve(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    # The message does not state the size, but getFile refuses the file.
    file_id, unique_id = telegram.add_file(b"x", file_size=30_000_000)
    message = document_message(
        private_user(USER),
        file_id,
        unique_id,
        file_name="big.png",
        mime_type="image/png",
        file_size=None,
    )
    send(telegram, message)
    await wait_reply_text(telegram, USER, messages.input_too_large())
    assert only_reply(telegram, USER).text == messages.input_too_large()
    assert freepik.calls == []


# --- Freepik faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inject", "expected", "calls"),
    [
        (lambda f: f.fail_next(400, times=9), messages.image_rejected(), 1),
        (lambda f: f.fail_next(401, times=9), messages.misconfigured(), 1),
        (lambda f: f.fail_next(429, times=9, retry_after=0.1), messages.busy(), 3),
        (lambda f: f.fail_next(500, times=9), messages.unavailable(), 2),  # may be billed
        (lambda f: f.fail_next(503, times=9), messages.unavailable(), 3),
        (lambda f: f.malformed_next(times=9), messages.unavailable(), 1),
        (lambda f: f.wrong_shape_next(times=9), messages.unavailable(), 1),
        (lambda f: f.expire_next(times=9), messages.unavailable(), 2),
        (lambda f: f.not_png_next(times=9), messages.unavailable(), 1),
    ],
    ids=["400", "401", "429", "500", "503", "malformed", "wrong-shape", "expired", "not-png"],
)
async def test_freepik_fault_gets_a_clear_reply(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    inject,
    expected: str,
    calls: int,
) -> None:
    inject(freepik)
    await start_bot()
    send(telegram, photo(telegram))
    await wait_reply_text(telegram, USER, expected)
    await asyncio.sleep(0.2)
    reply = only_reply(telegram, USER)
    assert reply.text == expected
    assert len(freepik.calls) == calls


async def test_a_rejected_image_is_logged_as_routine(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    # A user's unreadable image is nobody's fault on our side: no warning for the operator.
    freepik.fail_next(400, times=9)
    await start_bot()
    send(telegram, photo(telegram))
    await wait_reply_text(telegram, USER, messages.image_rejected())
    await asyncio.sleep(0.2)
    [line] = [r for r in info_logs.records if "outcome=rejected" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert not [r for r in info_logs.records if r.levelno >= logging.WARNING]


async def test_hanging_freepik_times_out_into_unavailable(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.hang_next(times=9)
    await start_bot(freepik_timeout=0.3)
    send(telegram, photo(telegram))
    await wait_reply_text(telegram, USER, messages.unavailable())
    assert len(freepik.calls) == 2  # a read timeout may have been billed: one retry only


async def test_bad_key_is_logged_for_the_operator(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(freepik_api_key="wrong-key")
    send(telegram, photo(telegram))
    await wait_reply_text(telegram, USER, messages.misconfigured())
    errors = [r for r in info_logs.records if r.levelno >= logging.ERROR]
    assert any("FREEPIK_API_KEY" in r.getMessage() for r in errors)


async def test_transient_faults_are_retried_to_success(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.fail_next(429, retry_after=0.5)
    freepik.fail_next(503)
    await start_bot()
    send(telegram, photo(telegram))
    await wait_document(telegram, USER)
    assert [c.status for c in freepik.calls] == [429, 503, 200]
    # Retry-After was honoured before the second attempt.
    assert freepik.calls[1].at - freepik.calls[0].at >= 0.45


async def test_lapsed_result_link_runs_the_job_again_once(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.expire_next()
    await start_bot()
    send(telegram, photo(telegram))
    await wait_document(telegram, USER)
    assert len(freepik.calls) == 2
    assert is_transparent_png(only_reply(telegram, USER).call.files["document"].data)


# --- Telegram faults ------------------------------------------------------------------------


async def test_flood_wait_on_upload_is_honoured(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    telegram.fail_next(
        "sendDocument",
        error_code=429,
        description="Too Many Requests: retry after 1",
        retry_after=1,
    )
    await start_bot()
    send(telegram, photo(telegram))
    await wait_document(telegram, USER)
    attempts = telegram.calls_of("sendDocument")
    assert len(attempts) == 2
    assert attempts[1].at - attempts[0].at >= 0.9
    assert only_reply(telegram, USER).method == "sendDocument"


async def test_user_who_blocked_the_bot_is_skipped(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot()
    telegram.block_chat(USER)
    send(telegram, photo(telegram))
    await telegram.wait_for(lambda t: bool(t.calls_of("sendMessage")))
    await asyncio.sleep(0.3)
    assert not telegram.calls_of("sendDocument")
    assert any("outcome=undeliverable" in r.getMessage() for r in info_logs.records)
    # The bot still serves others.
    send(telegram, photo(telegram, user_id=2002))
    await wait_document(telegram, 2002)
    assert not bot.task.done()


async def test_user_blocking_mid_job_is_logged_and_dropped(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    freepik.latency = 0.5
    await start_bot()
    send(telegram, photo(telegram))
    # The status is out and the file link made: the job is at Freepik for 0.5 s. (The fake
    # records a Freepik call when it answers: waiting for that raced the upload.)
    await telegram.wait_for(lambda t: bool(t.calls_of("getFile") and t.calls_of("sendMessage")))
    telegram.block_chat(USER)
    await telegram.wait_for(lambda t: bool(t.calls_of("sendDocument")))
    await asyncio.sleep(0.3)
    assert any("outcome=undeliverable" in r.getMessage() for r in info_logs.records)


# --- limits and concurrency -----------------------------------------------------------------


async def test_rate_limit_refuses_the_third_image_without_calling_freepik(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(rate_limit="2/minute")
    for _ in range(2):
        send(telegram, photo(telegram))
    await wait_document(telegram, USER, count=2)
    send(telegram, photo(telegram))
    await telegram.wait_for(
        lambda t: any("limit" in (v.text or "") for v in visible_messages(t, USER))
    )
    refusal = [v for v in visible_messages(telegram, USER) if v.method == "sendMessage"]
    assert len(refusal) == 1
    assert "next image in" in (refusal[0].text or "")
    assert "second" in (refusal[0].text or "")
    assert len(freepik.calls) == 2

    # Another user is unaffected.
    send(telegram, photo(telegram, user_id=2002))
    await wait_document(telegram, 2002)
    assert len(freepik.calls) == 3


async def test_admins_are_exempt(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(rate_limit="1/minute", admin_ids=frozenset({USER}))
    for _ in range(3):
        send(telegram, photo(telegram))
    await wait_document(telegram, USER, count=3)
    assert len(freepik.calls) == 3


async def test_ten_users_at_once_are_served_concurrently(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.latency = 1.0
    await start_bot(max_concurrent_jobs=10)
    users = [3000 + n for n in range(10)]
    started = time.monotonic()
    for user in users:
        send(telegram, photo(telegram, user_id=user))
    for user in users:
        await wait_document(telegram, user)
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, f"10 jobs of 1 s took {elapsed:.1f}s: they ran one after another"
    for user in users:
        assert only_reply(telegram, user).method == "sendDocument"


async def test_jobs_over_the_cap_are_queued_and_told_so(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.latency = 0.5
    await start_bot(max_concurrent_jobs=1)
    users = [4001, 4002, 4003]
    for user in users:
        send(telegram, photo(telegram, user_id=user))
        await telegram.wait_for_call(
            "sendMessage",
            where=lambda c, u=user: c.params.get("chat_id") == u,  # type: ignore[misc]
        )
    statuses = {
        int(c.params["chat_id"]): c.params["text"] for c in telegram.calls_of("sendMessage")
    }
    assert statuses[4001] == messages.working()
    assert statuses[4002].startswith("⏳")
    assert "1 image ahead" in statuses[4003]
    for user in users:
        await wait_document(telegram, user)
    # Served in arrival order, one at a time.
    order = [int(c.params["chat_id"]) for c in telegram.calls_of("sendDocument")]
    assert order == users
    assert max(len(freepik.calls), 0) == 3
