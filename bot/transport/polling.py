"""Polling that survives updates the library cannot parse, and logs routine failures briefly.

python-telegram-bot parses a whole `getUpdates` batch at once: one update it cannot build (say,
a poll from a self-hosted Bot API server older than the library expects) fails the batch, the
offset never advances and the same batch is fetched again at once, forever. Here each update is
checked on its own first; one that cannot be built is replaced by an empty update with the same
`update_id`, which no handler takes but which moves the offset past it.

It also keeps each update's JSON as it arrived, for the journal to record (python-telegram-bot's
`Update.to_dict()` does not always serialise).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.request import BaseRequest, RequestData

from bot.requests.journal import ArrivedUpdates

logger = logging.getLogger(__name__)


def usable_updates(raw: list[Any]) -> list[Any]:
    """`raw` with every update the library cannot build replaced by `{"update_id": id}`."""
    usable: list[Any] = []
    for item in raw:
        try:
            Update.de_json(item, None)
        except Exception as err:
            update_id = item.get("update_id") if isinstance(item, dict) else None
            if not isinstance(update_id, int):
                logger.warning("Skipped an update without an update_id (%s)", type(err).__name__)
                continue
            # Only the id and the error's type: the update may hold users' texts.
            logger.warning(
                "Skipped update %d: python-telegram-bot cannot parse it (%s)",
                update_id,
                type(err).__name__,
            )
            usable.append({"update_id": update_id})
        else:
            usable.append(item)
    return usable


class TolerantUpdatesRequest(BaseRequest):
    """The `getUpdates` connection (`inner` does the HTTP), handing the library only updates
    it can build."""

    __slots__ = ("_arrived", "_inner")

    def __init__(self, inner: BaseRequest, arrived: ArrivedUpdates | None = None) -> None:
        self._inner = inner
        self._arrived = arrived

    @property
    def read_timeout(self) -> float | None:
        """The inner request's default read timeout."""
        return self._inner.read_timeout

    async def initialize(self) -> None:
        """Initialise the inner request."""
        await self._inner.initialize()

    async def shutdown(self) -> None:
        """Shut the inner request down."""
        await self._inner.shutdown()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send as usual; a `getUpdates` answer comes back with unparseable updates replaced."""
        status, payload = await self._inner.do_request(
            url,
            method,
            request_data,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
        )
        if status == 200 and url.endswith("/getUpdates"):
            payload = _sanitised(payload, self._arrived)
        return status, payload


def _sanitised(payload: bytes, arrived: ArrivedUpdates | None = None) -> bytes:
    try:
        answer = json.loads(payload)
    except ValueError:
        return payload  # the library reports an invalid answer itself (and backs off)
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, list):
        return payload
    usable = usable_updates(result)
    if arrived is not None:
        for item in usable:
            if isinstance(item, dict):
                arrived.keep(item)
    if usable == result:
        return payload
    return json.dumps({**answer, "result": usable}).encode()


def log_polling_error(error: TelegramError) -> None:
    """A failed `getUpdates` (502, timeout...) is routine: one warning line, no traceback."""
    logger.warning("Polling for updates failed (%s: %s); retrying", type(error).__name__, error)
