"""Token-free photo links: `{PUBLIC_BASE_URL}/files/<random>` served by the bot itself.

Freepik then never sees the bot token, and the bot can hand Freepik a format it accepts:
anything that is not JPEG or PNG is converted to PNG, and images over 25 MP are scaled down.
"""

from __future__ import annotations

import io
import logging
import math
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import httpx
from PIL import Image, UnidentifiedImageError
from telegram import Bot

from bot.sources import (
    MAX_INPUT_BYTES,
    ImageSource,
    SourceTooLarge,
    SourceUnavailable,
    get_file,
    telegram_file_id,
)
from bot.storage import StateStore

logger = logging.getLogger(__name__)

MAX_PIXELS = 25_000_000  # Freepik's output limit; larger inputs are scaled down first
PASS_THROUGH = {"JPEG": "image/jpeg", "PNG": "image/png"}
_SNIFF_BYTES = 256 * 1024
# Refuse decompression bombs long before they reach memory.
Image.MAX_IMAGE_PIXELS = 200_000_000

try:  # HEIC/HEIF (iPhone photos) when the optional `heic` extra is installed
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - depends on the installation
    HEIF_SUPPORT = False
else:
    register_heif_opener()
    HEIF_SUPPORT = True


class RelayNotFound(Exception):
    """Unknown or expired relay token, or Telegram no longer has the file."""


@dataclass(slots=True)
class RelayedImage:
    """What `GET /files/<token>` answers: a content type and the body, maybe streamed."""

    content_type: str
    body: AsyncGenerator[bytes, None]
    length: int | None = None


class RelayLinks:
    """Mints relay links (a `PublicUrlProvider`) and serves them."""

    def __init__(
        self,
        bot: Bot,
        store: StateStore,
        *,
        base_url: str,
        ttl: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._bot = bot
        self._store = store
        self._base_url = base_url.rstrip("/")
        self._ttl = ttl
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0),
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def public_url(self, source: ImageSource) -> str:
        """Links pass through; Telegram files get a fresh random relay link."""
        if source.url:
            return source.url
        file_id = telegram_file_id(source)
        # Ask Telegram first: a file it cannot give us is explained to the user as such,
        # and Freepik is never called (nor billed) for a link that would answer 404.
        await get_file(self._bot, file_id)
        token = secrets.token_urlsafe(32)  # 256 bits
        await self._store.put_relay(token, file_id, self._ttl)
        return f"{self._base_url}/files/{token}"

    async def open(self, token: str) -> RelayedImage:
        """The image behind `token`, converted if Freepik would refuse it."""
        file_id = await self._store.get_relay(token) if _plausible(token) else None
        if file_id is None:
            raise RelayNotFound("unknown or expired link")
        try:
            telegram_file = await get_file(self._bot, file_id)
        except (SourceUnavailable, SourceTooLarge) as err:
            raise RelayNotFound(f"Telegram refused the file: {err}") from err
        if not telegram_file.file_path:
            raise RelayNotFound("Telegram gave no file path")
        request = self._client.build_request("GET", telegram_file.file_path)
        response = await self._client.send(request, stream=True)
        if response.status_code != 200:
            await response.aclose()
            raise RelayNotFound(f"Telegram file download answered {response.status_code}")
        chunks = response.aiter_bytes()  # one iterator: an httpx stream can be read only once
        try:
            head = await _read_at_least(chunks, _SNIFF_BYTES)
            kind, size = _sniff(head)
            if kind in PASS_THROUGH and size is not None and size[0] * size[1] <= MAX_PIXELS:
                return RelayedImage(
                    PASS_THROUGH[kind], _continue(head, chunks, response), _length(response)
                )
            data = head + await _read_rest(chunks, MAX_INPUT_BYTES - len(head))
        except BaseException:
            await response.aclose()
            raise
        await response.aclose()
        png = convert_for_freepik(data)
        return RelayedImage("image/png", _once(png), len(png))


def convert_for_freepik(data: bytes) -> bytes:
    """A PNG of the (first frame of the) image, scaled down to at most 25 MP."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            frame = image.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise RelayNotFound(f"cannot decode the image: {type(err).__name__}") from err
    pixels = frame.width * frame.height
    if pixels > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / pixels)
        size = (max(1, int(frame.width * scale)), max(1, int(frame.height * scale)))
        frame = frame.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    frame.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _plausible(token: str) -> bool:
    return 20 <= len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)


def _sniff(head: bytes) -> tuple[str | None, tuple[int, int] | None]:
    try:
        with Image.open(io.BytesIO(head)) as image:
            return image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None, None


def _length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def _read_at_least(chunks: AsyncIterator[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < size:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


async def _read_rest(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise RelayNotFound("image larger than 20 MB")
        parts.append(chunk)
    return b"".join(parts)


async def _continue(
    head: bytes, chunks: AsyncIterator[bytes], response: httpx.Response
) -> AsyncGenerator[bytes, None]:
    try:
        yield head
        async for chunk in chunks:
            yield chunk
    finally:
        await response.aclose()


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data
