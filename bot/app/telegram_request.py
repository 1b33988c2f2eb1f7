"""python-telegram-bot's requests on aiohttp, without httpx in between.

A bot method is a small form POST and a JSON answer; through httpx each one also built and
merged httpx's request, URL, header and cookie objects (about half of the HTTP cost per call,
measured). Uploads are written straight from the cutout's downloaded pieces (or bytes) in
views of up to 256 KiB; httpx's multipart stream read them into a new 64 KiB copy each.

Timeouts and errors are `HTTPXRequest`'s: a timeout is `TimedOut` (a pool timeout says so),
any other transport failure `NetworkError`, both named after the httpx error they stand for.
"""

from __future__ import annotations

import io
import secrets
from typing import IO

import httpx
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.app.aiohttp_transport import BODY_PIECE, AiohttpPool, Timeouts, read_body
from bot.transport.uploads import PiecesReader

URLENCODED = "application/x-www-form-urlencoded"


class AiohttpRequest(BaseRequest):
    """Bot API calls through one pooled aiohttp session."""

    __slots__ = ("_media_write_timeout", "_pool", "_timeouts")

    def __init__(
        self,
        *,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._pool = AiohttpPool(max_connections=connection_pool_size)
        self._timeouts = Timeouts(
            connect=connect_timeout, pool=pool_timeout, read=read_timeout, write=write_timeout
        )
        self._media_write_timeout = media_write_timeout

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout."""
        return self._timeouts.read

    async def initialize(self) -> None:
        """Open the session."""
        self._pool.session()

    async def shutdown(self) -> None:
        """Close every connection."""
        await self._pool.aclose()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; its status and body."""
        files = request_data.multipart_data if request_data is not None else None
        default = self._timeouts
        timeouts = Timeouts(
            connect=_given(connect_timeout, default.connect),
            pool=_given(pool_timeout, default.pool),
            read=_given(read_timeout, default.read),
            write=_given(write_timeout, self._media_write_timeout if files else default.write),
        )
        headers = [("User-Agent", self.USER_AGENT)]
        body: bytes | list[bytes | memoryview] | None = None
        if request_data is not None and files:
            boundary = secrets.token_hex(16)
            parts = _multipart(request_data.json_parameters, files, boundary)
            length = sum(len(part) for part in parts)
            headers.append(("Content-Type", f"multipart/form-data; boundary={boundary}"))
            headers.append(("Content-Length", str(length)))
            body = parts
        elif request_data is not None and request_data.json_parameters:
            body = request_data.url_encoded_parameters().encode()
            headers.append(("Content-Type", URLENCODED))
        try:
            response = await self._pool.send(method, url, headers, body, timeouts)
            return response.status, await read_body(response)
        except httpx.TimeoutException as err:
            if isinstance(err, httpx.PoolTimeout):
                raise TimedOut(
                    "Pool timeout: All connections in the connection pool are occupied. "
                    "Request was *not* sent to Telegram."
                ) from err
            raise TimedOut from err
        except httpx.HTTPError as err:
            raise NetworkError(f"httpx.{type(err).__name__}: {err}") from err


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes | IO[bytes], str]], boundary: str
) -> list[bytes | memoryview]:
    """A multipart/form-data body as httpx lays it out: fields, then files, then the end."""
    delimiter = f"--{boundary}\r\n".encode()
    parts: list[bytes | memoryview] = []
    for name, value in fields.items():
        head = f"Content-Disposition: form-data; {_param('name', name)}\r\n\r\n"
        parts += [delimiter, head.encode(), value.encode(), b"\r\n"]
    for name, (filename, content, mimetype) in files.items():
        head = (
            f"Content-Disposition: form-data; {_param('name', name)}; "
            f"{_param('filename', filename)}\r\nContent-Type: {mimetype}\r\n\r\n"
        )
        parts += [delimiter, head.encode()]
        parts += _content(content)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return parts


def _content(content: bytes | IO[bytes]) -> list[memoryview]:
    """A file's bytes in views of up to 256 KiB (all of it, from the start, as httpx sends it)."""
    if isinstance(content, PiecesReader):
        pieces: tuple[bytes, ...] = content.pieces  # a downloaded cutout: no copy
    elif isinstance(content, io.BytesIO):
        pieces = (content.getvalue(),)  # the very bytes it was made of: no copy
    elif isinstance(content, bytes):
        pieces = (content,)
    else:
        if content.seekable():
            content.seek(0)
        pieces = (content.read(),)
    views: list[memoryview] = []
    for piece in pieces:
        view = memoryview(piece)
        views += (view[start : start + BODY_PIECE] for start in range(0, len(view), BODY_PIECE))
    return views


# HTML5 form encoding of names and file names, as httpx (and browsers) write them.
_FORM_ESCAPES = {ord('"'): "%22", ord("\\"): "\\\\"} | {
    c: f"%{c:02X}" for c in range(0x20) if c != 0x1B
}


def _param(key: str, value: str) -> str:
    return f'{key}="{value.translate(_FORM_ESCAPES)}"'
