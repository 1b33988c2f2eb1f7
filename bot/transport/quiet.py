"""Best-effort Telegram calls: a failure is logged and swallowed, never the request's end."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from telegram.error import BadRequest, TelegramError

logger = logging.getLogger(__name__)


async def quietly(call: Awaitable[Any], what: str) -> bool:
    """Await a best-effort Telegram call; log and swallow Telegram errors."""
    try:
        await call
    except BadRequest as err:
        logger.debug("Could not %s: %s", what, err.message)
        return False
    except TelegramError as err:
        logger.warning("Could not %s: %s", what, err)
        return False
    return True
