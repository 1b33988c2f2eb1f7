"""Telegram's overall flood limit, shared fairly between chats.

python-telegram-bot's `AIORateLimiter` puts every request with a `chat_id` through one FIFO
limiter, so one chat with a backlog of 900 replies delays every other chat's next message by
its whole backlog. Here the overall rate is handed out in turns: each chat with requests
waiting gets the next free slot in round-robin order, so a chat's backlog delays only itself.
The per-group limit and the flood-wait retries stay with `AIORateLimiter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.ext import AIORateLimiter, BaseRateLimiter

logger = logging.getLogger(__name__)

_Result = bool | dict[str, Any] | list[dict[str, Any]]


class FairGate:
    """A token bucket of `rate` per second (burst `rate`), served round-robin between keys."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._queues: OrderedDict[object, deque[asyncio.Future[None]]] = OrderedDict()
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return sum(len(queue) for queue in self._queues.values())

    async def acquire(self, key: object) -> None:
        """Wait for this key's turn and a free slot."""
        self._refill()
        if not self._queues and self._tokens >= 1:
            self._tokens -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(future)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        try:
            await future
        except asyncio.CancelledError:
            queue = self._queues.get(key)
            if queue is not None and future in queue:
                queue.remove(future)
                if not queue:
                    del self._queues[key]
            elif future.done() and not future.cancelled():
                self._tokens = min(self._capacity, self._tokens + 1)  # give the slot back
            raise

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    async def _dispatch(self) -> None:
        while self._queues:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._rate)
                continue
            key, queue = next(iter(self._queues.items()))
            future = queue.popleft()
            # The key goes to the back of the line, with the rest of its requests.
            del self._queues[key]
            if queue:
                self._queues[key] = queue
            if not future.done():
                self._tokens -= 1
                future.set_result(None)


class FairRateLimiter(BaseRateLimiter[int]):
    """`AIORateLimiter` for group limits and flood waits, with the overall rate shared fairly."""

    def __init__(
        self,
        overall_max_rate: float,
        *,
        inner: AIORateLimiter | None = None,
        max_retries: int = 3,
    ) -> None:
        # The overall limit is ours; the inner limiter (its own overall limit off) keeps the
        # group limit and the retries.
        self._inner = inner or AIORateLimiter(
            overall_max_rate=0, overall_time_period=0, max_retries=max_retries
        )
        self._gate = FairGate(overall_max_rate) if overall_max_rate > 0 else None
        quiet_rate_limiter_give_up()

    @property
    def inner(self) -> AIORateLimiter:
        """The `AIORateLimiter` applying group limits and flood-wait retries."""
        return self._inner

    async def initialize(self) -> None:
        """Start the inner limiter."""
        await self._inner.initialize()

    async def shutdown(self) -> None:
        """Stop the inner limiter."""
        await self._inner.shutdown()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, _Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> _Result:
        """Group limit and retries as `AIORateLimiter`; the overall slot taken in turns."""
        gate = self._gate
        chat_id = data.get("chat_id")
        if gate is None or chat_id is None:  # as AIORateLimiter: only chat requests count
            return await self._inner.process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )

        async def in_turn(*call_args: Any, **call_kwargs: Any) -> _Result:
            await gate.acquire(str(chat_id))
            return await callback(*call_args, **call_kwargs)

        return await self._inner.process_request(
            in_turn, args, kwargs, endpoint, data, rate_limit_args
        )


class _OneLine(logging.Filter):
    """Turns the rate limiter's "gave up" traceback into one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


_ONE_LINE = _OneLine()


def quiet_rate_limiter_give_up() -> None:
    """Log "Rate limit hit after maximum of N retries" as one warning line (idempotent)."""
    target = logging.getLogger("telegram.ext.AIORateLimiter")
    with contextlib.suppress(ValueError):
        target.removeFilter(_ONE_LINE)
    target.addFilter(_ONE_LINE)
