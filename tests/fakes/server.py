"""Run an ASGI app with uvicorn on 127.0.0.1 in a background thread with its own loop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT = 5.0
GRACEFUL_JOIN = 0.5
FORCED_JOIN = 5.0


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a free port on `host`, for uvicorn's ``serve(sockets=...)``."""
    # proto must say TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto is
    # IPPROTO_TCP, and accepted sockets inherit the listener's. With proto 0 uvicorn's separate
    # head and body writes leave the body waiting ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server whose 0.1 s main-loop sleep can be cut short by ``wake``."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wakeup: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wakeup = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the main loop check ``should_exit`` now (from any thread)."""
        if self._wakeup is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wakeup.set)


class ThreadedServer:
    """A uvicorn server on a free local port, served from a daemon thread."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port (0 before start)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:12345``."""
        if not self._port:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self._port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of the server thread."""
        if self._loop is None:
            raise RuntimeError("server not started")
        return self._loop

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def cpu_seconds(self) -> float:
        """CPU time the server thread has used so far (NaN when it is not running)."""
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return math.nan
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))

    def start(self) -> None:
        """Start serving; block until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        sock = listening_socket(self.host)
        self._sock = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._port,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"fake-server-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server thread died: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start within 5 s")
            time.sleep(0.005)

    def _run(self) -> None:
        assert self._server is not None
        assert self._sock is not None
        server = self._server
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            try:
                runner.run(server.serve(sockets=[self._sock]))
            except BaseException as exc:  # surfaced by start()
                self._error = exc
            finally:
                # Connections left open by hanging handlers: close them before the loop dies.
                for connection in list(server.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is not None:
                        transport.close()
                runner.run(asyncio.sleep(0))

    def stop(self) -> None:
        """Shut down gracefully, forcing it after a short grace; join the thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        if self._loop is not None:
            server.wake(self._loop)
        thread.join(GRACEFUL_JOIN)
        if thread.is_alive():
            server.force_exit = True
            thread.join(FORCED_JOIN)
        if self._sock is not None:
            self._sock.close()
        self._thread = None
        self._server = None

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
