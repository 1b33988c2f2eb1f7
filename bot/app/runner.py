"""Run the Application: start, wait for a stop signal, drain jobs, stop.

Polling or webhook; the HTTP server (webhook, health, metrics, relay links) runs in the same
event loop whenever webhook mode or relay links need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from bot.app.http_guard import guarded_protocol
from bot.app.web import WebState, create_web_app
from bot.app.wiring import ALLOWED_UPDATES, AnyApplication
from bot.settings import Settings
from bot.transport.polling import log_polling_error
from bot.transport.services import services_of

logger = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signals alone."""
        yield


async def run_bot(
    application: AnyApplication,
    settings: Settings,
    stop: asyncio.Event,
    *,
    poll_timeout: int = 25,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve until `stop` is set, then let jobs in flight finish (up to `SHUTDOWN_GRACE`)."""
    webhook = settings.mode == "webhook"
    state = WebState(
        application,
        webhook_path=settings.webhook_path if webhook else None,
        webhook_secret=settings.webhook_secret.get_secret_value(),
        body_timeout=settings.http_header_timeout,
    )
    server: _EmbeddedServer | None = None
    server_task: asyncio.Task[None] | None = None
    await application.initialize()
    try:
        if application.post_init is not None:
            await application.post_init(application)
        if settings.serves_http:
            config = uvicorn.Config(
                create_web_app(state),
                host=settings.listen_host,
                port=settings.listen_port,
                lifespan="off",
                http=guarded_protocol(settings.http_header_timeout, settings.http_max_connections),
                access_log=False,
                # No dictConfig of uvicorn's own: its records go through the bot's handler
                # (secrets redacted, LOG_FORMAT honoured).
                log_config=None,
                log_level="warning",
                timeout_graceful_shutdown=5,
            )
            server = _EmbeddedServer(config)
            server_task = asyncio.create_task(server.serve(sockets=sockets))
            await _wait_started(server, server_task)
        if webhook:
            await application.bot.set_webhook(
                url=settings.webhook_url,
                secret_token=settings.webhook_secret.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES,
            )
            logger.info("Webhook set; serving updates on %s", settings.webhook_path)
        else:
            updater = application.updater
            if updater is None:
                raise RuntimeError("polling needs an Updater")
            await updater.start_polling(
                allowed_updates=ALLOWED_UPDATES,
                timeout=poll_timeout,
                poll_interval=0.0,
                error_callback=log_polling_error,
            )
        await application.start()
        state.ready = True
        services = services_of(application)
        # Requests a dead process left unanswered: after start, so handlers take them at once.
        await services.journal.resume(application.update_queue.put)
        if services.stream is not None:
            await services.stream.start(application.update_queue.put)
        logger.info("Bot @%s is running (%s mode)", application.bot.username, settings.mode)
        await stop.wait()
        grace = settings.shutdown_grace
        logger.info("Stopping: no new updates; finishing jobs in flight (up to %.0fs)", grace)
        state.ready = False
        state.accepting = False
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if services.stream is not None:
            await services.stream.stop()  # entries not taken yet stay for the other replicas
        # Relay links stay served while jobs drain: Freepik may still be fetching them.
        if services.journal.durable:
            # Requests still running at the end of the grace are left recorded for the next
            # start rather than answered "please resend".
            aborted = await services.journal.abandon(grace)
            aborted += await services.pipeline.drain(0)
        else:
            aborted = await services.pipeline.drain(grace)
        await application.stop()
        logger.info("Stopped cleanly (%d job(s) aborted)", aborted)
    finally:
        if server is not None and server_task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await server_task
        # As in PTB's own runners: post_stop ends background work (the per-language command
        # menu) while the bot's HTTP client still works.
        if application.post_stop is not None:
            await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()  # surfaces a bind error
            raise RuntimeError("the HTTP server stopped during start-up")
        await asyncio.sleep(0.02)


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
