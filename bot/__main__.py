"""Entry point: `python -m bot`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import urllib.request

from telegram.error import InvalidToken, NetworkError

from bot import __version__
from bot.app.doctor import run_doctor
from bot.app.runner import install_stop_signals, run_bot
from bot.app.wiring import build_application
from bot.ops.logs import configure_logging
from bot.settings import ConfigError, load_settings
from bot.storage.sqlite_store import DataDirError

logger = logging.getLogger("bot")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (settings come from the environment or `.env`)."""
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Telegram bot that removes image backgrounds with Freepik's API. "
        "Configure it with environment variables or a .env file (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"nobg-bot {__version__}")
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "doctor", "healthcheck"],
        default="run",
        help="run the bot (default); doctor: check settings, Telegram and storage; "
        "healthcheck: probe this container's /healthz (for Docker)",
    )
    return parser.parse_args(argv)


async def _serve() -> None:
    settings = load_settings()
    configure_logging(
        settings.log_level, settings.secrets(), json_format=settings.log_format == "json"
    )
    application = build_application(settings)
    settle_garbage_collector()
    stop = asyncio.Event()
    install_stop_signals(stop)
    await run_bot(application, settings, stop)


# Young objects collected less often than CPython's 700: a job allocates thousands (PTB objects,
# futures, aiohttp state), and with a burst in flight most of them were traversed again and
# again on their way to the oldest generation.
GC_THRESHOLDS = (10_000, 20, 20)


def settle_garbage_collector() -> None:
    """Keep what start-up made out of every later collection; collect young objects less often.

    Each collection of the oldest generation walked every module, class and function imported
    at start: 83-116 ms pauses in the benchmark, each a stall for every user. Frozen, they are
    never walked again (still freed by reference counting, as everything is).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _doctor() -> int:
    settings = load_settings()
    configure_logging("WARNING", settings.secrets())
    return await run_doctor(settings)


def _healthcheck() -> int:
    settings = load_settings()
    if not settings.serves_http:
        return 0  # polling without relay links runs no HTTP server: being alive is enough
    url = f"http://127.0.0.1:{settings.listen_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def main(argv: list[str] | None = None) -> int:
    """Run the bot until SIGINT/SIGTERM (or the doctor); return the process exit code."""
    args = parse_args(argv)
    try:
        if args.command == "doctor":
            return asyncio.run(_doctor())
        if args.command == "healthcheck":
            return _healthcheck()
        asyncio.run(_serve())
    except ConfigError as err:
        print(f"Configuration error: {err}", file=sys.stderr)
        return 2
    except DataDirError as err:
        print(f"Storage error: {err}", file=sys.stderr)
        return 2
    except InvalidToken:
        print("Telegram rejected TELEGRAM_BOT_TOKEN: check it with @BotFather.", file=sys.stderr)
        return 2
    except NetworkError as err:
        logger.error("Cannot reach the Telegram Bot API: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
