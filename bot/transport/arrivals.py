"""When each update reached the bot: deadlines (inline answers) count from there."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from telegram import Update

from bot.requests.journal import RecordingQueue

# Inline queries whose handler has not started yet; old entries go first if it never does.
MAX_TRACKED = 10_000


class ArrivalQueue(RecordingQueue):
    """The Application's update queue, noting when each inline query was put on it.

    Polling (the Updater) and webhook mode (our route) both put updates here, so this is the
    moment the update reached the bot, before it waits for a free handler. It is also the
    journal's `RecordingQueue`: polled updates are on record before getUpdates confirms them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._arrivals: OrderedDict[str, float] = OrderedDict()

    def put_nowait(self, item: Any) -> None:
        """Queue an update (asyncio's `put` ends here too), noting an inline query's arrival."""
        if isinstance(item, Update) and item.inline_query is not None:
            self._arrivals[item.inline_query.id] = time.monotonic()
            while len(self._arrivals) > MAX_TRACKED:
                self._arrivals.popitem(last=False)
        super().put_nowait(item)

    def arrival(self, query_id: str) -> float | None:
        """When the inline query reached the bot (forgotten once asked), if known."""
        return self._arrivals.pop(query_id, None)


def arrival_of(queue: object, query_id: str) -> float:
    """When the inline query reached the bot; now if the queue does not know."""
    if isinstance(queue, ArrivalQueue):
        found = queue.arrival(query_id)
        if found is not None:
            return found
    return time.monotonic()
