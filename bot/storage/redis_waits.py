"""Waits for a user's next message in Redis (`put_wait` ...), a part of `RedisStore`.

One string per wait (`wait:<chat>:<user>`, kept `WAIT_LINGER` past its deadline) and one sorted
set of deadlines (`waits`), so the replicas find the waits that ran out without a SCAN; taking
one is a GETDEL, so exactly one replica says that it ran out. Each wait is also listed in its
user's index (`owned:<user>`, see `OWN_LUA`), for /forget.
"""

from __future__ import annotations

import time

from bot.storage.base import WAIT_LINGER
from bot.storage.redis_base import OWN_LUA, RedisBase, own_args
from bot.storage.redis_base import as_text as _text

# KEYS: the wait, the deadlines, the user's index. ARGV: record, ttl in ms, deadline, member,
# then `own`'s. The set lives as long as its longest-lived wait (every key here has a TTL).
_PUT = (
    OWN_LUA
    + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
own(KEYS[3], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
return 1
"""
)
# KEYS: the wait, the deadlines, the user's index. ARGV: member, member in the index.
_TAKE = """
local value = redis.call('GETDEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return value
"""


def wait_owner(key: str) -> int:
    """The user a wait's key (`<chat id>:<user id>`) belongs to."""
    return int(key.rsplit(":", 1)[-1])


class RedisWaits(RedisBase):
    """The wait methods of `RedisStore`."""

    def __init__(self, url: str, *, prefix: str = "nobg:", timeout: float = 2.0) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
        self._put_wait = self._redis.register_script(_PUT)
        self._take_wait = self._redis.register_script(_TAKE)

    async def put_wait(self, key: str, record: str, until: float) -> None:
        """Wait for a user's next message until `until` (epoch seconds); replaces any earlier."""
        ttl_ms = int((until - time.time() + WAIT_LINGER) * 1000)
        if ttl_ms <= 0:  # over before it began: as if it had been swept
            await self.take_wait(key)
            return
        keys = [self._key("wait", key), self._key("waits"), self._owned(wait_owner(key))]
        args = [record, str(ttl_ms), repr(until), key, *own_args(f"wait:{key}", ttl_ms)]
        await self._call("put_wait", lambda: self._put_wait(keys=keys, args=args))

    async def get_wait(self, key: str) -> str | None:
        """The wait under `key`, whether its time ran out or not."""
        value = await self._call("get", lambda: self._redis.get(self._key("wait", key)))
        return None if value is None else _text(value)

    async def take_wait(self, key: str) -> str | None:
        """The wait under `key`, removed in the same step (so only one caller gets it)."""
        keys = [self._key("wait", key), self._key("waits"), self._owned(wait_owner(key))]
        args = [key, f"wait:{key}"]
        value = await self._call("take_wait", lambda: self._take_wait(keys=keys, args=args))
        return None if value is None else _text(value)

    async def due_waits(self, now: float, limit: int = 100) -> list[str]:
        """Keys of waits whose time ran out by `now` and that nobody has taken yet."""
        members = await self._call(
            "zrangebyscore",
            lambda: self._redis.zrangebyscore(self._key("waits"), "-inf", now, 0, limit),
        )
        return [_text(m) for m in members]
