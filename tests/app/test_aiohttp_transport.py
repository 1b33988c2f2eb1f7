"""httpx on aiohttp: answers arrive whole, and every failure says whether the request was sent.

The servers are raw sockets on 127.0.0.1 that misbehave on purpose: refuse, hang up after the
request, never answer, stop reading an upload, cut a body short, answer garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.app.aiohttp_transport import AiohttpTransport
from bot.removal.freepik import FreepikClient, PostCount, RetryPolicy, ServiceUnavailable
from tests.redis_server import free_port
from tests.support import answer, read_request, serving


def client(**timeouts: float) -> httpx.AsyncClient:
    """An httpx client on the aiohttp transport."""
    return httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=4),
        timeout=httpx.Timeout(timeouts.get("all", 5.0), **timeouts) if timeouts else 5.0,
    )


async def test_a_form_post_and_its_answer_arrive_whole() -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            seen.append(request)
            writer.write(answer(b'{"ok":true}', extra="X-Kind: test\r\nSet-Cookie: a=b\r\n"))
            await writer.drain()

    async with serving(echo) as url, client() as http:
        first = await http.post(f"{url}/x?y=1", data={"image_url": "https://e.test/a b"})
        second = await http.get(f"{url}/again")
    assert first.status_code == 200
    assert first.json() == {"ok": True}
    assert first.headers["x-kind"] == "test"
    line, headers, body = seen[0]
    assert line == b"POST /x?y=1 HTTP/1.1"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert body == b"image_url=https%3A%2F%2Fe.test%2Fa+b"
    assert seen[1][0] == b"GET /again HTTP/1.1"
    assert second.status_code == 200  # the kept-alive connection served the second request


async def test_a_large_and_a_streamed_upload_arrive_whole() -> None:
    bodies: list[tuple[dict[str, str], bytes]] = []

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, headers, body = await read_request(reader)
            bodies.append((headers, body))
            writer.write(answer(b"ok"))
            await writer.drain()

    big = bytes(range(256)) * 4096 * 3  # 3 MiB, sent in pieces

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 100_000):
            yield big[start : start + 100_000]

    async with serving(keep) as url, client() as http:
        await http.post(url, content=big)
        await http.post(url, content=pieces())  # no length: chunked
    assert bodies[0][1] == big
    assert bodies[0][0]["content-length"] == str(len(big))
    assert bodies[1][1] == big
    assert bodies[1][0]["transfer-encoding"] == "chunked"


async def test_redirects_are_left_to_httpx() -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"", "302 Found", "Location: /elsewhere\r\n"))
        await writer.drain()

    async with serving(redirect) as url, client() as http:
        response = await http.post(url)
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{free_port()}/")


async def test_a_hang_up_after_the_request_may_have_been_sent() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with serving(hang_up) as url, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, data={"image_url": "x"})


async def test_a_hang_up_is_a_maybe_billed_freepik_failure() -> None:
    # The one that matters: a POST that reached Freepik is never retried as if it had not.
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with serving(hang_up) as url:
        freepik = FreepikClient(
            "key",
            url,
            retry=RetryPolicy(attempts=3, initial_wait=0.0, max_wait=0.0, billed_retries=1),
            transport=AiohttpTransport(),
        )
        count = PostCount()
        try:
            with pytest.raises(ServiceUnavailable):
                await freepik.remove_background("https://e.test/a.jpg", count)
        finally:
            await freepik.aclose()
    assert count.sent == 2  # the first try and one billed retry, no more
    assert count.billed_failures == 2


async def test_no_answer_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async with serving(silent) as url, client(read=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url)


async def test_an_upload_the_server_stops_reading_is_a_write_timeout() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(10)

    async with serving(stall) as url, client(write=0.3) as http:
        with pytest.raises(httpx.WriteTimeout):
            await http.post(url, content=b"x" * (64 * 2**20))


async def test_a_body_cut_short_is_a_protocol_error() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
        await writer.drain()

    async with serving(short) as url, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)


async def test_a_garbled_answer_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SPDY/9 what\r\n\r\n")
        await writer.drain()

    async with serving(garbage) as url, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)


async def test_no_free_connection_in_time_was_never_sent() -> None:
    arrived = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        await read_request(reader)
        arrived += 1
        await asyncio.sleep(10)

    http = httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=1),
        timeout=httpx.Timeout(5.0, pool=0.2, connect=0.2),
    )
    async with serving(slow) as url, http:
        first = asyncio.create_task(http.get(url))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.ConnectTimeout):
            await http.get(url)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
    assert arrived == 1


async def test_the_transport_opens_again_after_it_was_closed() -> None:
    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"fine"))
        await writer.drain()

    transport = AiohttpTransport()
    async with serving(ok) as url:
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.get(url)).text == "fine"
        await transport.aclose()
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.get(url)).text == "fine"
        await transport.aclose()


async def test_no_error_message_carries_the_url() -> None:
    # The bot token is in the path of every Bot API URL; aiohttp puts the URL in some messages.
    secret = "/bot123456:SECRET-token/getMe"

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    errors: list[httpx.TransportError] = []
    http = httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=1),
        timeout=httpx.Timeout(5.0, pool=0.1, connect=0.1),
    )
    async with serving(slow) as url, http:
        first = asyncio.create_task(http.get(url + secret))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.ConnectTimeout) as waited:
            await http.get(url + secret)
        errors.append(waited.value)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
    async with client() as http:
        with pytest.raises(httpx.ConnectError) as refused:
            await http.get(f"http://127.0.0.1:{free_port()}{secret}")
        errors.append(refused.value)
    for error in errors:
        assert "SECRET" not in str(error)
