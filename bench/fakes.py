"""The test suite's fakes, wrapped to record what the benchmark needs (no edits to tests/fakes).

Both fakes run uvicorn in their own thread; the recorders below sit between uvicorn and the
fake's Starlette app and take every timestamp with `time.monotonic()` in that thread, the
moment the bytes are received or handed to the socket.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fakes import FakeFreepik, FakeTelegram, ThreadedServer
from tests.fakes.cutout import Cutout, ImageError, remove_background
from tests.fakes.freepik import FETCH_TIMEOUT, MAX_INPUT_BYTES, REMOVE_PATH, _message, _Result
from tests.fakes.tg_methods import wake_all

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DocumentReceipt:
    """A sendDocument as the fake Telegram saw it."""

    chat_id: int
    arrived: float  # request headers parsed
    body_done: float  # last body byte received: "upload finished"
    answered: float  # response handed to the socket
    ok: bool
    uploaded_bytes: int


@dataclass(frozen=True, slots=True)
class RemovalRecord:
    """One POST to the fake Freepik's remove-background endpoint."""

    image_url: str
    arrived: float
    answered: float
    result_id: str | None


@dataclass(frozen=True, slots=True)
class DownloadRecord:
    """One GET of a result PNG from the fake Freepik."""

    result_id: str
    arrived: float
    answered: float  # the whole body handed to the socket


class _Capture:
    """Collects a response's status and body as it passes through `send`."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.parts: list[bytes] = []
        self.finished_at = 0.0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)
        if message["type"] == "http.response.body":
            self.parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.finished_at = time.monotonic()

    def json(self) -> Any:
        """The body as JSON (None if it is not)."""
        try:
            return json.loads(b"".join(self.parts))
        except ValueError:
            return None


class TelegramRecorder:
    """ASGI wrapper: when getUpdates answers were sent, and when sendDocument bodies arrived."""

    def __init__(
        self,
        app: ASGIApp,
        on_updates: Callable[[list[int], float], None],
        on_document: Callable[[DocumentReceipt], None],
        on_poll: Callable[[float], None],
    ) -> None:
        self.app = app
        self._on_updates = on_updates
        self._on_document = on_document
        self._on_poll = on_poll

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope["path"]).rsplit("/", 1)[-1].lower()
        if method == "getupdates":
            self._on_poll(time.monotonic())
            capture = _Capture(send)
            await self.app(scope, receive, capture)
            # Only the small update list is parsed, after the answer is already on its way.
            body = capture.json()
            if isinstance(body, dict) and isinstance(body.get("result"), list):
                ids = [u["update_id"] for u in body["result"] if isinstance(u, dict)]
                if ids:
                    self._on_updates(ids, capture.finished_at)
            return
        if method == "senddocument":
            await self._document(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _document(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.monotonic()
        body_done = arrived
        size = 0

        async def timed_receive() -> Message:
            nonlocal body_done, size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    body_done = time.monotonic()
            return message

        capture = _Capture(send)
        await self.app(scope, timed_receive, capture)
        body = capture.json()
        ok = isinstance(body, dict) and body.get("ok") is True
        chat_id = 0
        if ok:
            chat_id = int(body["result"]["chat"]["id"])
        self._on_document(
            DocumentReceipt(chat_id, arrived, body_done, capture.finished_at, ok, size)
        )


class FreepikRecorder:
    """ASGI wrapper: arrival and answer times of removals and result downloads."""

    def __init__(
        self,
        app: ASGIApp,
        on_removal: Callable[[RemovalRecord], None],
        on_download: Callable[[DownloadRecord], None],
    ) -> None:
        self.app = app
        self._on_removal = on_removal
        self._on_download = on_download

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        arrived = time.monotonic()
        if path == REMOVE_PATH:
            parts: list[bytes] = []

            async def keep_body() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    parts.append(message.get("body", b""))
                return message

            capture = _Capture(send)
            await self.app(scope, keep_body, capture)
            form = dict(parse_qsl(b"".join(parts).decode("utf-8", "replace")))
            body = capture.json()
            result_id = None
            if isinstance(body, dict) and isinstance(body.get("high_resolution"), str):
                result_id = body["high_resolution"].rsplit("/", 2)[-2]
            self._on_removal(
                RemovalRecord(form.get("image_url", ""), arrived, capture.finished_at, result_id)
            )
            return
        if scope["method"] == "GET" and path.endswith("/high.png"):
            capture = _Capture(send)
            await self.app(scope, receive, capture)
            result_id = path.rsplit("/", 2)[-2]
            self._on_download(DownloadRecord(result_id, arrived, capture.finished_at))
            return
        await self.app(scope, receive, send)


@dataclass
class Recordings:
    """Everything both recorders saw, guarded by one lock (they run in two server threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    handed: dict[int, float] = field(default_factory=dict)  # update_id -> answer sent
    polls: list[float] = field(default_factory=list)  # getUpdates arrivals
    documents: list[DocumentReceipt] = field(default_factory=list)
    removals: list[RemovalRecord] = field(default_factory=list)
    downloads: dict[str, DownloadRecord] = field(default_factory=dict)
    # Called in the server thread for every document, e.g. to wake the benchmark's loop.
    document_listener: Callable[[DocumentReceipt], None] | None = None

    def add_updates(self, ids: list[int], at: float) -> None:
        """Record a getUpdates answer carrying `ids`."""
        with self.lock:
            for update_id in ids:
                self.handed.setdefault(update_id, at)

    def add_poll(self, at: float) -> None:
        """Record a getUpdates request."""
        with self.lock:
            self.polls.append(at)

    def add_document(self, receipt: DocumentReceipt) -> None:
        """Record a sendDocument and tell the listener."""
        with self.lock:
            self.documents.append(receipt)
            listener = self.document_listener
        if listener is not None:
            listener(receipt)

    def add_removal(self, record: RemovalRecord) -> None:
        """Record a removal POST."""
        with self.lock:
            self.removals.append(record)

    def add_download(self, record: DownloadRecord) -> None:
        """Record a result download."""
        with self.lock:
            self.downloads[record.result_id] = record

    def first_poll_after(self, since: float) -> float | None:
        """The first getUpdates that arrived after `since`."""
        with self.lock:
            return next((t for t in self.polls if t >= since), None)


class BenchTelegram(FakeTelegram):
    """FakeTelegram with recording, pushing many updates at once, and freeing upload bytes."""

    def __init__(self, recordings: Recordings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = ThreadedServer(
            TelegramRecorder(
                self.server.app,
                recordings.add_updates,
                recordings.add_document,
                recordings.add_poll,
            )
        )

    def push_many(self, updates: list[JsonDict]) -> list[int]:
        """Queue all `updates` under one lock, so one getUpdates answer can carry them all."""
        state = self.state
        prepared = [copy.deepcopy(u) for u in updates]
        for item in prepared:  # replies and edits need the messages known first
            message = item.get("message")
            if isinstance(message, dict):
                state.remember_message(message)
        with state.lock:
            for item in prepared:
                item.setdefault("update_id", state.next_update_id)
                state.next_update_id = max(state.next_update_id, item["update_id"] + 1)
            state.updates.extend(prepared)
            state.updates.sort(key=lambda u: u["update_id"])
        wake_all(state)
        return [int(item["update_id"]) for item in prepared]

    def drop_pending(self) -> int:
        """Forget updates no bot fetched (e.g. left behind by a killed bot)."""
        with self.state.lock:
            count = len(self.state.updates)
            self.state.updates.clear()
        return count

    def forget_uploads(self) -> None:
        """Drop recorded calls and the bytes of uploaded documents (their file ids stay valid)."""
        self.reset_calls()
        with self.state.lock:
            for stored in self.state.files.values():
                if stored.kind == "document" and stored.data:
                    stored.data = b""


class BenchFreepik(FakeFreepik):
    """FakeFreepik with recording and, when `lean`, a cheaper per-job cost of its own.

    The plain fake builds a new httpx client (an SSL context) per request and re-encodes and
    re-pads (os.urandom) every result; at 200 jobs that costs the shared CPU seconds that would
    be charged to the bot. Lean mode keeps one aiohttp session and reuses the cutout of
    identical input bytes; the HTTP contract is unchanged (it still fetches every image from its
    URL).

    Lean mode also models `latency` as Freepik's response time, as a client sees it: the answer
    leaves `latency` after the request arrived, with the image fetched and cut out inside that
    time, as Freepik's own servers do it. The plain fake sleeps first and then works, so its own
    time (the fetch, mostly) came on top of the latency and was counted as the bot's overhead.
    """

    def __init__(self, recordings: Recordings, *, lean: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lean = lean
        self.latency_covers_work = lean
        self._session: aiohttp.ClientSession | None = None
        self._made: dict[tuple[bytes, int, frozenset[str]], Cutout] = {}
        self.server = ThreadedServer(
            FreepikRecorder(self.server.app, recordings.add_removal, recordings.add_download)
        )

    def stop(self) -> None:
        """Close the shared session in the server's loop, then stop."""
        session, self._session = self._session, None
        if session is not None and self.server.running:
            future = asyncio.run_coroutine_threadsafe(session.close(), self.server.loop)
            future.result(timeout=5)
        super().stop()

    def forget_results(self) -> None:
        """Drop stored results (the plain fake keeps every padded PNG)."""
        with self._lock:
            self._results.clear()

    async def _process(self, image_url: str, fault: Any) -> Response:
        if not self.lean or fault is not None:  # faults: the fake's own behaviour
            return await super()._process(image_url, fault)
        return await self._lean_process(image_url)

    async def _fetch(self, image_url: str) -> tuple[int, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=400),
                trust_env=False,
            )
        async with self._session.get(image_url) as fetched:
            return fetched.status, await fetched.read()

    async def _lean_process(self, image_url: str) -> Response:
        with self._lock:
            self._fetched.append(image_url)
        try:
            status, content = await self._fetch(image_url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _message(400, f"Could not download the image from image_url: {exc!r}")
        if not 200 <= status < 300:
            return _message(400, f"Could not download the image from image_url (HTTP {status})")
        if len(content) > MAX_INPUT_BYTES:
            return _message(400, "Image too large")
        key = (content, self.result_padding, frozenset(self.accepted_formats))
        cutout = self._made.get(key)
        if cutout is None:
            try:
                cutout = await asyncio.to_thread(remove_background, content, set(key[2]), key[1])
            except ImageError as exc:
                return _message(400, str(exc))
            self._made[key] = cutout
        result_id = secrets.token_hex(12)
        with self._lock:
            self._results[result_id] = _Result(
                original=content,
                original_type="image/png" if cutout.input_format == "PNG" else "image/jpeg",
                cutout=cutout,
                expires_at=time.monotonic() + self.result_ttl,
                not_png=False,
            )
        return JSONResponse(self.result_urls(result_id))
