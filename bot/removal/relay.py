"""Token-free photo links: `{PUBLIC_BASE_URL}/files/<random>` served by the bot itself.

Freepik then never sees the bot token, and the bot can hand Freepik a format it accepts:
anything that is not JPEG or PNG is converted to PNG, and images over 25 MP are scaled down.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import httpx

from bot.imaging.convert import (
    HEIF_SUPPORT,
    MAX_OUTPUT_PIXELS,
    ImageInfo,
    TooManyPixels,
    UnreadableImage,
    check_pixels,
    convert_for_freepik,
    read_info,
)
from bot.imaging.pool import CpuPool
from bot.removal.sources import (
    MAX_INPUT_BYTES,
    ImageSource,
    SourceKind,
    SourceTooLarge,
    SourceUnavailable,
    TelegramFiles,
    telegram_file_id,
)
from bot.storage.base import StateStore

__all__ = ["HEIF_SUPPORT", "RelayLinks", "RelayNotFound", "RelayedImage", "convert_for_freepik"]

logger = logging.getLogger(__name__)

MAX_PIXELS = MAX_OUTPUT_PIXELS  # larger inputs are scaled down first
PASS_THROUGH = {"JPEG": "image/jpeg", "PNG": "image/png"}
_SNIFF_BYTES = 256 * 1024
CONVERTED_CACHE_BYTES = 256 * 1024 * 1024


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
        files: TelegramFiles,
        store: StateStore,
        *,
        base_url: str,
        ttl: float = 300.0,
        cpu: CpuPool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._files = files
        self._cpu = cpu
        # Converted PNGs by file id: Freepik's retries and the pipeline's re-runs fetch the
        # same image again, and must not decode it again.
        self._converted = _ConvertedCache(ttl, CONVERTED_CACHE_BYTES)
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
        """Links pass through; Telegram files get a fresh random relay link.

        A file that needs converting is converted now, in a worker process, so its size is
        checked and the user told before Freepik is called; Telegram's photos are JPEGs of
        at most 2560 px and never need it.
        """
        if source.url:
            return source.url
        file_id = telegram_file_id(source)
        # Ask Telegram first: a file it cannot give us is explained to the user as such,
        # and Freepik is never called (nor billed) for a link that would answer 404.
        file_path = await self._files.file_path(file_id)
        if source.kind is not SourceKind.PHOTO and self._converted.get(file_id) is None:
            if not file_path:
                raise SourceUnavailable("getFile returned no file_path")
            await self._prepare(file_id, file_path)
        token = secrets.token_urlsafe(32)  # 256 bits
        await self._store.put_relay(token, file_id, self._ttl)
        return f"{self._base_url}/files/{token}"

    async def _prepare(self, file_id: str, url: str) -> None:
        """Check the dimensions; convert (and keep) what Freepik would refuse."""
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise SourceUnavailable(f"file download answered {response.status_code}")
                chunks = response.aiter_bytes()
                head = await _read_at_least(chunks, _SNIFF_BYTES)
                info = read_info(head)
                if info is not None:
                    check_pixels(info)  # TooManyPixels before the rest is even downloaded
                    if _passes_through(info):
                        return
                data = head + await _read_rest(chunks, MAX_INPUT_BYTES - len(head))
        except httpx.HTTPError as err:
            raise SourceUnavailable(f"file download failed: {type(err).__name__}") from err
        except RelayNotFound as err:
            raise SourceTooLarge(str(err)) from err
        await self._convert(file_id, data, info)

    async def _convert(self, file_id: str, data: bytes, info: ImageInfo | None) -> bytes:
        started = time.monotonic()
        png = await self._cpu.run(convert_for_freepik, data)
        logger.info(
            "Converted a %s image of %s to PNG for Freepik in %.2fs (%d bytes)",
            info.format if info else "unknown",
            f"{info.width}x{info.height}" if info else "unknown size",
            time.monotonic() - started,
            len(png),
        )
        self._converted.put(file_id, png)
        return png

    async def open(self, token: str) -> RelayedImage:
        """The image behind `token`, converted if Freepik would refuse it."""
        file_id = await self._store.get_relay(token) if _plausible(token) else None
        if file_id is None:
            raise RelayNotFound("unknown or expired link")
        png = self._converted.get(file_id)
        if png is not None:
            return RelayedImage("image/png", _once(png), len(png))
        try:
            file_path = await self._files.file_path(file_id)
        except (SourceUnavailable, SourceTooLarge) as err:
            raise RelayNotFound(f"Telegram refused the file: {err}") from err
        if not file_path:
            raise RelayNotFound("Telegram gave no file path")
        request = self._client.build_request("GET", file_path)
        response = await self._client.send(request, stream=True)
        if response.status_code != 200:
            await response.aclose()
            raise RelayNotFound(f"Telegram file download answered {response.status_code}")
        chunks = response.aiter_bytes()  # one iterator: an httpx stream can be read only once
        try:
            head = await _read_at_least(chunks, _SNIFF_BYTES)
            info = read_info(head)
            if info is not None:
                check_pixels(info)
                if _passes_through(info):
                    return RelayedImage(
                        PASS_THROUGH[info.format],
                        _continue(head, chunks, response),
                        _length(response),
                    )
            data = head + await _read_rest(chunks, MAX_INPUT_BYTES - len(head))
        except TooManyPixels as err:
            await response.aclose()
            raise RelayNotFound(f"refused: {err}") from err
        except BaseException:
            await response.aclose()
            raise
        await response.aclose()
        # Another replica minted the link, or the converted copy was evicted.
        try:
            png = await self._convert(file_id, data, info)
        except (UnreadableImage, TooManyPixels) as err:
            raise RelayNotFound(f"cannot convert the image: {err}") from err
        return RelayedImage("image/png", _once(png), len(png))


def _passes_through(info: ImageInfo) -> bool:
    return info.format in PASS_THROUGH and info.pixels <= MAX_PIXELS


class _ConvertedCache:
    """Converted PNGs by file id for `ttl` seconds, at most `max_bytes` in all (oldest out)."""

    def __init__(self, ttl: float, max_bytes: int) -> None:
        self._ttl = ttl
        self._max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> bytes | None:
        self._expire()
        item = self._items.get(key)
        return item[1] if item is not None else None

    def put(self, key: str, data: bytes) -> None:
        self._drop(key)
        self._items[key] = (time.monotonic() + self._ttl, data)
        self._bytes += len(data)
        while self._bytes > self._max_bytes and self._items:
            self._drop(next(iter(self._items)))

    def _expire(self) -> None:
        now = time.monotonic()
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                break
            self._drop(key)

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= len(item[1])


def _plausible(token: str) -> bool:
    return 20 <= len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)


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
