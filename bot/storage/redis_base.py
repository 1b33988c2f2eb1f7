"""The connection every Redis store part shares: one client, one key prefix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from bot.storage.base import StorageUnavailable

T = TypeVar("T")


def as_text(value: Any) -> str:
    """A Redis reply as text (bytes are decoded)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBase:
    """A Redis client and the key prefix; the store's parts inherit it."""

    def __init__(self, url: str, *, prefix: str = "nobg:", timeout: float = 2.0) -> None:
        self._prefix = prefix
        self._redis: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=15,
            decode_responses=True,
        )

    def _key(self, *parts: str | int) -> str:
        return self._prefix + ":".join(str(p) for p in parts)

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        # One place where redis-py errors become the storage error the handlers know.
        try:
            return await op()
        except (RedisError, OSError) as err:
            raise StorageUnavailable(f"Redis {what} failed: {type(err).__name__}") from err
