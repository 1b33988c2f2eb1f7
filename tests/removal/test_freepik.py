"""Unit tests of the Freepik client against `httpx.MockTransport`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs

import httpx
import pytest

from bot.removal.freepik import (
    API_KEY_HEADER,
    FreepikClient,
    ImageRejected,
    InvalidApiKey,
    MalformedResponse,
    OutOfCapacity,
    PostCount,
    QuotaExceeded,
    ResultExpired,
    ResultInvalid,
    ResultTooLarge,
    RetryPolicy,
    ServiceUnavailable,
    UnexpectedRedirect,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.002, max_retry_after=2.0)
ANSWER = {
    "original": "https://cdn.test/o.jpg",
    "high_resolution": "https://cdn.test/high.png",
    "preview": "https://cdn.test/preview.png",
    "url": "https://cdn.test/high.png",
}

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, policy: RetryPolicy = FAST) -> FreepikClient:
    return FreepikClient(
        "secret-key", "https://freepik.test/", retry=policy, transport=httpx.MockTransport(handler)
    )


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


async def test_sends_form_body_and_key_header() -> None:
    handler, seen = scripted(httpx.Response(200, json=ANSWER))
    client = client_for(handler)
    result = await client.remove_background("https://img.test/cat.jpg?a=1&b=2")
    await client.aclose()
    assert result.high_resolution == ANSWER["high_resolution"]
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://freepik.test/v1/ai/beta/remove-background"
    assert request.headers[API_KEY_HEADER] == "secret-key"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "image_url": ["https://img.test/cat.jpg?a=1&b=2"]
    }


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"message": "Invalid image"}, ImageRejected),
        (422, {"message": "Unprocessable"}, ImageRejected),
        (401, {"message": "Invalid API key"}, InvalidApiKey),
        (403, {"message": "Forbidden"}, InvalidApiKey),
        (403, {"message": "Not enough credits"}, OutOfCapacity),
    ],
)
async def test_permanent_errors_are_not_retried(
    status: int, body: dict[str, str], error: type[Exception]
) -> None:
    handler, seen = scripted(httpx.Response(status, json=body))
    client = client_for(handler)
    with pytest.raises(error):
        await client.remove_background("https://img.test/cat.jpg")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.Response(503, json={"message": "Service Unavailable"}), ServiceUnavailable),
        (httpx.Response(429, json={"message": "Too many"}), QuotaExceeded),
        (httpx.ConnectError("refused"), ServiceUnavailable),
        (httpx.ConnectTimeout("no route"), ServiceUnavailable),
        (httpx.PoolTimeout("pool full"), ServiceUnavailable),
    ],
)
async def test_unbilled_errors_are_retried_then_raised(
    failure: httpx.Response | Exception, error: type[Exception]
) -> None:
    handler, seen = scripted(failure)
    client = client_for(handler)
    with pytest.raises(error):
        await client.remove_background("https://img.test/cat.jpg")
    assert len(seen) == FAST.attempts


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"message": "boom"}),
        httpx.Response(502),
        httpx.Response(504),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("server hung up"),
    ],
)
async def test_maybe_billed_errors_are_retried_once(failure: httpx.Response | Exception) -> None:
    handler, seen = scripted(failure)
    with pytest.raises(ServiceUnavailable):
        await client_for(handler).remove_background("https://img.test/cat.jpg")
    assert len(seen) == 2


async def test_one_billed_retry_per_image_even_among_free_ones() -> None:
    handler, seen = scripted(
        httpx.Response(500), httpx.Response(503), httpx.Response(500), httpx.Response(200)
    )
    policy = RetryPolicy(attempts=6, initial_wait=0.001, max_wait=0.002)
    with pytest.raises(ServiceUnavailable):
        await client_for(handler, policy).remove_background("https://img.test/cat.jpg")
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (402, "Payment required"),
        (403, "Insufficient balance"),
        (429, "Daily limit reached"),
        (429, "Monthly quota exceeded"),
    ],
)
async def test_out_of_capacity_is_never_retried(status: int, message: str) -> None:
    handler, seen = scripted(httpx.Response(status, json={"message": message}))
    counted: list[int] = []
    client = FreepikClient(
        "secret-key",
        "https://freepik.test/",
        retry=FAST,
        transport=httpx.MockTransport(handler),
        on_out_of_capacity=counted.append,
    )
    with pytest.raises(OutOfCapacity):
        await client.remove_background("https://img.test/cat.jpg")
    assert len(seen) == 1
    assert counted == [status]


async def test_posts_are_numbered_per_image_and_unsent_ones_not_counted() -> None:
    handler, _ = scripted(
        httpx.ConnectError("refused"), httpx.Response(429), httpx.Response(200, json=ANSWER)
    )
    attempts: list[int] = []
    gate: list[int] = []

    async def before_post(attempt: int) -> None:
        gate.append(attempt)

    client = FreepikClient(
        "secret-key",
        "https://freepik.test/",
        retry=FAST,
        transport=httpx.MockTransport(handler),
        on_post=attempts.append,
        before_post=before_post,
    )
    count = PostCount()
    await client.remove_background("https://img.test/cat.jpg", count)
    assert attempts == [1, 2]
    assert gate == [1, 1, 2]
    await client.remove_background("https://img.test/cat.jpg", count)  # a re-run
    assert attempts == [1, 2, 3]


async def test_redirect_is_not_followed() -> None:
    handler, seen = scripted(
        httpx.Response(301, headers={"Location": "https://elsewhere.test/v1/x"})
    )
    with pytest.raises(UnexpectedRedirect) as caught:
        await client_for(handler).remove_background("https://img.test/cat.jpg")
    assert caught.value.location == "https://elsewhere.test/v1/x"
    assert len(seen) == 1


async def test_key_header_is_configurable() -> None:
    handler, seen = scripted(httpx.Response(200, json=ANSWER))
    client = FreepikClient(
        "secret-key",
        "https://api.magnific.test",
        api_key_header="x-magnific-api-key",
        transport=httpx.MockTransport(handler),
    )
    await client.remove_background("https://img.test/cat.jpg")
    assert seen[0].headers["x-magnific-api-key"] == "secret-key"
    assert API_KEY_HEADER not in seen[0].headers


@pytest.mark.parametrize("field", ["high_resolution", "url"])
async def test_either_cutout_field_stands_in_for_the_other(field: str) -> None:
    handler, _ = scripted(httpx.Response(200, json={field: "https://cdn.test/h.png"}))
    result = await client_for(handler).remove_background("https://img.test/cat.jpg")
    assert result.high_resolution == result.url == "https://cdn.test/h.png"
    assert result.original is None
    assert result.preview is None


async def test_transient_error_then_success() -> None:
    handler, seen = scripted(
        httpx.Response(503), httpx.ConnectError("refused"), httpx.Response(200, json=ANSWER)
    )
    result = await client_for(handler).remove_background("https://img.test/cat.jpg")
    assert result.url == ANSWER["url"]
    assert len(seen) == 3


async def test_retry_after_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr("asyncio.sleep", fake_sleep)
    handler, _ = scripted(
        httpx.Response(429, headers={"Retry-After": "1.5"}), httpx.Response(200, json=ANSWER)
    )
    await client_for(handler).remove_background("https://img.test/cat.jpg")
    assert sleeps == [1.5]


async def test_too_long_retry_after_gives_up_at_once() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(QuotaExceeded) as caught:
        await client_for(handler).remove_background("https://img.test/cat.jpg")
    assert len(seen) == 1
    assert caught.value.retry_after == 3600


@pytest.mark.parametrize(
    "content",
    [
        b'{"high_resolution": ',
        b"[]",
        json.dumps({"original": "x", "preview": "y"}).encode(),
        json.dumps({"high_resolution": "", "url": None}).encode(),
        b"<html>",
    ],
)
async def test_malformed_answer(content: bytes) -> None:
    handler, seen = scripted(httpx.Response(200, content=content))
    with pytest.raises(MalformedResponse):
        await client_for(handler).remove_background("https://img.test/cat.jpg")
    assert len(seen) == 1


async def test_download_returns_png_without_sending_the_key() -> None:
    handler, seen = scripted(httpx.Response(200, content=PNG))
    pieces = await client_for(handler).download_result("https://cdn.test/high.png")
    assert b"".join(pieces) == PNG
    assert API_KEY_HEADER not in seen[0].headers


async def pieces_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` arriving `size` bytes at a time."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_download_keeps_the_pieces_it_arrived_in() -> None:
    # The signature split across pieces is still recognised, and nothing is joined.
    handler, _ = scripted(httpx.Response(200, content=pieces_of(PNG, 3)))
    pieces = await client_for(handler).download_result("https://cdn.test/high.png")
    assert len(pieces) == -(-len(PNG) // 3)
    assert b"".join(pieces) == PNG


async def test_download_rejects_non_png_in_pieces() -> None:
    handler, _ = scripted(httpx.Response(200, content=pieces_of(b"\x89PNG\r\n\x1a\x00 not", 3)))
    with pytest.raises(ResultInvalid):
        await client_for(handler).download_result("https://cdn.test/high.png")


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_download_of_lapsed_link(status: int) -> None:
    handler, _ = scripted(httpx.Response(status))
    with pytest.raises(ResultExpired):
        await client_for(handler).download_result("https://cdn.test/high.png")


async def test_download_rejects_non_png() -> None:
    handler, _ = scripted(httpx.Response(200, content=b"\xff\xd8\xff\xe0JFIF"))
    with pytest.raises(ResultInvalid):
        await client_for(handler).download_result("https://cdn.test/high.png")


async def test_download_is_capped() -> None:
    handler, _ = scripted(httpx.Response(200, content=PNG * 20))
    with pytest.raises(ResultTooLarge):
        await client_for(handler).download_result("https://cdn.test/high.png", max_bytes=1000)


async def test_download_retries_5xx() -> None:
    handler, seen = scripted(httpx.Response(502), httpx.Response(200, content=PNG))
    pieces = await client_for(handler).download_result("https://cdn.test/high.png")
    assert b"".join(pieces) == PNG
    assert len(seen) == 2
