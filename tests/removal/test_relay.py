"""Token-free relay links: Freepik never sees the bot token; formats Freepik refuses are fixed."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.i18n import messages
from bot.removal.relay import convert_for_freepik
from bot.removal.sources import ImageSource, SourceKind
from tests.conftest import BOT_TOKEN, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.images import is_transparent_png
from tests.fakes.updates import document_message, photo_message, private_user, update

USER = private_user(9300)


async def test_freepik_gets_a_token_free_link_and_the_cutout_arrives(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(photo_url_mode="relay")
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, file_id, unique_id)))
    (document,) = await _documents(telegram)
    assert is_transparent_png(document.files["document"].data)
    (call,) = freepik.calls
    assert call.image_url.startswith(f"{bot.http_url}/files/")
    assert BOT_TOKEN not in call.image_url
    assert BOT_TOKEN.split(":")[1] not in call.image_url
    token = call.image_url.rsplit("/", 1)[1]
    assert len(token) >= 43  # 32 random bytes, base64url
    assert freepik.fetched == [call.image_url]


async def test_link_expires_and_unknown_links_are_404(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(photo_url_mode="relay", relay_ttl=0.5)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(USER, file_id, unique_id)))
    await _documents(telegram)
    link = freepik.calls[0].image_url
    async with httpx.AsyncClient() as client:
        assert (await client.get(link)).status_code == 200
        await asyncio.sleep(0.6)
        assert (await client.get(link)).status_code == 404
        assert (await client.head(link)).status_code == 404
        assert (await client.get(f"{bot.http_url}/files/{'x' * 43}")).status_code == 404
        assert (await client.get(f"{bot.http_url}/files/..%2F..%2Fetc")).status_code == 404


async def test_webp_is_served_as_png_and_freepik_accepts_it(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    assert "WEBP" not in freepik.accepted_formats  # the fake refuses WebP, like Freepik
    await start_bot(photo_url_mode="relay")
    file_id, unique_id = telegram.add_file(make_image("WEBP", size=(70, 50)))
    message = document_message(
        USER, file_id, unique_id, file_name="s.webp", mime_type="image/webp", file_size=900
    )
    telegram.push_update(update(message=message))
    (document,) = await _documents(telegram)
    assert document.files["document"].filename == "s-nobg.png"
    assert freepik.calls[0].status == 200


async def test_minted_link_serves_png_for_webp_and_scales_40_megapixels(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await start_bot(photo_url_mode="relay")
    relay = bot.services.relay
    assert relay is not None
    webp_id, _webp_unique = telegram.add_file(make_image("WEBP", size=(30, 20)))
    big = Image.new("RGB", (8000, 5000), (10, 120, 200))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=60)
    big_id, _big_unique = telegram.add_file(buffer.getvalue())
    async with httpx.AsyncClient(timeout=60) as client:
        url = await relay.public_url(ImageSource.telegram_file(SourceKind.DOCUMENT, webp_id, "u"))
        head = await client.head(url)
        assert head.status_code == 200
        assert head.headers["content-type"] == "image/png"
        response = await client.get(url)
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (30, 20)

        url = await relay.public_url(ImageSource.telegram_file(SourceKind.PHOTO, big_id, "b"))
        response = await client.get(url)
        assert response.status_code == 200
        scaled = Image.open(io.BytesIO(response.content))
        assert scaled.format == "PNG"
        width, height = scaled.size
        assert width * height <= 25_000_000
        assert width * height > 24_000_000  # scaled down, not more than needed
        assert abs(width / height - 1.6) < 0.01

        # A JPEG within limits passes through untouched.
        small_jpeg = make_image("JPEG", size=(64, 48))
        small_id, _ = telegram.add_file(small_jpeg)
        url = await relay.public_url(ImageSource.telegram_file(SourceKind.PHOTO, small_id, "s"))
        response = await client.get(url)
        assert response.headers["content-type"] == "image/jpeg"
        assert response.content == small_jpeg


async def test_links_in_relay_mode_still_go_to_freepik_as_they_are(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await start_bot(photo_url_mode="relay")
    relay = bot.services.relay
    assert relay is not None
    link = "https://example.com/cat.jpg"
    assert await relay.public_url(ImageSource.link(link)) == link


async def _documents(telegram: FakeTelegram) -> list[Any]:
    await telegram.wait_for(lambda t: bool(t.sent_documents(USER["id"])), timeout=15)
    return list(telegram.sent_documents(USER["id"]))


def _encoded(fmt: str, size: tuple[int, int] = (40, 30), **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 160, 90)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (_animated_gif(), (20, 10)),
        (_encoded("BMP"), (40, 30)),
        (_encoded("TIFF"), (40, 30)),
        (_encoded("HEIF"), (40, 30)),
        (_encoded("WEBP"), (40, 30)),
    ],
    ids=["gif-first-frame", "bmp", "tiff", "heic", "webp"],
)
def test_conversion_to_png(data: bytes, size: tuple[int, int]) -> None:
    converted = Image.open(io.BytesIO(convert_for_freepik(data)))
    assert converted.format == "PNG"
    assert converted.size == size
    if size == (20, 10):  # the first (red) frame of the GIF
        pixel = converted.convert("RGB").getpixel((5, 5))
        assert isinstance(pixel, tuple)
        assert pixel[0] > 200
        assert pixel[2] < 50


async def test_relay_mode_takes_heic_files_that_telegram_mode_refuses(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(photo_url_mode="relay")
    file_id, unique_id = telegram.add_file(_encoded("HEIF"))
    message = document_message(
        USER,
        file_id,
        unique_id,
        file_name="IMG_0001.HEIC",
        mime_type="image/heic",
        file_size=500,
    )
    telegram.push_update(update(message=message))
    (document,) = await _documents(telegram)
    assert document.files["document"].filename == "IMG_0001-nobg.png"


async def test_telegram_mode_refuses_formats_freepik_cannot_read(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    file_id, unique_id = telegram.add_file(_animated_gif())
    message = document_message(
        USER, file_id, unique_id, file_name="a.gif", mime_type="image/gif", file_size=500
    )
    telegram.push_update(update(message=message))
    await telegram.wait_for(lambda t: bool(t.texts_to(USER["id"])))
    assert telegram.texts_to(USER["id"]) == [messages.not_an_image()]
    assert freepik.calls == []
