"""uvicorn's HTTP/1.1 protocol with a deadline for request headers and a cap on connections.

uvicorn arms its keep-alive timer only after a response, so a connection that never sends a
complete request head stays open forever; with the port exposed, idle or half-sent
connections could exhaust the process's file descriptors.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    """Closes connections whose request head is not complete in time, and refuses extras."""

    header_timeout: float = 10.0
    max_connections: int = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection, or close it at once when there are too many already."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            logger.warning(
                "Refused an HTTP connection: %d open (HTTP_MAX_CONNECTIONS)", self.max_connections
            )
            transport.close()
            return
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        """Feed uvicorn; a request head that completes disarms the deadline."""
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._header_deadline is None:
            # First bytes of a new request on a kept-alive connection: uvicorn's keep-alive
            # timer stops here, so the head gets a deadline of its own.
            self._arm_header_deadline()
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:
            self._disarm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A `GuardedH11Protocol` class with these limits, for `uvicorn.Config(http=...)`."""
    return type(
        "ConfiguredGuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )
