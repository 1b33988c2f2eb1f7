"""Tests of the fakes themselves: the Freepik and Telegram fakes must be trustworthy."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
import warnings

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import (
    Bot,
    InlineQueryResultCachedDocument,
    InputMediaDocument,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

from tests.conftest import BOT_TOKEN, FREEPIK_KEY, ImageHost
from tests.fakes import FakeFreepik, FakeTelegram, ThreadedServer, make_image
from tests.fakes.images import is_transparent_png, png_size
from tests.fakes.updates import (
    detect_entities,
    document_message,
    group_chat,
    inline_query,
    photo_message,
    private_user,
    sticker_message,
    text_message,
    update,
)

REMOVE = "/v1/ai/beta/remove-background"
USER_ID = 4242


def client() -> httpx.Client:
    return httpx.Client(timeout=5.0, trust_env=False)


def remove(freepik: FakeFreepik, image_url: str, **kwargs: object) -> httpx.Response:
    with client() as c:
        return c.post(
            f"{freepik.url}{REMOVE}",
            data={"image_url": image_url},
            headers={"x-freepik-api-key": FREEPIK_KEY},
            **kwargs,  # type: ignore[arg-type]
        )


# ThreadedServer


def test_threaded_server_serves_and_stops_quickly() -> None:
    async def hello(request: Request) -> Response:
        return Response(b"hi")

    server = ThreadedServer(Starlette(routes=[Route("/", hello)]))
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.loop.is_running()
        with client() as c:
            assert c.get(server.url).text == "hi"
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    assert not server.running


def test_threaded_server_connections_have_nodelay() -> None:
    # uvicorn writes a response's head and body separately; with Nagle on, the body waits for
    # the client's delayed ACK (~40 ms per answer), which every test and the bench would pay.
    nodelay: list[int] = []

    async def probe(request: Request) -> Response:
        state = server._server.server_state if server._server is not None else None
        assert state is not None
        for connection in state.connections:
            sock = connection.transport.get_extra_info("socket")
            nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return Response(b"ok")

    server = ThreadedServer(Starlette(routes=[Route("/", probe)]))
    with server, client() as c:
        assert c.get(server.url).text == "ok"
    assert nodelay == [1]


# Freepik: spec enforcement


def test_freepik_requires_api_key(freepik: FakeFreepik) -> None:
    with client() as c:
        missing = c.post(f"{freepik.url}{REMOVE}", data={"image_url": "http://x.example/a.jpg"})
        wrong = c.post(
            f"{freepik.url}{REMOVE}",
            data={"image_url": "http://x.example/a.jpg"},
            headers={"x-freepik-api-key": "nope"},
        )
    assert (missing.status_code, missing.json()) == (401, {"message": "Missing API key"})
    assert (wrong.status_code, wrong.json()) == (401, {"message": "Invalid API key"})
    assert [(c.status, c.api_key) for c in freepik.calls] == [(401, None), (401, "nope")]
    assert freepik.fetched == []


def test_freepik_rejects_json_and_bad_image_url(freepik: FakeFreepik) -> None:
    headers = {"x-freepik-api-key": FREEPIK_KEY}
    with client() as c:
        as_json = c.post(
            f"{freepik.url}{REMOVE}", json={"image_url": "http://a.example/x.jpg"}, headers=headers
        )
        missing = c.post(f"{freepik.url}{REMOVE}", data={"other": "1"}, headers=headers)
        relative = c.post(f"{freepik.url}{REMOVE}", data={"image_url": "/x.jpg"}, headers=headers)
    assert as_json.status_code == 400
    assert "message" in as_json.json()
    for response in (missing, relative):
        assert response.status_code == 400
        body = response.json()
        assert body["message"]
        assert body["invalid_params"][0]["field"] == "image_url"
    assert [c.status for c in freepik.calls] == [400, 400, 400]
    assert freepik.calls[0].content_type.startswith("application/json")


def test_freepik_success_gives_transparent_png(
    freepik: FakeFreepik, image_host: ImageHost
) -> None:
    source = make_image("JPEG", size=(64, 48))
    image_url = image_host.add("cat.jpg", source)
    answer = remove(freepik, image_url)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"original", "high_resolution", "preview", "url"}
    assert all(value.startswith(f"{freepik.url}/v1/ai/beta/images/") for value in body.values())
    assert body["url"] == body["high_resolution"]
    assert body["high_resolution"].endswith("/high.png")
    with client() as c:
        high = c.get(body["high_resolution"])
        head = c.head(body["url"])
        preview = c.get(body["preview"])
        original = c.get(body["original"])
    assert high.headers["content-type"] == "image/png"
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(high.content))
    assert is_transparent_png(high.content)
    assert png_size(high.content) == (64, 48)
    assert is_transparent_png(preview.content)
    assert png_size(preview.content) < (64, 48)
    assert original.content == source
    assert freepik.fetched == [image_url]
    assert freepik.download_key_headers == [False, False]
    assert len(freepik.downloads) == 2
    assert freepik.calls[-1].status == 200
    assert freepik.calls[-1].content_type.startswith("application/x-www-form-urlencoded")


def test_freepik_png_input_and_padding(freepik: FakeFreepik, image_host: ImageHost) -> None:
    freepik.result_padding = 50_000
    body = remove(freepik, image_host.add("a.png", make_image("PNG", size=(30, 20)))).json()
    with client() as c:
        high = c.get(body["url"]).content
    assert len(high) > 50_000
    assert is_transparent_png(high)
    assert png_size(high) == (30, 20)


def test_freepik_results_expire(image_host: ImageHost) -> None:
    with FakeFreepik(api_key=FREEPIK_KEY, result_ttl=0.3) as freepik:
        body = remove(freepik, image_host.add("a.jpg", make_image())).json()
        with client() as c:
            assert c.get(body["url"]).status_code == 200
            time.sleep(0.35)
            expired = c.get(body["url"])
    assert expired.status_code == 404
    assert expired.json() == {"message": "Not found"}


def test_freepik_rejects_unsupported_or_unreachable_images(
    freepik: FakeFreepik, image_host: ImageHost
) -> None:
    webp = remove(freepik, image_host.add("a.webp", make_image("WEBP")))
    garbage = remove(freepik, image_host.add("a.jpg", b"not an image"))
    gone = remove(freepik, f"{image_host.server.url}/img/missing.jpg")
    assert (webp.status_code, webp.json()) == (400, {"message": "Unsupported image format"})
    assert garbage.status_code == 400
    assert gone.status_code == 400
    assert "message" in gone.json()
    freepik.accepted_formats = {"JPEG", "PNG", "WEBP"}
    assert remove(freepik, image_host.add("b.webp", make_image("WEBP"))).status_code == 200


# Freepik: faults


@pytest.mark.parametrize("status", [429, 500, 503])
def test_freepik_fail_next(freepik: FakeFreepik, image_host: ImageHost, status: int) -> None:
    image_url = image_host.add("a.jpg", make_image())
    freepik.fail_next(status, times=2, retry_after=2 if status == 429 else None)
    first, second, third = (remove(freepik, image_url) for _ in range(3))
    assert first.status_code == second.status_code == status
    assert first.json()["message"]
    if status == 429:
        assert first.headers["retry-after"] == "2"
    else:
        assert "retry-after" not in first.headers
    assert third.status_code == 200
    assert [c.status for c in freepik.calls] == [status, status, 200]
    assert freepik.fetched == [image_url]


def test_freepik_fail_next_custom_body(freepik: FakeFreepik, image_host: ImageHost) -> None:
    freepik.fail_next(402, body={"message": "Not enough credits"})
    answer = remove(freepik, image_host.add("a.jpg", make_image()))
    assert (answer.status_code, answer.json()) == (402, {"message": "Not enough credits"})


def test_freepik_malformed_and_wrong_shape(freepik: FakeFreepik, image_host: ImageHost) -> None:
    image_url = image_host.add("a.jpg", make_image())
    freepik.malformed_next()
    freepik.wrong_shape_next()
    malformed = remove(freepik, image_url)
    wrong = remove(freepik, image_url)
    assert malformed.status_code == 200
    with pytest.raises(ValueError, match=r"(?i)expecting|delimiter|unterminated"):
        malformed.json()
    assert wrong.status_code == 200
    assert "high_resolution" not in wrong.json()
    assert remove(freepik, image_url).status_code == 200


def test_freepik_hang_until_client_timeout(freepik: FakeFreepik, image_host: ImageHost) -> None:
    image_url = image_host.add("a.jpg", make_image())
    freepik.hang_next()
    with pytest.raises(httpx.ReadTimeout):
        remove(freepik, image_url, timeout=0.3)
    assert remove(freepik, image_url).status_code == 200
    assert [c.status for c in freepik.calls] == [0, 200]
    started = time.monotonic()
    freepik.stop()
    assert time.monotonic() - started < 3.0


def test_freepik_expire_and_not_png(freepik: FakeFreepik, image_host: ImageHost) -> None:
    image_url = image_host.add("a.jpg", make_image())
    freepik.expire_next()
    freepik.not_png_next()
    expired = remove(freepik, image_url).json()
    not_png = remove(freepik, image_url).json()
    with client() as c:
        assert c.get(expired["url"]).status_code == 404
        fake_png = c.get(not_png["url"])
    assert fake_png.headers["content-type"] == "image/png"
    assert fake_png.content.startswith(b"\xff\xd8")
    assert [c.status for c in freepik.calls] == [200, 200]


async def test_freepik_latency_and_wait_for_calls(
    freepik: FakeFreepik, image_host: ImageHost
) -> None:
    freepik.latency = 0.2
    image_url = image_host.add("a.jpg", make_image())
    started = time.monotonic()
    async with httpx.AsyncClient(trust_env=False) as c:
        task = asyncio.create_task(
            c.post(
                f"{freepik.url}{REMOVE}",
                data={"image_url": image_url},
                headers={"x-freepik-api-key": FREEPIK_KEY},
            )
        )
        calls = await freepik.wait_for_calls(1, timeout=3)
        assert (await task).status_code == 200
    assert time.monotonic() - started >= 0.2
    assert calls[0].image_url == image_url
    with pytest.raises(AssertionError):
        await freepik.wait_for_calls(2, timeout=0.05)
    freepik.reset()
    assert freepik.calls == []
    assert freepik.fetched == []
    assert freepik.downloads == []


# Telegram: driven by the real python-telegram-bot


async def test_tg_get_me_and_tokens(telegram: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "nobg_test_bot", True)
    assert me.supports_inline_queries
    wrong = Bot(
        "999:wrong", base_url=f"{telegram.url}/bot", base_file_url=f"{telegram.url}/file/bot"
    )
    with pytest.raises(InvalidToken):
        await wrong.initialize()
    await wrong.shutdown()
    with httpx.Client(trust_env=False) as c:
        unknown = c.post(f"{telegram.url}/bot{BOT_TOKEN}/fooBar")
    assert unknown.status_code == 404
    assert unknown.json()["description"] == "Not Found: method not found"
    assert telegram.calls_of("getMe")


async def test_tg_send_message_with_reply(telegram: FakeTelegram, bot: Bot) -> None:
    user = private_user(USER_ID)
    incoming = text_message(user, "hello")
    telegram.push_message(incoming)
    sent = await bot.send_message(
        USER_ID,
        "hi <b>there</b>",
        parse_mode="HTML",
        reply_parameters=ReplyParameters(message_id=incoming["message_id"]),
    )
    assert sent.text == "hi there"
    assert sent.chat.type == "private"
    assert sent.from_user is not None
    assert sent.from_user.id == telegram.bot_id
    assert sent.reply_to_message is not None
    assert sent.reply_to_message.message_id == incoming["message_id"]
    assert sent.message_id == incoming["message_id"] + 1
    (call,) = telegram.calls_of("sendMessage")
    assert call.params["chat_id"] == USER_ID
    assert call.params["reply_parameters"] == {"message_id": incoming["message_id"]}
    assert telegram.texts_to(USER_ID) == ["hi <b>there</b>"]
    edited = await bot.edit_message_text("bye", chat_id=USER_ID, message_id=sent.message_id)
    assert not isinstance(edited, bool)
    assert edited.text == "bye"
    with pytest.raises(BadRequest, match=r"(?i)not modified"):
        await bot.edit_message_text("bye", chat_id=USER_ID, message_id=sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)parse entities"):
        await bot.send_message(USER_ID, "a < b", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)reserved"):
        await bot.send_message(USER_ID, "v1.2", parse_mode="MarkdownV2")
    assert telegram.texts_to(USER_ID) == ["hi <b>there</b>", "bye"]
    group = await bot.send_message(-100123, "in group")
    assert group.chat.type == "supergroup"
    assert await bot.delete_message(USER_ID, sent.message_id)
    assert await bot.send_chat_action(USER_ID, "upload_document")


async def test_tg_one_message_id_sequence_per_chat(telegram: FakeTelegram, bot: Bot) -> None:
    user = private_user(USER_ID)
    first = text_message(user, "one")
    telegram.push_message(first)
    reply = await bot.send_message(USER_ID, "first answer")
    again = await bot.send_message(USER_ID, "second answer")
    # Telegram numbers users' and the bot's messages of a chat in one sequence.
    second = photo_message(user, "f", "u")
    third = text_message(user, "three")
    telegram.push_message(second)
    telegram.push_message(third)
    ids = [first["message_id"], reply.message_id, again.message_id]
    ids += [second["message_id"], third["message_id"]]
    assert len(set(ids)) == len(ids), ids
    assert ids[:3] == sorted(ids[:3])
    assert third["message_id"] > again.message_id
    kept = telegram.state.find_message(USER_ID, reply.message_id)
    assert kept is not None
    assert kept.get("text") == "first answer"
    group = group_chat(-100777)
    posted = await bot.send_message(-100777, "in the group")
    answer = text_message(user, "reply", chat=group)
    assert answer["message_id"] > posted.message_id
    with pytest.raises(AssertionError, match="already"):
        telegram.push_message(text_message(user, "same id", message_id=reply.message_id))
    telegram.push_message(first)  # Telegram may deliver the same update again


async def test_tg_send_document_and_resend(telegram: FakeTelegram, bot: Bot) -> None:
    data = make_image("PNG")
    sent = await bot.send_document(USER_ID, document=data, filename="cutout.png", caption="ok")
    assert sent.document is not None
    assert sent.document.file_name == "cutout.png"
    assert sent.document.file_size == len(data)
    assert sent.caption == "ok"
    (upload,) = telegram.sent_documents(USER_ID)
    part = upload.files["document"]
    assert (part.data, part.filename, part.content_type) == (data, "cutout.png", "image/png")
    assert "document" not in upload.params
    assert upload.params["caption"] == "ok"
    again = await bot.send_document(USER_ID, document=sent.document.file_id)
    assert again.document is not None
    assert again.document.file_unique_id == sent.document.file_unique_id
    resend = telegram.sent_documents(USER_ID)[1]
    assert resend.files == {}
    assert not resend.uploaded
    assert resend.params["document"] == sent.document.file_id
    assert telegram.file_bytes(sent.document.file_id) == data
    file = await bot.get_file(sent.document.file_id)
    assert bytes(await file.download_as_bytearray()) == data
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_document(USER_ID, document="no-such-file-id")


async def test_tg_get_file_and_download(telegram: FakeTelegram, bot: Bot) -> None:
    data = make_image("JPEG")
    file_id, unique_id = telegram.add_file(data)
    file = await bot.get_file(file_id)
    assert file.file_unique_id == unique_id
    assert file.file_size == len(data)
    assert file.file_path is not None
    assert file.file_path.startswith(f"{telegram.url}/file/bot{BOT_TOKEN}/photos/")
    assert bytes(await file.download_as_bytearray()) == data
    assert telegram.file_downloads == [file.file_path.rsplit(f"bot{BOT_TOKEN}/", 1)[1]]
    assert telegram.calls_of("getFile")[0].params == {"file_id": file_id}
    big_id, _ = telegram.add_file(b"x", file_size=20 * 1024 * 1024 + 1)
    with pytest.raises(BadRequest, match=r"(?i)file is too big"):
        await bot.get_file(big_id)
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await bot.get_file("nope")
    with httpx.Client(trust_env=False) as c:
        path = file.file_path.rsplit(f"bot{BOT_TOKEN}/", 1)[1]
        assert c.get(f"{telegram.url}/file/bot1:bad/{path}").status_code == 401
        assert c.get(f"{telegram.url}/file/bot{BOT_TOKEN}/photos/missing.jpg").status_code == 404


async def test_tg_blocked_and_injected_errors(telegram: FakeTelegram, bot: Bot) -> None:
    telegram.block_chat(USER_ID)
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(USER_ID, "hello?")
    with pytest.raises(Forbidden):
        await bot.send_document(USER_ID, document=b"abc", filename="a.png")
    assert [c.ok for c in telegram.calls_of("sendMessage")] == [False]
    telegram.unblock_chat(USER_ID)
    telegram.fail_next(
        "sendMessage",
        error_code=429,
        description="Too Many Requests: retry after 1",
        retry_after=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB deprecates int retry_after
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(USER_ID, "x")
        assert info.value.retry_after in (1, dt.timedelta(seconds=1))
    assert (await bot.send_message(USER_ID, "y")).text == "y"
    telegram.latency["sendMessage"] = 0.2
    started = time.monotonic()
    await bot.send_message(USER_ID, "slow")
    assert time.monotonic() - started >= 0.2
    assert telegram.texts_to(USER_ID) == ["y", "slow"]


async def test_tg_long_poll(telegram: FakeTelegram, bot: Bot) -> None:
    user = private_user(USER_ID, username="ann")
    message = photo_message(user, "PHOTO-FILE-ID", "PHOTO-UQ", width=800, height=600)
    timer = threading.Timer(0.3, telegram.push_update, args=(update(message),))
    started = time.monotonic()
    timer.start()
    try:
        updates = await bot.get_updates(timeout=3)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0
    (got,) = updates
    assert got.message is not None
    assert got.message.photo[-1].file_id == "PHOTO-FILE-ID"
    assert got.message.photo[-1].width == 800
    assert len({p.file_id for p in got.message.photo}) == 3
    # unconfirmed updates are delivered again; an offset confirms them
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [got.update_id]
    started = time.monotonic()
    assert await bot.get_updates(offset=got.update_id + 1, timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 2.0
    assert telegram.pending_updates == []


async def test_tg_conflicts(telegram: FakeTelegram, bot: Bot) -> None:
    # PTB's getUpdates connection pool holds one connection: a second instance polls here.
    other = Bot(
        BOT_TOKEN, base_url=f"{telegram.url}/bot", base_file_url=f"{telegram.url}/file/bot"
    )
    async with other:
        older = asyncio.create_task(other.get_updates(timeout=3))
        await telegram.wait_for_call("getUpdates")
        await asyncio.sleep(0.05)
        assert await bot.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="other getUpdates"):
            await older
    assert await bot.set_webhook("https://example.com/hook", secret_token="s3cret")
    assert telegram.webhook["secret_token"] == "s3cret"
    assert (await bot.get_webhook_info()).url == "https://example.com/hook"
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook(drop_pending_updates=True)


async def test_tg_send_media_group(telegram: FakeTelegram, bot: Bot) -> None:
    blobs = [make_image("PNG", color=(i * 60, 10, 10)) for i in range(3)]
    media = [
        InputMediaDocument(blob, filename=f"c{i}.png", caption=f"#{i}")
        for i, blob in enumerate(blobs)
    ]
    messages = await bot.send_media_group(USER_ID, media)
    assert len(messages) == 3
    assert len({m.media_group_id for m in messages}) == 1
    assert [m.document.file_name for m in messages if m.document] == [
        "c0.png",
        "c1.png",
        "c2.png",
    ]
    (call,) = telegram.calls_of("sendMediaGroup")
    attached = [item["media"] for item in call.params["media"]]
    assert all(name.startswith("attach://") for name in attached)
    assert [call.files[name.removeprefix("attach://")].data for name in attached] == blobs
    with pytest.raises(BadRequest):
        await bot.send_media_group(USER_ID, media[:1])


async def test_tg_commands_and_inline(telegram: FakeTelegram, bot: Bot) -> None:
    assert await bot.set_my_commands([("start", "Start"), ("help", "Help")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    assert telegram.calls_of("setMyCommands")[0].params["commands"][0] == {
        "command": "start",
        "description": "Start",
    }
    file_id, _ = telegram.add_file(make_image("PNG"))
    query = inline_query(private_user(USER_ID), "cat")
    telegram.push_update(query)
    result = InlineQueryResultCachedDocument("1", "Cutout", file_id)
    assert await bot.answer_inline_query(query["inline_query"]["id"], [result], cache_time=0)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_inline_query(query["inline_query"]["id"], [result])
    (call,) = [c for c in telegram.calls_of("answerInlineQuery") if c.ok]
    assert call.params["results"][0]["document_file_id"] == file_id
    assert call.params["cache_time"] == 0


async def test_tg_wait_for_helpers(telegram: FakeTelegram, bot: Bot) -> None:
    async def later() -> None:
        await asyncio.sleep(0.1)
        await bot.send_message(USER_ID, "done")

    task = asyncio.create_task(later())
    calls = await telegram.wait_for_call("sendMessage", where=lambda c: c.params["text"] == "done")
    await task
    assert calls[0].params["text"] == "done"
    await telegram.wait_for(lambda fake: fake.texts_to(USER_ID) == ["done"])
    with pytest.raises(AssertionError, match="sendMessage"):
        await telegram.wait_for_call("sendDocument", timeout=0.05)
    telegram.reset_calls()
    assert telegram.calls == []


async def test_tg_drives_a_real_application(telegram: FakeTelegram) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(update.effective_message.text or "")

    app = (
        ApplicationBuilder()
        .token(BOT_TOKEN)
        .base_url(f"{telegram.url}/bot")
        .base_file_url(f"{telegram.url}/file/bot")
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1)
        await telegram.wait_for_call("getUpdates")
        telegram.push_message(text_message(private_user(USER_ID), "ping"))
        await telegram.wait_for_call("sendMessage", where=lambda c: c.ok)
        await app.updater.stop()
        await app.stop()
    assert telegram.texts_to(USER_ID) == ["ping"]
    assert [c.method for c in telegram.calls[:3]] == ["getMe", "deleteWebhook", "getUpdates"]
    assert telegram.pending_updates == []  # the updater confirmed the update when it stopped


# update factories


def test_text_entities_use_utf16_offsets() -> None:
    text = "/start@nobg_test_bot 😀 see https://a.example/x.png, example.com/y.png or ftp://f.io"
    entities = detect_entities(text)
    kinds = [(e["type"], e["offset"], e["length"]) for e in entities]
    url_start = text.index("https://")
    # the emoji counts as two UTF-16 code units
    assert kinds[0] == ("bot_command", 0, len("/start@nobg_test_bot"))
    assert kinds[1] == ("url", url_start + 1, len("https://a.example/x.png"))
    assert kinds[2] == ("url", text.index("example.com") + 1, len("example.com/y.png"))
    assert kinds[3] == ("url", text.index("ftp://") + 1, len("ftp://f.io"))
    assert detect_entities("photo.jpg and 3.14") == []


async def test_factories_parse_with_ptb(bot: Bot) -> None:
    user = private_user(USER_ID, username="ann")
    group = group_chat(-100777, "Fans")
    payloads = [
        update(text_message(user, "/start@nobg_test_bot hi", chat=group)),
        update(
            document_message(
                user,
                "DOC",
                "DOCUQ",
                file_name="a.png",
                mime_type="image/png",
                file_size=10,
                caption="see example.com",
            )
        ),
        update(sticker_message(user)),
        update(photo_message(user, "P", "PU", caption="x", media_group_id="g1")),
        inline_query(user, "q", id="77"),
    ]
    parsed = [Update.de_json({"update_id": i, **p}, bot) for i, p in enumerate(payloads, 1)]
    assert parsed[0].message is not None
    assert parsed[0].message.chat.type == "supergroup"
    assert parsed[0].message.parse_entities(["bot_command"])
    assert parsed[1].message is not None
    assert parsed[1].message.document is not None
    assert parsed[1].message.caption_entities[0].type == "url"
    assert parsed[2].message is not None
    assert parsed[2].message.sticker is not None
    assert parsed[3].message is not None
    assert parsed[3].message.media_group_id == "g1"
    assert parsed[4].inline_query is not None
    assert parsed[4].inline_query.id == "77"
