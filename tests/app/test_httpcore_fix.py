"""The linear connection-pool pass makes httpcore's decisions without its quadratic cost.

Assigning a request sets an event, which needs a running loop: the tests are async.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpcore
import pytest
from httpcore._async.connection_pool import AsyncConnectionPool, AsyncPoolRequest

from bot.app import httpcore_fix
from bot.app.wiring import build_application
from bot.settings import load_settings
from tests.conftest import BOT_TOKEN

ORIGIN = httpcore.Origin(b"http", b"127.0.0.1", 8080)
OTHER = httpcore.Origin(b"http", b"127.0.0.2", 8080)


class FakeConnection:
    """A pooled connection in a fixed state that counts the questions asked of it."""

    def __init__(
        self,
        name: str,
        origin: httpcore.Origin = ORIGIN,
        *,
        idle: bool = True,
        closed: bool = False,
        expired: bool = False,
        available: bool | None = None,
        calls: Counter[str] | None = None,
    ) -> None:
        self.name = name
        self.origin = origin
        self.idle = idle
        self.closed = closed
        self.expired = expired
        self.available = idle if available is None else available
        self.calls = calls if calls is not None else Counter()

    def __repr__(self) -> str:
        return self.name

    def is_closed(self) -> bool:
        self.calls["is_closed"] += 1
        return self.closed

    def has_expired(self) -> bool:
        self.calls["has_expired"] += 1
        return self.expired

    def is_idle(self) -> bool:
        self.calls["is_idle"] += 1
        return self.idle

    def is_available(self) -> bool:
        self.calls["is_available"] += 1
        return self.available

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return origin == self.origin


class Pool(AsyncConnectionPool):
    """A pool whose new connections are fakes, named in order of creation."""

    def create_connection(self, origin: httpcore.Origin) -> Any:
        self.created = getattr(self, "created", 0) + 1
        return FakeConnection(f"new{self.created}", origin, idle=False, available=False)


def url_of(origin: httpcore.Origin) -> str:
    return f"{origin.scheme.decode()}://{origin.host.decode()}:{origin.port}/"


def make_pool(
    connections: list[FakeConnection],
    origins: list[httpcore.Origin],
    *,
    max_connections: int = 10,
    max_keepalive: int = 10,
) -> tuple[Pool, list[AsyncPoolRequest]]:
    pool = Pool(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    pool._connections = list(connections)  # type: ignore[arg-type]
    requests = [AsyncPoolRequest(httpcore.Request("GET", url_of(origin))) for origin in origins]
    pool._requests = list(requests)
    return pool, requests


def run_pass(pass_: Any, pool: Pool, requests: list[AsyncPoolRequest]) -> tuple[Any, ...]:
    closing = pass_(pool)
    return (
        [repr(c) for c in closing],
        [repr(c) for c in pool._connections],
        [repr(r.connection) for r in requests],
    )


SCENARIOS: dict[str, Any] = {
    "reuse an idle connection": lambda: make_pool(
        [FakeConnection("busy", idle=False, available=False), FakeConnection("idle")],
        [ORIGIN, ORIGIN],
    ),
    "drop closed and expired ones": lambda: make_pool(
        [
            FakeConnection("closed", closed=True),
            FakeConnection("expired", expired=True),
            FakeConnection("idle"),
        ],
        [ORIGIN],
    ),
    "open a new connection for another origin": lambda: make_pool(
        [FakeConnection("idle")], [OTHER, OTHER]
    ),
    "pool full: close an idle connection to make room": lambda: make_pool(
        [FakeConnection("idle-a"), FakeConnection("busy", idle=False, available=False)],
        [OTHER, OTHER],
        max_connections=2,
    ),
    "pool full, nothing idle: the request waits": lambda: make_pool(
        [FakeConnection("busy", idle=False, available=False)], [ORIGIN], max_connections=1
    ),
    "more connections than keep-alive allows": lambda: make_pool(
        [FakeConnection("idle-a"), FakeConnection("idle-b"), FakeConnection("idle-c")],
        [],
        max_keepalive=1,
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_pass_decides_what_httpcore_decides(scenario: str) -> None:
    expected = run_pass(httpcore_fix._original, *SCENARIOS[scenario]())
    assert run_pass(httpcore_fix._assign_requests_to_connections, *SCENARIOS[scenario]()) == (
        expected
    )


async def test_a_pass_asks_each_connection_a_bounded_number_of_questions() -> None:
    calls: Counter[str] = Counter()
    idle = [FakeConnection(f"idle{i}", calls=calls) for i in range(200)]
    pool, requests = make_pool(idle, [ORIGIN], max_connections=400, max_keepalive=400)

    httpcore_fix._assign_requests_to_connections(pool)

    assert repr(requests[0].connection) == "idle0"
    assert calls["is_idle"] <= 3 * len(idle)  # httpcore 1.0.9 asks 200 x 200 times
    assert calls["has_expired"] <= len(idle)


async def test_idle_sockets_are_polled_once_a_second_but_always_before_use() -> None:
    calls: Counter[str] = Counter()
    idle = [FakeConnection(f"idle{i}", calls=calls) for i in range(50)]
    pool, _ = make_pool(idle, [], max_connections=100, max_keepalive=100)
    httpcore_fix._assign_requests_to_connections(pool)  # the sweep
    assert calls["has_expired"] == 50

    calls.clear()
    idle[0].expired = True  # the server closed it since the sweep
    request = AsyncPoolRequest(httpcore.Request("GET", "http://127.0.0.1:8080/"))
    pool._requests = [request]
    closing = httpcore_fix._assign_requests_to_connections(pool)

    assert closing == [idle[0]]
    assert repr(request.connection) == "idle1"
    assert calls["has_expired"] == 2


def test_it_is_installed_by_the_application() -> None:
    settings = load_settings(_env_file=None, telegram_bot_token=BOT_TOKEN, freepik_api_key="k")
    build_application(settings)

    assert httpcore.__version__ in httpcore_fix.PATCHED_VERSIONS, "new httpcore: review the fix"
    assert (
        AsyncConnectionPool._assign_requests_to_connections
        is httpcore_fix._assign_requests_to_connections
    )
