"""Helpers shared by test modules: what a user sees in a chat, processes, common requests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis.asyncio as redis
from PIL import Image, ImageDraw

from bot.i18n import messages
from tests.conftest import WEBHOOK_PATH, WEBHOOK_SECRET, bot_env
from tests.fakes import FakeFreepik, FakeTelegram, TgCall, make_image
from tests.fakes.updates import photo_message, private_user, update
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]


async def spawn_bot_process(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    stdout: int | IO[Any] = asyncio.subprocess.PIPE,
    stderr: int | IO[Any] = asyncio.subprocess.PIPE,
    module: str = "bot",
) -> asyncio.subprocess.Process:
    """`python -m MODULE ARGS` (the bot) from this checkout, with no standard input."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=cwd,
        env=env | {"PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MB."""
    return _status_kb(pid, "VmHWM") / 1024


def vm_rss_mb(pid: int) -> float:
    """Current resident memory (VmRSS) of a process, in MB."""
    return _status_kb(pid, "VmRSS") / 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, grandchildren...), e.g. worker processes."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            found.extend(children)
            pending.extend(children)
    return found


SEND_METHODS = ("sendMessage", "sendDocument", "sendPhoto", "sendMediaGroup")


@dataclass
class Visible:
    """A message the bot sent that is still in the chat."""

    method: str
    message_id: int
    text: str | None
    reply_to: int | None
    call: Any


def visible_messages(telegram: FakeTelegram, chat_id: int) -> list[Visible]:
    """Messages the bot sent to `chat_id`, minus deleted ones, with edits applied."""
    shown: dict[int, Visible] = {}
    for call in telegram.calls:
        if str(call.params.get("chat_id")) != str(chat_id):
            continue
        if call.method in SEND_METHODS and call.ok:
            reply = call.params.get("reply_parameters") or {}
            results = call.result if isinstance(call.result, list) else [call.result]
            for result in results:  # sendMediaGroup answers with a list of messages
                shown[result["message_id"]] = Visible(
                    call.method,
                    result["message_id"],
                    result.get("text") or result.get("caption"),
                    reply.get("message_id") if isinstance(reply, dict) else None,
                    call,
                )
        elif call.method == "editMessageText" and call.ok:
            message_id = int(call.params["message_id"])
            if message_id in shown:
                shown[message_id].text = call.params.get("text")
        elif call.method == "deleteMessage" and call.ok:
            shown.pop(int(call.params["message_id"]), None)
    return list(shown.values())


def only_reply(telegram: FakeTelegram, chat_id: int) -> Visible:
    """The one message left in the chat; fails if there are none or several."""
    shown = visible_messages(telegram, chat_id)
    assert len(shown) == 1, f"expected exactly one reply, got {shown}"
    return shown[0]


# --- a private chat's photo and its cutout ---------------------------------------------------

# The user, and private chat, that most end-to-end tests talk as and in.
USER = 1001


def send(telegram: FakeTelegram, message: dict[str, Any]) -> int:
    """Push a message update; return the message id."""
    telegram.push_update(update(message=message))
    return int(message["message_id"])


def photo(telegram: FakeTelegram, user_id: int = USER, **kwargs: Any) -> dict[str, Any]:
    """A photo message whose largest size is a real JPEG registered with the fake."""
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(96, 64)))
    return photo_message(private_user(user_id), file_id, unique_id, **kwargs)


async def wait_document(
    telegram: FakeTelegram, chat_id: int, count: int = 1, timeout: float = 15
) -> None:
    """Wait until `count` documents were sent and the status messages are gone."""
    await telegram.wait_for(
        lambda t: (
            len(t.sent_documents(chat_id)) >= count
            and all(v.method == "sendDocument" for v in visible_messages(t, chat_id))
        ),
        timeout=timeout,
    )


# --- albums ----------------------------------------------------------------------------------

# How long the bot collects the photos of an album (its ALBUM_WAIT) in these tests.
ALBUM_WAIT = 0.3


async def album_done(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[str]:
    """Wait until `count` albums were answered; return their log lines."""
    deadline = time.monotonic() + 20
    while True:
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("album ")]
        if len(lines) >= count:
            return lines
        assert time.monotonic() < deadline, f"only {len(lines)} album(s) answered"
        await asyncio.sleep(0.01)


def photos(
    telegram: FakeTelegram, count: int, group: str, files: list[tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """`count` photo messages of one media group, each a distinct JPEG (or the given files)."""
    if files is None:
        files = [
            telegram.add_file(make_image("JPEG", size=(40 + n, 30), color=(10 * n, 90, 160)))
            for n in range(count)
        ]
    return [
        photo_message(private_user(USER), file_id, unique_id, media_group_id=group)
        for file_id, unique_id in files
    ]


def send_all(telegram: FakeTelegram, messages: list[dict[str, Any]]) -> int:
    """Push the messages of an album as separate updates, as Telegram does; return the last id."""
    return max(telegram.push_update(update(message=message)) for message in messages)


async def send_album(
    telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
    album: list[dict[str, Any]],
    count: int = 1,
) -> list[str]:
    """Send an album and wait until `count` albums were answered; return their log lines."""
    send_all(telegram, album)
    return await album_done(caplog, count)


def ok_calls(telegram: FakeTelegram, method: str) -> list[TgCall]:
    """Successful calls of `method` to the user's chat."""
    return ok(telegram, method, USER)


def is_studio_buttons(call: TgCall) -> bool:
    """The follow-up message carrying the studio buttons of an album's cutouts."""
    return call.method == "sendMessage" and "reply_markup" in call.params


def texts(telegram: FakeTelegram) -> list[str]:
    """The text messages still visible in the user's chat (the studio buttons aside)."""
    return [
        v.text or ""
        for v in visible_messages(telegram, USER)
        if v.method == "sendMessage" and not is_studio_buttons(v.call)
    ]


# --- the studio: Ann's photos, their cutouts and the buttons under them ----------------------

# Ann in her private chat; Alice and Bob in a group.
STUDIO_USER = 2001
ANN = private_user(STUDIO_USER, "Ann")
GROUP = -100777
ALICE = private_user(7101, "Alice")
BOB = private_user(7102, "Bob")


def round_subject(
    size: tuple[int, int] = (120, 90), color: tuple[int, int, int] = (20, 90, 200)
) -> bytes:
    """A PNG photo: a disc on a plain background, so the cutout has a round subject."""
    image = Image.new("RGB", size, (250, 250, 250))
    width, height = size
    ImageDraw.Draw(image).ellipse(
        (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=color
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def send_photo(
    telegram: FakeTelegram,
    user: dict[str, Any] = ANN,
    *,
    data: bytes | None = None,
    file: tuple[str, str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Push a photo message (a new image unless `file` repeats one); return it."""
    file_id, unique_id = file or telegram.add_file(data or round_subject())
    message = photo_message(user, file_id, unique_id, width=120, height=90, **kwargs)
    telegram.push_update(update(message=message))
    return message


async def cutout_for(telegram: FakeTelegram, request: dict[str, Any]) -> dict[str, Any]:
    """The bot's cutout message replying to `request` (as the fake holds it)."""
    calls = await finished(
        telegram,
        "sendDocument",
        where=lambda c: (
            c.ok
            and (c.params.get("reply_parameters") or {}).get("message_id") == request["message_id"]
        ),
        timeout=15,
    )
    return dict(calls[0].result)


async def finished(
    telegram: FakeTelegram,
    method: str,
    count: int = 1,
    timeout: float = 15,
    where: Callable[[TgCall], bool] | None = None,
) -> list[TgCall]:
    """The first `count` answered calls of `method` (matching `where`), once there are."""

    def found(t: FakeTelegram) -> list[TgCall]:
        return [
            c for c in t.calls_of(method) if c.response is not None and (where is None or where(c))
        ]

    await telegram.wait_for(lambda t: len(found(t)) >= count, timeout=timeout)
    return found(telegram)[:count]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Label -> callback data of a message's inline keyboard, as the fake holds it now."""
    markup = message.get("reply_markup") or {}
    return {
        b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row
    }


def data_of(telegram: FakeTelegram, message: dict[str, Any], label: str) -> str:
    """The callback data of the button labelled `label` (beside its emoji, if any)."""
    current = telegram.state.find_message(message["chat"]["id"], message["message_id"]) or message
    # The whole label: "Back" must not find "🎨 Background" once the palette has closed.
    found = [
        data
        for text, data in buttons(current).items()
        if label in (text, *text.split(" ", 1)[1:], *text.rsplit(" ", 1)[:1])
    ]
    assert len(found) == 1, f"no single {label!r} button in {buttons(current)}"
    return found[0]


async def press(
    telegram: FakeTelegram, user: dict[str, Any], message: dict[str, Any], label: str
) -> str:
    """Press a button and wait for the bot to answer the query; return the query id."""
    query_id = telegram.press(user, message, data_of(telegram, message, label))
    await answered(telegram, query_id)
    return query_id


async def answered(telegram: FakeTelegram, query_id: str) -> dict[str, Any]:
    """The answerCallbackQuery of a query, once made."""
    await telegram.wait_for(lambda t: t.callback_answer(query_id) is not None, timeout=15)
    answer = telegram.callback_answer(query_id)
    assert answer is not None
    return answer


def toast(telegram: FakeTelegram, query_id: str) -> str | None:
    """The toast text the bot answered a press with."""
    answer = telegram.callback_answer(query_id)
    assert answer is not None
    text = answer.get("text")
    return str(text) if text is not None else None


def ok(telegram: FakeTelegram, method: str, chat_id: int | None = None) -> list[TgCall]:
    """Successful calls of `method` (to `chat_id`, if given)."""
    return [
        c
        for c in telegram.calls_of(method)
        if c.ok and (chat_id is None or str(c.chat_id) == str(chat_id))
    ]


async def settle() -> None:
    """Give a wrongly extra reply the time to show up."""
    await asyncio.sleep(0.3)


# --- images in tests -------------------------------------------------------------------------


def opened(data: bytes) -> Image.Image:
    """The image in `data`, its pixels loaded."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png(image: Image.Image, **options: object) -> bytes:
    """`image` as PNG bytes (Pillow's save options, e.g. compress_level)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def px(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The pixel at `xy`, as a tuple of its bands."""
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


# --- raw HTTP servers on 127.0.0.1 ---------------------------------------------------------------


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 running `handler` per connection; its base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One request: its request line, headers (lower-case) and body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for item in lines:
        if item:
            name, _, value = item.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line.encode(), headers, body


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    """An HTTP/1.1 response with a Content-Length."""
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


# --- webhook mode ----------------------------------------------------------------------------


async def post_update(
    url: str, body: bytes | dict[str, Any], secret: str | None = WEBHOOK_SECRET
) -> httpx.Response:
    """POST an update to the bot's webhook as Telegram would (with the secret, unless None)."""
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient() as client:
        return await client.post(url + WEBHOOK_PATH, content=content, headers=headers)


async def redis_leftovers(client: redis.Redis, update_id: int) -> list[str]:
    """Every Redis key holding something of `update_id`: in its name or as a hash field."""
    found: list[str] = []
    async for key in client.scan_iter("*"):
        name = str(key)
        if name.rsplit(":", 1)[-1] == str(update_id):
            found.append(name)
        elif await client.type(name) == "hash" and await client.hexists(name, str(update_id)):
            found.append(f"{name}[{update_id}]")
    return sorted(found)


# --- replicas: `python -m bot` processes in webhook mode -------------------------------------


@dataclass
class Replica:
    """One `python -m bot` process in webhook mode."""

    process: asyncio.subprocess.Process
    url: str

    async def post(self, body: dict[str, Any]) -> None:
        """Deliver an update as Telegram would."""
        response = await post_update(self.url, body)
        assert response.status_code == 200, response.text


async def start_replica(
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    redis_url: str,
    port: int,
    base_url: str,
    tmp_path: Path,
    **env: str,
) -> Replica:
    """A replica on `port` sharing `redis_url`, once it is ready (relay links at `base_url`)."""
    settings = {
        "MODE": "webhook",
        "WEBHOOK_URL": "https://bot.example.test" + WEBHOOK_PATH,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LISTEN_HOST": "127.0.0.1",
        "LISTEN_PORT": str(port),
        "STORAGE_URL": redis_url,
        "PHOTO_URL_MODE": "relay",
        "PUBLIC_BASE_URL": base_url,
        "SHUTDOWN_GRACE": "10",
    }
    process = await spawn_bot_process(
        env=bot_env(telegram, freepik, **(settings | env)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    replica = Replica(process, f"http://127.0.0.1:{port}")
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(replica.url + "/readyz")).status_code == 200:
                    return replica
            except httpx.TransportError:
                pass
            if process.returncode is not None:
                break
            await asyncio.sleep(0.05)
    process.kill()
    _, stderr = await process.communicate()
    raise AssertionError(f"replica did not become ready:\n{stderr.decode()[-2000:]}")


# --- operator commands -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def replica_pair(
    telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str, tmp_path: Path, **env: str
) -> AsyncIterator[list[Replica]]:
    """Two replicas on one Redis; relay links use the second one's address, as behind one name."""
    ports = [free_port(), free_port()]
    base_url = f"http://127.0.0.1:{ports[1]}"
    started: list[Replica] = []
    try:
        for port in ports:
            started.append(
                await start_replica(telegram, freepik, redis_url, port, base_url, tmp_path, **env)
            )
        yield started
    finally:
        # Also when the second one failed to start: no process outlives the test.
        for replica in started:
            if replica.process.returncode is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            await asyncio.wait_for(replica.process.communicate(), 30)


async def run_cli(
    args: list[str], telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path, **env: str
) -> tuple[int, str]:
    """Run `python -m bot ARGS` against the fakes; its exit code and output."""
    process = await spawn_bot_process(
        *args,
        env=bot_env(telegram, freepik, **env),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


# --- credits: the out-of-removals offer and paying from it -----------------------------------

# Stands in for the wait in the offer's text, to compare the text around it.
_MARK = "\x00"


def is_offer(text: str | None, *, kept: bool = True) -> bool:
    """Whether `text` is the out-of-removals reply (whatever the wait)."""
    before, after = messages.out_of_removals(_MARK, kept=kept).split(_MARK)
    return text is not None and text.startswith(before) and text.endswith(after)


async def offers(telegram: FakeTelegram, count: int) -> list[Visible]:
    """Wait for `count` out-of-removals replies; they, in order."""
    await telegram.wait_for(
        lambda t: len([v for v in visible_messages(t, USER) if is_offer(v.text)]) >= count,
        timeout=15,
    )
    return [v for v in visible_messages(telegram, USER) if is_offer(v.text)]


async def pay_from_offer(telegram: FakeTelegram, offer: Visible) -> dict[str, Any]:
    """Press the offer's pack button and pay the invoice; the payment message."""
    markup = offer.call.params["reply_markup"]
    button = markup["inline_keyboard"][0][0]["callback_data"]
    telegram.press(private_user(USER), offer.call.result, button)
    await telegram.wait_for(lambda t: len(t.invoices_to(USER)) >= 1)
    invoice = telegram.invoices_to(USER)[-1][1]
    query_id = telegram.checkout_invoice(private_user(USER), invoice)
    await telegram.wait_for(lambda t: t.pre_checkout_answer(query_id) is not None)
    _, message = telegram.complete_payment(query_id)
    return message
