"""Telegram's `getFile` for the removal: bounded retries, errors in the removal's terms."""

from __future__ import annotations

import logging

from telegram import Bot, File
from telegram.error import BadRequest, NetworkError, TelegramError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from bot.removal.sources import SourceTooLarge, SourceUnavailable

logger = logging.getLogger(__name__)

# getFile is free and idempotent: transient failures (5xx, network) are retried this often.
GET_FILE_ATTEMPTS = 3


class BotFiles:
    """`TelegramFiles` through a `Bot`."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot

    async def file_path(self, file_id: str) -> str | None:
        """The file's download URL (it holds the bot token: never log it), or None."""
        return (await get_file(self._bot, file_id)).file_path


def _transient(error: BaseException) -> bool:
    # BadRequest is a NetworkError in python-telegram-bot, but retrying it cannot help.
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


def _log_get_file_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.warning("getFile attempt %d failed (%s); retrying", state.attempt_number, error)


async def get_file(bot: Bot, file_id: str, *, wait_initial: float = 0.5) -> File:
    """`getFile` with bounded retries of transient failures; `SourceTooLarge`/`SourceUnavailable`.

    The returned `File.file_path` is a URL with the bot token: never log it.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(GET_FILE_ATTEMPTS),
        wait=wait_exponential(multiplier=wait_initial, max=4 * wait_initial)
        + wait_random(0, wait_initial),
        before_sleep=_log_get_file_retry,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await bot.get_file(file_id)
    except BadRequest as err:
        if "too big" in err.message.lower():
            raise SourceTooLarge(err.message) from err
        raise SourceUnavailable(err.message) from err
    except TelegramError as err:
        raise SourceUnavailable(f"getFile failed: {err}") from err
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
