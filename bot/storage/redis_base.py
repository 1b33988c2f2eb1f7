"""The connection every Redis store part shares: one client, one key prefix."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from bot.storage.base import StorageUnavailable

T = TypeVar("T")

# A Lua function for scripts that write a user's record: list its key (`member`, relative to
# the prefix) in the user's index (`owned:<user>`, a sorted set by expiry in epoch ms), so
# /forget finds the user's records without a SCAN. Members that expired are dropped as it
# goes, and the index lives as long as its longest-lived record. Numbers come as strings from
# Python: Lua would print large ones in exponent form.
OWN_LUA = """
local function own(index, member, ttl_ms, expires_ms, now_ms)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now_ms)
  redis.call('ZADD', index, expires_ms, member)
  if redis.call('PTTL', index) < tonumber(ttl_ms) then
    redis.call('PEXPIRE', index, ttl_ms)
  end
end
"""


def as_text(value: Any) -> str:
    """A Redis reply as text (bytes are decoded)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def own_args(member: str, ttl_ms: int) -> list[str]:
    """The arguments of `OWN_LUA`'s `own` after the index: member, ttl, expiry, now (ms)."""
    now_ms = int(time.time() * 1000)
    return [member, str(ttl_ms), str(now_ms + ttl_ms), str(now_ms)]


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

    def _owned(self, user_id: int) -> str:
        # The index of the keys of a user's records (see `OWN_LUA`).
        return self._key("owned", user_id)

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        # One place where redis-py errors become the storage error the handlers know.
        try:
            return await op()
        except (RedisError, OSError) as err:
            raise StorageUnavailable(f"Redis {what} failed: {type(err).__name__}") from err
