"""The naive baseline: the real bot, but handling one update at a time.

`python -m bench.naive_bot` runs `python -m bot` with python-telegram-bot's concurrent update
processing switched off, which is exactly what a bot that awaits each job inline in its
handler does: the next update is not looked at until the previous reply was sent. Nothing
else differs (same settings, same code paths).
"""

from __future__ import annotations

import sys
from typing import Any

from telegram.ext import ApplicationBuilder, BaseUpdateProcessor

_concurrent_updates = ApplicationBuilder.concurrent_updates


def _one_at_a_time(self: Any, concurrent_updates: bool | int | BaseUpdateProcessor) -> Any:
    return _concurrent_updates(self, False)


def main() -> int:
    """Run the bot with one update at a time."""
    ApplicationBuilder.concurrent_updates = _one_at_a_time  # type: ignore[method-assign]
    from bot.__main__ import main as bot_main  # after the patch, so it builds with it

    return bot_main()


if __name__ == "__main__":
    sys.exit(main())
