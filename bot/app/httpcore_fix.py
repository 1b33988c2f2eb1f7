"""A linear-time connection pool pass for httpcore 1.0.x (encode/httpcore#1035, still open).

httpcore's `AsyncConnectionPool._assign_requests_to_connections` runs twice per request. In
1.0.x it rebuilds a list of every connection once per idle connection, and two more per queued
request: with the hundreds of connections a busy bot holds (each Freepik call keeps one for
its whole wait), the benchmark measured it at half of the bot's CPU during a burst, and the
socket poll it makes on every idle connection in every pass at a third of what remained. The
replacement below makes the same decisions in one walk and polls idle sockets at most once a
second (and the one it is about to use, every time). It is applied only to the httpcore
versions it was written against; any other version is left alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpcore
from httpcore._async.connection_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

PATCHED_VERSIONS = frozenset({"1.0.7", "1.0.8", "1.0.9"})
_original = AsyncConnectionPool._assign_requests_to_connections


SWEEP_INTERVAL = 1.0  # seconds between checks of every idle connection for a server close


def _origin_key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return origin.scheme, origin.host, origin.port


def _assign_requests_to_connections(self: Any) -> list[Any]:
    """httpcore 1.0.9's pass in one walk over the connections."""
    closing_connections: list[Any] = []

    def close(connection: Any) -> None:
        self._connections.remove(connection)
        closing_connections.append(connection)

    # `has_expired()` polls the socket of an idle connection, which costs more than the rest
    # of the pass together: all connections are checked at most once a second, and a
    # connection is checked again just before it is handed to a request, so an expired one
    # is still never used.
    now = time.monotonic()
    sweep = now >= getattr(self, "_nobg_next_sweep", 0.0)
    if sweep:
        self._nobg_next_sweep = now + SWEEP_INTERVAL

    # 1.0.9 compares `len([c.is_idle() for c in self._connections])` with the keep-alive
    # limit: the length of that list is the number of connections, compared here directly.
    for connection in list(self._connections):
        if connection.is_closed():
            self._connections.remove(connection)
        elif (sweep and connection.has_expired()) or (
            connection.is_idle() and len(self._connections) > self._max_keepalive_connections
        ):
            close(connection)

    queued_requests = [request for request in self._requests if request.is_queued()]
    if not queued_requests:
        return closing_connections

    # Assigning a request does not change a connection's state, so 1.0.9's per-request lists
    # are the same every time except for the changes this loop makes, which it mirrors.
    idle_connections = [connection for connection in self._connections if connection.is_idle()]
    available: dict[tuple[bytes, bytes, int], list[Any]] = {}
    checked: set[int] = set()
    for pool_request in queued_requests:
        origin = pool_request.request.url.origin
        key = _origin_key(origin)
        available_connections = available.get(key)
        if available_connections is None:
            available_connections = [
                connection
                for connection in self._connections
                if connection.can_handle_request(origin) and connection.is_available()
            ]
            available[key] = available_connections
        while available_connections and not sweep and id(available_connections[0]) not in checked:
            candidate = available_connections[0]
            if not candidate.has_expired():
                checked.add(id(candidate))
                break
            available_connections.pop(0)
            if candidate in idle_connections:
                idle_connections.remove(candidate)
            close(candidate)

        if available_connections:
            pool_request.assign_to_connection(available_connections[0])
            continue
        if len(self._connections) < self._max_connections:
            connection = self.create_connection(origin)
        elif idle_connections:
            idle = idle_connections.pop(0)
            for connections in available.values():
                if idle in connections:
                    connections.remove(idle)
            close(idle)
            connection = self.create_connection(origin)
        else:
            continue
        self._connections.append(connection)
        pool_request.assign_to_connection(connection)
        if connection.is_available():  # a new HTTP/2 connection takes more requests at once
            available_connections.append(connection)

    return closing_connections


def apply() -> bool:
    """Install the linear pass on httpcore versions it was written for; True if in place."""
    if AsyncConnectionPool._assign_requests_to_connections is _assign_requests_to_connections:
        return True
    if httpcore.__version__ not in PATCHED_VERSIONS:
        logger.debug("httpcore %s: connection pool left as it is", httpcore.__version__)
        return False
    if AsyncConnectionPool._assign_requests_to_connections is not _original:
        return False  # somebody else replaced it; do not stack on top
    AsyncConnectionPool._assign_requests_to_connections = (  # type: ignore[method-assign]
        _assign_requests_to_connections
    )
    return True
