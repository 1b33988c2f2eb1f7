"""The request kept until a payment, in Redis (`keep_request` ...), a part of `RedisStore`.

The request is a string (`kept:<user>`); the runner that claimed it (the payment running it)
another (`kept-run:<user>`) expiring with it. Each method is one script, so a claim, a newer
request and the removal after the reply never interleave, on any replica.
"""

from __future__ import annotations

from bot.storage.redis_base import RedisBase
from bot.storage.redis_base import as_text as _text

# KEYS: the request, its runner. ARGV: record, ttl in ms. A new request: nobody runs it yet.
_KEEP = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""
# ARGV: runner. The runner mark lives as long as the request it marks.
_CLAIM = """
local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
local runner = redis.call('GET', KEYS[2])
if runner and runner ~= ARGV[1] then
  return false
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[2], ARGV[1])
end
return value
"""
# ARGV: the record that was run. A newer request (another value) stays.
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


class RedisKept(RedisBase):
    """The kept-request methods of `RedisStore`."""

    def __init__(self, url: str, *, prefix: str = "nobg:", timeout: float = 2.0) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
        self._keep = self._redis.register_script(_KEEP)
        self._claim_kept = self._redis.register_script(_CLAIM)
        self._drop_kept = self._redis.register_script(_DROP)

    def _kept_keys(self, user_id: int) -> list[str]:
        return [self._key("kept", user_id), self._key("kept-run", user_id)]

    async def keep_request(self, user_id: int, record: str, ttl: float) -> None:
        """Keep one request of a user's for `ttl` seconds (one per user: the newest wins)."""
        keys, args = self._kept_keys(user_id), [record, str(max(1, int(ttl * 1000)))]
        await self._call("keep_request", lambda: self._keep(keys=keys, args=args))

    async def claim_request(self, user_id: int, runner: str) -> str | None:
        """The user's kept request, for `runner` to run; None if none, or another runs it."""
        keys = self._kept_keys(user_id)
        value = await self._call(
            "claim_request", lambda: self._claim_kept(keys=keys, args=[runner])
        )
        return None if value is None else _text(value)

    async def drop_request(self, user_id: int, record: str) -> bool:
        """Remove the user's kept request if it is still `record` (a newer one stays)."""
        keys = self._kept_keys(user_id)
        dropped = await self._call(
            "drop_request", lambda: self._drop_kept(keys=keys, args=[record])
        )
        return bool(dropped)
