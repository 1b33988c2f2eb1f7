"""Bot API calls on aiohttp: the bodies httpx would send, and `HTTPXRequest`'s errors."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from telegram import InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.app.telegram_request import AiohttpRequest, _multipart
from bot.removal.pipeline import Cutout
from bot.transport.uploads import PiecesReader, upload_file
from tests.fakes.forms import parse_multipart, parse_urlencoded
from tests.redis_server import free_port
from tests.support import answer, read_request, serving


def request_data(**values: object) -> RequestData:
    """What python-telegram-bot hands a request for a call with these parameters."""
    return RequestData(
        [RequestParameter.from_input(name, value) for name, value in values.items()]
    )


@pytest.mark.parametrize(
    "document",
    [
        InputFile(b"\x89PNG" + bytes(range(256)) * 700, filename="cutout.png"),
        # Read from the start whatever the position, as httpx does.
        InputFile(io.BytesIO(b"\x89PNG rest"), filename="a.png", read_file_handle=False),
        InputFile(b"x", filename='we"ird\\ na\nme – ü.png', attach=True),
        # A downloaded cutout: written from its pieces; httpx reads it as a file.
        upload_file(Cutout((b"\x89P", b"NG" * 40_000, b"", b"end"), "cutout.png")),
    ],
)
def test_the_multipart_body_is_the_one_httpx_writes(document: InputFile) -> None:
    if isinstance(document.input_file_content, io.BytesIO):
        document.input_file_content.seek(3)
    data = request_data(chat_id=42, caption="Done ✓", document=document)
    boundary = "0123456789abcdef0123456789abcdef"
    ours = b"".join(_multipart(data.json_parameters, data.multipart_data, boundary))
    content_type = f"multipart/form-data; boundary={boundary}"
    theirs = httpx.Request(
        "POST",
        "http://127.0.0.1/bot/sendDocument",
        data=data.json_parameters,
        files=data.multipart_data,
        headers={"Content-Type": content_type},
    )
    assert ours == b"".join(theirs.stream)  # type: ignore[arg-type]
    fields, files = parse_multipart(content_type, ours)
    assert fields["caption"] == "Done ✓"
    content = document.input_file_content
    whole = content
    if isinstance(content, PiecesReader):
        whole = b"".join(content.pieces)
    elif isinstance(content, io.BytesIO):
        whole = content.getvalue()
    assert files[document.attach_name or "document"].data == whole


async def test_calls_and_uploads_arrive_as_the_fake_telegram_reads_them() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def bot_api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, headers, body = await read_request(reader)
            seen.append((headers, body))
            writer.write(answer(json.dumps({"ok": True, "result": True}).encode()))
            await writer.drain()

    png = b"\x89PNG" + b"\0" * 300_000
    request = AiohttpRequest(connection_pool_size=2)
    await request.initialize()
    try:
        async with serving(bot_api) as url:
            plain = await request.post(f"{url}/bot/sendChatAction", request_data(chat_id=7))
            upload = await request.post(
                f"{url}/bot/sendDocument",
                request_data(chat_id=7, document=InputFile(png, filename="c.png")),
            )
    finally:
        await request.shutdown()
    assert plain is True
    assert upload is True
    headers, body = seen[0]
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_urlencoded(body) == {"chat_id": "7"}
    headers, body = seen[1]
    fields, files = parse_multipart(headers["content-type"], body)
    assert int(headers["content-length"]) == len(body)
    assert fields == {"chat_id": "7"}
    assert files["document"].data == png
    assert files["document"].filename == "c.png"
    assert files["document"].content_type == "image/png"


async def test_no_answer_in_time_is_timed_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    request = AiohttpRequest(read_timeout=0.2)
    await request.initialize()
    try:
        async with serving(silent) as url:
            with pytest.raises(TimedOut):
                await request.do_request(f"{url}/bot/getMe", "POST")
    finally:
        await request.shutdown()


async def test_a_refused_connection_is_a_network_error_named_after_httpx() -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError, match=r"^httpx\.ConnectError: "):
            await request.do_request(f"http://127.0.0.1:{free_port()}/bot/getMe", "POST")
    finally:
        await request.shutdown()
