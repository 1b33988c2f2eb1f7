"""HTTP on aiohttp: its C parser and connection pool, behind httpx's API for our callers.

httpx's own stack (httpcore, h11, anyio) is pure Python: in the benchmark's burst it was most of
the bot's CPU per job (every 4 MiB result parsed by h11, the connection pool walked on every
request). `AiohttpTransport` keeps the Freepik client and its tests on httpx (a transport is
all it takes) and hands each exchange to an `AiohttpPool`; python-telegram-bot's requests use
the pool directly (`bot.app.telegram_request`).

Errors come out as httpx's, chosen by what they say about the request, because the Freepik
client decides on retries by it: only a failure before anything was sent (no connection, no
free connection in time) becomes `ConnectError`/`ConnectTimeout`; a dropped or unreadable
answer is a `RemoteProtocolError` or `ReadError`: it may have reached the server. aiohttp has
no write timeout, so the pool keeps one: a request body that stops moving for that long fails
with `WriteTimeout`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import aiohttp
import httpx

# Larger bodies are handed to aiohttp in pieces of at most this size: the write timeout watches
# them move, and no single write leaves a whole upload in the event loop's socket buffer (which,
# in Python 3.11, copies what the socket does not take and shifts it forward after every send).
# A downloaded cutout's pieces (up to 256 KiB each, as received) go as they are; 64 KiB pieces
# cost 0.3-0.5 ms more CPU per 4 MiB upload (more writes, each waiting for the buffer to drain).
BODY_PIECE = 256 * 1024
# aiohttp pauses reading a response once this much is unread (its default is 64 KiB: a 4 MiB
# result would pause and resume the socket dozens of times).
READ_BUFFER = 256 * 1024

Body = bytes | Iterable[bytes | memoryview] | AsyncIterable[bytes | memoryview] | None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds for each step of an exchange (None: no limit), as httpx names them."""

    connect: float | None = None
    pool: float | None = None
    read: float | None = None
    write: float | None = None

    @classmethod
    def of(cls, request: httpx.Request) -> Timeouts:
        """The timeouts httpx put on `request`."""
        given = request.extensions.get("timeout", {})
        return cls(given.get("connect"), given.get("pool"), given.get("read"), given.get("write"))


class AiohttpPool:
    """One `aiohttp.ClientSession`, opened on first use (again after `aclose`)."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The open session (made in the running loop: aiohttp binds it there)."""
        if self._session is None or self._session.closed:
            if self._ssl_context is None:
                # httpx's trust store (certifi, or SSL_CERT_FILE), as before aiohttp.
                self._ssl_context = httpx.create_ssl_context()
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_expiry,
                ssl=self._ssl_context,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Redirects, cookies, decoding and the environment's proxies are httpx's (or
                # not wanted, for Telegram): aiohttp only carries the bytes.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                read_bufsize=READ_BUFFER,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def aclose(self) -> None:
        """Close every connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: Body,
        timeouts: Timeouts,
    ) -> aiohttp.ClientResponse:
        """Send a request and wait for the response's head; errors are httpx's."""
        session = self.session()
        write_deadline = asyncio.timeout(None)
        try:
            async with write_deadline:
                return await session.request(
                    method,
                    url,
                    headers=headers,
                    data=_watched(body, write_deadline, timeouts.write),
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        # aiohttp's `connect` is waiting for a free connection plus opening one.
                        connect=_sum(timeouts.pool, timeouts.connect),
                        sock_connect=timeouts.connect,
                        sock_read=timeouts.read,
                    ),
                )
        except TimeoutError as err:
            if write_deadline.expired():
                raise httpx.WriteTimeout("the request body stopped moving") from err
            raise mapped(err) from err
        except aiohttp.ClientError as err:
            raise mapped(err) from err


async def read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole response body (the connection goes back to the pool); errors are httpx's."""
    try:
        return await response.read()
    except (aiohttp.ClientError, TimeoutError) as err:
        raise mapped(err) from err
    finally:
        response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends every request through an `AiohttpPool`."""

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 5.0) -> None:
        self._pool = AiohttpPool(
            max_connections=max_connections, keepalive_expiry=keepalive_expiry
        )

    async def aclose(self) -> None:
        """Close the connections (a later request opens new ones)."""
        await self._pool.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`; the response body is streamed to httpx as it arrives."""
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            # aiohttp frames the body itself (chunked only when its length is unknown).
            if name.lower() != "transfer-encoding"
        ]
        body: Body
        try:
            body = request.content or None
        except httpx.RequestNotRead:
            stream = request.stream
            body = stream if isinstance(stream, httpx.AsyncByteStream) else iter(stream)
        response = await self._pool.send(
            request.method, str(request.url), headers, body, Timeouts.of(request)
        )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseBody(response),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )


class _ResponseBody(httpx.AsyncByteStream):
    """aiohttp's response body as httpx reads it: pieces as they arrive, errors mapped."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.content.iter_any():
                yield piece
        except (aiohttp.ClientError, TimeoutError) as err:
            raise mapped(err) from err

    async def aclose(self) -> None:
        """Hand the connection back (closed instead if the body was not read to the end)."""
        self._response.release()


def _sum(*timeouts: float | None) -> float | None:
    """Seconds for steps taken one after the other; None (no limit) if any has none."""
    total = 0.0
    for timeout in timeouts:
        if timeout is None:
            return None
        total += timeout
    return total


def _watched(body: Body, deadline: asyncio.Timeout, write: float | None) -> Body:
    """`body` as aiohttp should send it: anything that may wait for the peer, under `write`."""
    if body is None or (isinstance(body, bytes) and len(body) <= BODY_PIECE):
        return body or None  # fits the socket buffer: it never waits for the peer
    if isinstance(body, bytes):
        view = memoryview(body)
        body = [view[start : start + BODY_PIECE] for start in range(0, len(view), BODY_PIECE)]
    return _pieces(body, deadline, write)


async def _pieces(
    body: Iterable[bytes | memoryview] | AsyncIterable[bytes | memoryview],
    deadline: asyncio.Timeout,
    write: float | None,
) -> AsyncIterator[bytes | memoryview]:
    """The body's pieces; each must be taken within `write` seconds of the one before."""
    loop = asyncio.get_running_loop()
    # aiohttp asks for the next piece only once the previous one is written out.
    if isinstance(body, AsyncIterable):
        async for piece in body:
            if write is not None:
                deadline.reschedule(loop.time() + write)
            yield piece
    else:
        for piece in body:
            if write is not None:
                deadline.reschedule(loop.time() + write)
            yield piece
    deadline.reschedule(None)  # all written: the read timeout takes over


def mapped(error: BaseException) -> httpx.TransportError:
    """The httpx error for an aiohttp one, by whether the request may have been sent.

    Messages never carry the URL (aiohttp puts it in some; the bot token is in its path).
    """
    name = type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"{name}: no connection in time")  # nothing was sent
    if isinstance(error, aiohttp.ClientConnectorError):
        # Refused, DNS, TLS handshake: nothing was sent. Host, port and the OS's reason.
        return httpx.ConnectError(str(error))
    if isinstance(error, TimeoutError):
        return httpx.ReadTimeout(f"{name}: no answer in time")
    if isinstance(error, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(f"{name}: not an http(s) URL")
    if isinstance(error, aiohttp.ClientResponseError):
        # An answer aiohttp could not parse.
        return httpx.RemoteProtocolError(f"{name}: {error.status}, {error.message}")
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(f"{name}: the answer was cut short")
    # Reset or broken mid-exchange: it may have been sent.
    reason = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else name
    return httpx.ReadError(f"{name}: {reason}")
