"""A fake of Freepik's remove-background endpoint, enforcing the documented contract."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.cutout import Cutout, ImageError, remove_background
from tests.fakes.forms import URLENCODED, FormError, media_type, parse_urlencoded
from tests.fakes.server import ThreadedServer

API_KEY_HEADER = "x-freepik-api-key"
REMOVE_PATH = "/v1/ai/beta/remove-background"
MAX_INPUT_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 10.0
DEFAULT_MESSAGES = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable. Please try again later.",
}


@dataclass(frozen=True)
class FreepikCall:
    """One POST to the remove-background endpoint, as answered."""

    image_url: str
    api_key: str | None
    content_type: str
    status: int
    at: float
    received: float = 0.0  # when the request arrived (`at` is when it was answered)


@dataclass(frozen=True)
class _Fault:
    kind: str
    status: int = 200
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    fields: frozenset[str] = frozenset()
    location: str = ""
    hops: int = 0


@dataclass
class _Result:
    original: bytes
    original_type: str
    cutout: Cutout
    expires_at: float
    not_png: bool
    trickle: float | None = None


def _message(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


class FakeFreepik:
    """Freepik's remove-background API over real HTTP on 127.0.0.1, with fault injection."""

    def __init__(
        self,
        api_key: str = "test-freepik-key",
        result_ttl: float = 300.0,
        api_key_header: str = API_KEY_HEADER,
    ) -> None:
        self.api_key = api_key
        # The header the key must arrive in (x-magnific-api-key on the rebranded host).
        self.api_key_header = api_key_header
        self.result_ttl = result_ttl
        self.latency = 0.0
        # True: the answer leaves `latency` after the request arrived, the fetch and cutout
        # inside that time (a response time); False: a sleep of `latency`, then the work.
        self.latency_covers_work = False
        self.result_padding = 0
        self.accepted_formats: set[str] = {"JPEG", "PNG"}
        self._lock = threading.Lock()
        self._calls: list[FreepikCall] = []
        self._downloads: list[str] = []
        self._redirects: list[str] = []
        self._download_key_headers: list[bool] = []
        self._fetched: list[str] = []
        self._faults: deque[_Fault] = deque()
        self._results: dict[str, _Result] = {}
        app = Starlette(
            routes=[
                Route(REMOVE_PATH, self._remove, methods=["POST"]),
                Route(
                    "/v1/ai/beta/images/download/{result_id}/{name}",
                    self._download,
                    methods=["GET", "HEAD"],
                ),
                Route(
                    "/v1/ai/beta/images/redirect/{hops:int}/{result_id}/{name}",
                    self._redirect,
                    methods=["GET", "HEAD"],
                ),
                Route(
                    "/v1/ai/beta/images/original/{result_id}/{name}",
                    self._original,
                    methods=["GET", "HEAD"],
                ),
            ]
        )
        self.server = ThreadedServer(app)

    # lifecycle

    def start(self) -> None:
        """Start the HTTP server."""
        self.server.start()

    def stop(self) -> None:
        """Stop the HTTP server (hanging requests are dropped)."""
        self.server.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:port``."""
        return self.server.url

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # recordings

    @property
    def calls(self) -> list[FreepikCall]:
        """POSTs to the endpoint, faults included (hangs are recorded with status 0)."""
        with self._lock:
            return list(self._calls)

    @property
    def downloads(self) -> list[str]:
        """Result ids fetched with GET on the download route (high.png or preview.png)."""
        with self._lock:
            return list(self._downloads)

    @property
    def redirects(self) -> list[str]:
        """Result ids whose download hit a redirect (one entry per hop)."""
        with self._lock:
            return list(self._redirects)

    @property
    def download_key_headers(self) -> list[bool]:
        """Per download GET: whether it carried an API key header."""
        with self._lock:
            return list(self._download_key_headers)

    @property
    def fetched(self) -> list[str]:
        """The image URLs this fake fetched."""
        with self._lock:
            return list(self._fetched)

    def reset(self) -> None:
        """Forget recordings and pending faults (results stay downloadable)."""
        with self._lock:
            self._calls.clear()
            self._downloads.clear()
            self._redirects.clear()
            self._download_key_headers.clear()
            self._fetched.clear()
            self._faults.clear()

    async def wait_for_calls(self, n: int, timeout: float = 5.0) -> list[FreepikCall]:
        """Wait until at least n POSTs were recorded."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls
            if len(calls) >= n:
                return calls
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} Freepik calls within {timeout}s, got {calls}")
            await asyncio.sleep(0.01)

    # fault injection

    def _queue(self, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next POSTs with this status and a JSON message (and Retry-After)."""
        self._queue(_Fault("fail", status, retry_after, body), times)

    def hang_next(self, times: int = 1) -> None:
        """Never answer the next POSTs."""
        self._queue(_Fault("hang", 0), times)

    def malformed_next(self, times: int = 1) -> None:
        """Answer 200 with a truncated JSON body."""
        self._queue(_Fault("malformed"), times)

    def wrong_shape_next(self, times: int = 1) -> None:
        """Answer 200 with valid JSON lacking the documented fields."""
        self._queue(_Fault("wrong_shape"), times)

    def expire_next(self, times: int = 1) -> None:
        """Answer normally, but the result has already expired."""
        self._queue(_Fault("expire"), times)

    def not_png_next(self, times: int = 1) -> None:
        """Answer normally, but the high-res download is JPEG labelled image/png."""
        self._queue(_Fault("not_png"), times)

    def trickle_next(self, times: int = 1, interval: float = 0.5) -> None:
        """Answer normally, but the high-res download sends one byte every `interval` seconds."""
        self._queue(_Fault("trickle", retry_after=interval), times)

    def answer_only_next(self, *fields: str, times: int = 1) -> None:
        """Answer normally, but with only these of the four documented fields."""
        self._queue(_Fault("only", fields=frozenset(fields)), times)

    def redirect_next(self, location: str, status: int = 301, times: int = 1) -> None:
        """Answer the next POSTs with a redirect to `location` (an API moving hosts)."""
        self._queue(_Fault("redirect", status, location=location), times)

    def redirect_result_next(self, hops: int = 2, times: int = 1) -> None:
        """Answer normally, but the result links go through `hops` redirects (a CDN)."""
        self._queue(_Fault("redirect_result", hops=hops), times)

    @property
    def pending_faults(self) -> int:
        """How many injected faults are still queued."""
        with self._lock:
            return len(self._faults)

    # handlers

    def _record(
        self, url: str, key: str | None, content_type: str, status: int, received: float = 0.0
    ) -> None:
        with self._lock:
            self._calls.append(
                FreepikCall(url, key, content_type, status, time.monotonic(), received)
            )

    async def _remove(self, request: Request) -> Response:
        received = time.monotonic()
        body = await request.body()
        if self.latency > 0 and not self.latency_covers_work:
            await asyncio.sleep(self.latency)
        key = request.headers.get(self.api_key_header)
        content_type = request.headers.get("content-type", "")
        image_url = ""
        if media_type(content_type) == URLENCODED:
            try:
                image_url = parse_urlencoded(body).get("image_url", "").strip()
            except FormError:
                image_url = ""

        def answer(response: Response) -> Response:
            self._record(image_url, key, content_type, response.status_code, received)
            return response

        if not key:
            return answer(_message(401, "Missing API key"))
        if key != self.api_key:
            return answer(_message(401, "Invalid API key"))
        if media_type(content_type) != URLENCODED:
            return answer(
                _message(400, f"Content-Type must be {URLENCODED}, got {content_type!r}")
            )
        problem = _url_problem(image_url)
        if problem:
            return answer(
                _message(
                    400,
                    "Your request parameters didn't validate.",
                    invalid_params=[{"field": "image_url", "reason": problem}],
                )
            )
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.kind == "hang":
            self._record(image_url, key, content_type, 0, received)
            await asyncio.Event().wait()  # cancelled when the server stops
        if fault is not None and fault.kind == "fail":
            return answer(_fail_response(fault))
        if fault is not None and fault.kind == "redirect":
            return answer(
                JSONResponse(
                    {"message": "Moved"}, fault.status, headers={"Location": fault.location}
                )
            )
        if fault is not None and fault.kind == "malformed":
            return answer(
                Response(b'{"high_resolution": ', status_code=200, media_type="application/json")
            )
        if fault is not None and fault.kind == "wrong_shape":
            return answer(JSONResponse({"data": {"status": "COMPLETED", "generated": []}}))
        response = await self._process(image_url, fault)
        if self.latency_covers_work:
            await asyncio.sleep(max(0.0, received + self.latency - time.monotonic()))
        return answer(response)

    async def _process(self, image_url: str, fault: _Fault | None) -> Response:
        with self._lock:
            self._fetched.append(image_url)
        try:
            async with httpx.AsyncClient(
                timeout=FETCH_TIMEOUT, trust_env=False, follow_redirects=True
            ) as client:
                fetched = await client.get(image_url)
        except httpx.HTTPError as exc:
            return _message(400, f"Could not download the image from image_url: {exc!r}")
        if not fetched.is_success:
            return _message(
                400, f"Could not download the image from image_url (HTTP {fetched.status_code})"
            )
        if len(fetched.content) > MAX_INPUT_BYTES:
            return _message(400, "Image too large")
        try:
            cutout = await asyncio.to_thread(
                remove_background,
                fetched.content,
                set(self.accepted_formats),
                self.result_padding,
            )
        except ImageError as exc:
            return _message(400, str(exc))
        result_id = secrets.token_hex(12)
        kind = fault.kind if fault is not None else ""
        now = time.monotonic()
        result = _Result(
            original=fetched.content,
            original_type="image/png" if cutout.input_format == "PNG" else "image/jpeg",
            cutout=cutout,
            expires_at=now - 1 if kind == "expire" else now + self.result_ttl,
            not_png=kind == "not_png",
            trickle=fault.retry_after if fault is not None and kind == "trickle" else None,
        )
        with self._lock:
            self._results[result_id] = result
        hops = (fault.hops if fault else 0) if kind == "redirect_result" else None
        answer = self.result_urls(result_id, redirect_hops=hops)
        if kind == "only" and fault is not None:
            answer = {name: value for name, value in answer.items() if name in fault.fields}
        return JSONResponse(answer)

    def result_urls(self, result_id: str, *, redirect_hops: int | None = None) -> dict[str, str]:
        """The answer's URLs of a stored result (downloads through redirects if `hops` given)."""
        base = f"{self.url}/v1/ai/beta/images"
        download = f"{base}/download"
        if redirect_hops is not None:
            download = f"{base}/redirect/{redirect_hops}"
        high = f"{download}/{result_id}/high.png"
        return {
            "original": f"{base}/original/{result_id}/thumbnail.jpg",
            "high_resolution": high,
            "preview": f"{download}/{result_id}/preview.png",
            "url": high,
        }

    async def _redirect(self, request: Request) -> Response:
        hops = int(request.path_params["hops"])
        result_id, name = request.path_params["result_id"], request.path_params["name"]
        with self._lock:
            self._redirects.append(result_id)
        base = f"{self.url}/v1/ai/beta/images"
        target = (
            f"{base}/redirect/{hops - 1}/{result_id}/{name}"
            if hops > 1
            else f"{base}/download/{result_id}/{name}"
        )
        return Response(status_code=302, headers={"Location": target})

    def _live_result(self, result_id: str) -> _Result | None:
        with self._lock:
            result = self._results.get(result_id)
        if result is None or time.monotonic() >= result.expires_at:
            return None
        return result

    async def _download(self, request: Request) -> Response:
        result_id = request.path_params["result_id"]
        name = request.path_params["name"]
        if request.method == "GET":
            with self._lock:
                self._downloads.append(result_id)
                self._download_key_headers.append(self.api_key_header in request.headers)
        result = self._live_result(result_id)
        if result is None or name not in ("high.png", "preview.png"):
            return _message(404, "Not found")
        if name == "preview.png":
            data = result.cutout.preview
        else:
            data = result.cutout.jpeg if result.not_png else result.cutout.high
        if result.trickle is not None and name == "high.png":
            return StreamingResponse(
                _trickle(data, result.trickle),
                media_type="image/png",
                headers={"content-length": str(len(data))},
            )
        return Response(data, media_type="image/png")

    async def _original(self, request: Request) -> Response:
        result = self._live_result(request.path_params["result_id"])
        if result is None:
            return _message(404, "Not found")
        return Response(result.original, media_type=result.original_type)


async def _trickle(data: bytes, interval: float) -> AsyncIterator[bytes]:
    for offset in range(len(data)):
        yield data[offset : offset + 1]
        await asyncio.sleep(interval)


def _url_problem(image_url: str) -> str:
    if not image_url:
        return "image_url is required"
    parts = urlsplit(image_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "image_url must be an absolute http(s) URL"
    return ""


def _fail_response(fault: _Fault) -> Response:
    try:
        default = DEFAULT_MESSAGES.get(fault.status) or HTTPStatus(fault.status).phrase
    except ValueError:
        default = "Error"
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        value = fault.retry_after
        headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
    return JSONResponse(fault.body or {"message": default}, fault.status, headers=headers)
