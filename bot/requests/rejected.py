"""Cached file ids Telegram no longer takes: recognised, found among many, and forgotten."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bot.removal.cutouts import CutoutService
from bot.removal.sources import ImageSource
from bot.storage.base import StorageUnavailable

logger = logging.getLogger(__name__)

_REJECTED_FILE_ID = re.compile(r"file identifier|file_id|file id|file reference|remote file", re.I)


def is_rejected_file_id(err: BadRequest) -> bool:
    """Whether Telegram refused a file id we sent (wrong bot, expired, invalidated)."""
    return bool(_REJECTED_FILE_ID.search(err.message))


async def drop_rejected(cutouts: CutoutService, source: ImageSource, file_id: str) -> None:
    """Drop a cached cutout whose file id Telegram rejected (best effort: storage may be down)."""
    logger.warning("Telegram rejected the cached file id of %s; dropping it", source.kind)
    try:
        await cutouts.forget(source, file_id)
    except StorageUnavailable as storage_err:
        logger.error("Could not drop the rejected cache entry: %s", storage_err)


async def rejected_file_ids(bot: Bot, file_ids: Iterable[str]) -> set[str]:
    """Which of `file_ids` Telegram no longer takes from this bot, asked one by one with getFile.

    sendMediaGroup and answerInlineQuery refuse a whole request for one bad file id without
    naming it; getFile names no one else's file and costs nothing.
    """

    async def rejected(file_id: str) -> bool:
        try:
            await bot.get_file(file_id)
        except BadRequest as err:
            # "file is too big" (over getFile's 20 MB) is still a file Telegram holds for us.
            return is_rejected_file_id(err)
        except TelegramError as err:
            logger.warning("Could not check a cached file id: %s", err)
            return False
        return False

    unique = list(dict.fromkeys(file_ids))
    answers = await asyncio.gather(*(rejected(f) for f in unique))
    return {file_id for file_id, bad in zip(unique, answers, strict=True) if bad}
