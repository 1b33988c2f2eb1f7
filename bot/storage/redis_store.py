"""The Redis implementation of `StateStore`, shared by every replica."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from bot.storage.base import (
    RECENT_LIMIT,
    PendingUpdate,
    StoredCutout,
)
from bot.storage.redis_kept import RedisKept
from bot.storage.redis_ledger import RedisLedger
from bot.storage.redis_owned import RedisOwned

logger = logging.getLogger(__name__)

# Recent lists outlive cache entries: Telegram file ids stay valid.
RECENT_TTL = 90 * 24 * 3600
# A language choice lasts a year from when it was made (every key here has a TTL).
LANGUAGE_TTL = 365 * 24 * 3600
_DROP_IF_SAME = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['file_id'] == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Mark the update id as seen and record the update, both or neither.
_ACCEPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: inbox, then the hash to change. Only while the update is on record: a finished one (say,
# finished by another process while this one resumed it) must not get a field back, which
# nothing would ever remove.
_COUNT_ATTEMPT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
return 0
"""
_NOTE = """
if ARGV[3] == 'held' or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 0
"""


def _accept_args(update_id: int, payload: str, ttl: float) -> list[str | int]:
    # The `_ACCEPT` script's arguments for one update: seen TTL (ms), id, record.
    record = json.dumps({"payload": payload, "accepted": time.time()})
    return [int(ttl * 1000), update_id, record]


class RedisStore(RedisLedger, RedisOwned, RedisKept):
    """State in Redis under one key prefix, every key with a TTL."""

    def __init__(self, url: str, *, prefix: str = "nobg:", timeout: float = 2.0) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
        self._accept = self._redis.register_script(_ACCEPT)
        self._count_attempt = self._redis.register_script(_COUNT_ATTEMPT)
        self._note = self._redis.register_script(_NOTE)

    async def get_cutout(self, key: str) -> StoredCutout | None:
        """The cached cutout for a source key, if any and not expired."""
        raw = await self._call("get", lambda: self._redis.get(self._key("cutout", key)))
        return StoredCutout.from_dict(json.loads(raw)) if raw else None

    async def put_cutout(self, key: str, cutout: StoredCutout, ttl: float) -> None:
        """Cache a cutout for `ttl` seconds (0 = do not cache)."""
        if ttl <= 0:
            return
        value = json.dumps(cutout.to_dict())
        await self._call(
            "set", lambda: self._redis.set(self._key("cutout", key), value, px=int(ttl * 1000))
        )

    async def drop_cutout(self, key: str, file_id: str) -> None:
        """Forget the cached cutout for `key` if it is still `file_id` (Telegram rejected it)."""
        redis_key = self._key("cutout", key)
        # Compare and delete in one step: another replica may have cached a good one meanwhile.
        await self._call(
            "drop",
            lambda: self._redis.eval(_DROP_IF_SAME, 1, redis_key, file_id),
        )

    async def push_recent(self, user_id: int, cutout: StoredCutout) -> None:
        """Remember a cutout a user received (newest first, at most `RECENT_LIMIT`)."""
        key = self._key("recent", user_id)
        member = json.dumps([cutout.file_id, cutout.file_name])

        async def push() -> Any:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {member: cutout.created})
                pipe.zremrangebyrank(key, 0, -RECENT_LIMIT - 1)
                pipe.expire(key, RECENT_TTL)
                return await pipe.execute()

        await self._call("zadd", push)

    async def recent(self, user_id: int, limit: int = RECENT_LIMIT) -> list[StoredCutout]:
        """A user's recent cutouts, newest first."""
        key = self._key("recent", user_id)
        rows: list[Any] = await self._call(
            "zrange", lambda: self._redis.zrevrange(key, 0, limit - 1, withscores=True)
        )
        result = []
        for member, score in rows:
            file_id, file_name = json.loads(member)
            result.append(StoredCutout(file_id, file_name, float(score)))
        return result

    async def drop_recent(self, user_id: int, file_id: str) -> None:
        """Forget one of a user's recent cutouts (Telegram rejected its file id)."""
        key = self._key("recent", user_id)
        members: list[Any] = await self._call("zrange", lambda: self._redis.zrange(key, 0, -1))
        gone = [m for m in members if json.loads(m)[0] == file_id]
        if gone:
            await self._call("zrem", lambda: self._redis.zrem(key, *gone))

    async def claim(self, key: str, ttl: float) -> bool:
        """Become the one worker for `key` (True) unless someone else holds it (False)."""
        done = await self._call(
            "claim",
            lambda: self._redis.set(self._key("claim", key), "1", nx=True, px=int(ttl * 1000)),
        )
        return bool(done)

    async def release(self, key: str) -> None:
        """Give up a claim."""
        await self._call("release", lambda: self._redis.delete(self._key("claim", key)))

    async def renew_claim(self, key: str, ttl: float) -> None:
        """Extend a claim we hold to `ttl` seconds from now (a live holder's heartbeat)."""
        await self._call(
            "pexpire", lambda: self._redis.pexpire(self._key("claim", key), int(ttl * 1000))
        )

    async def put_relay(self, token: str, file_id: str, ttl: float) -> None:
        """Map a relay link token to a Telegram file id for `ttl` seconds."""
        await self._call(
            "set",
            lambda: self._redis.set(self._key("relay", token), file_id, px=int(ttl * 1000)),
        )

    async def get_relay(self, token: str) -> str | None:
        """The Telegram file id behind a relay token, if it has not expired."""
        value = await self._call("get", lambda: self._redis.get(self._key("relay", token)))
        return str(value) if value else None

    async def get_language(self, user_id: int) -> str | None:
        """The locale a user picked with /language, if any."""
        value = await self._call("get", lambda: self._redis.get(self._key("lang", user_id)))
        return str(value) if value else None

    async def set_language(self, user_id: int, locale: str) -> None:
        """Remember the locale a user picked with /language (kept as long as they use the bot)."""
        await self._call(
            "set",
            lambda: self._redis.set(self._key("lang", user_id), locale, ex=LANGUAGE_TTL),
        )

    async def accept_update(self, update_id: int, payload: str, ttl: float) -> bool:
        """Record an update before any work on it; False if it was seen before (redelivery)."""
        keys = [self._key("seen", update_id), self._key("inbox")]
        args = _accept_args(update_id, payload, ttl)
        done = await self._call("accept", lambda: self._accept(keys=keys, args=args))
        return bool(done)

    async def accept_updates(self, records: Sequence[tuple[int, str]], ttl: float) -> list[bool]:
        """`accept_update` for several (update id, payload) at once, in one pipeline."""
        if not records:
            return []

        async def accept_all() -> list[Any]:
            # Not a transaction: each script is atomic, and one round trip is the point.
            async with self._redis.pipeline(transaction=False) as pipe:
                for update_id, payload in records:
                    keys = [self._key("seen", update_id), self._key("inbox")]
                    args = _accept_args(update_id, payload, ttl)
                    await self._accept(keys=keys, args=args, client=pipe)
                return list(await pipe.execute())

        return [bool(done) for done in await self._call("accept", accept_all)]

    async def finish_update(self, update_id: int) -> None:
        """The update got its reply: drop its record, remember its id until `ttl` ends."""

        async def finish() -> Any:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._key("inbox"), str(update_id))
                pipe.hdel(self._key("inbox", "attempts"), str(update_id))
                pipe.hdel(self._key("inbox", "notes"), str(update_id))
                return await pipe.execute()

        await self._call("hdel", finish)

    async def pending_updates(self) -> list[PendingUpdate]:
        """Updates accepted but not finished, oldest first."""
        records: dict[Any, Any] = await self._call(
            "hgetall", lambda: self._hgetall(self._key("inbox"))
        )
        attempts: dict[Any, Any] = await self._call(
            "hgetall", lambda: self._hgetall(self._key("inbox", "attempts"))
        )
        notes: dict[Any, Any] = await self._call(
            "hgetall", lambda: self._hgetall(self._key("inbox", "notes"))
        )
        found = []
        for update_id, raw in records.items():
            record = json.loads(raw)
            found.append(
                PendingUpdate(
                    int(update_id),
                    str(record["payload"]),
                    float(record["accepted"]),
                    int(attempts.get(update_id, 0)),
                    notes.get(update_id),
                )
            )
        return sorted(found, key=lambda p: p.update_id)

    async def note_update(self, update_id: int, note: str, *, held: bool = False) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note)."""
        keys = [self._key("inbox"), self._key("inbox", "notes")]
        # A stream entry has no inbox record: its note is kept until the stream acknowledges it.
        args = [str(update_id), note, "held" if held else ""]
        await self._call("note", lambda: self._note(keys=keys, args=args))

    async def _hgetall(self, key: str) -> dict[Any, Any]:
        return dict(await self._redis.hgetall(key))

    async def count_attempt(self, update_id: int) -> int:
        """Count one more attempt at an unfinished update; return the attempts so far."""
        keys = [self._key("inbox"), self._key("inbox", "attempts")]
        count = await self._call(
            "count_attempt", lambda: self._count_attempt(keys=keys, args=[str(update_id)])
        )
        return int(count)

    @property
    def durable(self) -> bool:
        """Records live in Redis (as durable as its persistence settings)."""
        return True

    async def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
