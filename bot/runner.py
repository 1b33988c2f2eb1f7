"""Run the Application: start, wait for a stop signal, drain jobs, stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.app import ALLOWED_UPDATES, AnyApplication
from bot.services import services_of

logger = logging.getLogger(__name__)


async def run_polling(
    application: AnyApplication,
    stop: asyncio.Event,
    *,
    grace: float,
    poll_timeout: int = 25,
) -> None:
    """Poll for updates until `stop` is set, then let jobs in flight finish (up to `grace`)."""
    await application.initialize()
    try:
        if application.post_init is not None:
            await application.post_init(application)
        updater = application.updater
        if updater is None:
            raise RuntimeError("polling needs an Updater")
        me = application.bot.username
        await updater.start_polling(
            allowed_updates=ALLOWED_UPDATES, timeout=poll_timeout, poll_interval=0.0
        )
        await application.start()
        logger.info("Bot @%s is polling for updates", me)
        await stop.wait()
        logger.info("Stopping: no new updates; finishing jobs in flight (up to %.0fs)", grace)
        await updater.stop()
        aborted = await services_of(application).pipeline.drain(grace)
        await application.stop()
        logger.info("Stopped cleanly (%d job(s) aborted)", aborted)
    finally:
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
