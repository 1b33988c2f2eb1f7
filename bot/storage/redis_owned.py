"""Studio records and /forget in Redis (`put_studio`, `forget_user` ...), a part of `RedisStore`.

A studio record is a string (`studio:<token>`) whose JSON names its owner. The scripts that
write a user's studio records and waits also list their keys in the user's index
(`owned:<user>`, see `OWN_LUA`), so `forget_user` reads one sorted set instead of scanning
every user's records. `index_owners` lists records an older version wrote without an index.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from bot.storage.base import studio_owner
from bot.storage.redis_base import OWN_LUA, own_args
from bot.storage.redis_base import as_text as _text
from bot.storage.redis_waits import RedisWaits, wait_owner

logger = logging.getLogger(__name__)

# KEYS: the record, its owner's index. ARGV: record, ttl in ms, then `own`'s.
_PUT = (
    OWN_LUA
    + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
own(KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""
)
# KEYS: an index. ARGV: `own`'s. Lists a record written before the index (the migration).
_OWN = (
    OWN_LUA
    + """
own(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""
)
# While this key lives, a start does not look for unindexed records again. It expires so that
# records an older replica wrote during a rolling upgrade are found at a later start.
INDEXED_TTL = 24 * 3600
_BATCH = 500


class RedisOwned(RedisWaits):
    """The studio-record and /forget methods of `RedisStore`."""

    def __init__(self, url: str, *, prefix: str = "nobg:", timeout: float = 2.0) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
        self._put_studio = self._redis.register_script(_PUT)
        self._own = self._redis.register_script(_OWN)

    async def put_studio(self, token: str, record: str, ttl: float) -> None:
        """Keep a studio keyboard's record (who may press, which cutouts) for `ttl` seconds."""
        key, ttl_ms, owner = self._key("studio", token), int(ttl * 1000), studio_owner(record)
        if owner is None:  # nobody's: nothing for /forget to find (as before the index)
            await self._call("set", lambda: self._redis.set(key, record, px=ttl_ms))
            return
        keys = [key, self._owned(owner)]
        args = [record, str(ttl_ms), *own_args(f"studio:{token}", ttl_ms)]
        await self._call("put_studio", lambda: self._put_studio(keys=keys, args=args))

    async def get_studio(self, token: str) -> str | None:
        """The record behind a studio keyboard's token, if it has not expired."""
        value = await self._call("get", lambda: self._redis.get(self._key("studio", token)))
        return str(value) if value else None

    async def forget_user(self, user_id: int) -> None:
        """Delete what is kept about a user (language, recents, studio, kept request, waits)."""
        index = self._owned(user_id)
        members = [_text(m) for m in await self._call("zrange", lambda: self._zrange(index))]
        for member in members:
            if member.startswith("wait:"):
                await self.take_wait(member.removeprefix("wait:"))
        studio = [m for m in members if m.startswith("studio:")]
        keys = [self._key(m) for m in studio]
        records: list[Any] = await self._call("mget", lambda: self._mget(keys))
        # A record is deleted only if it still names the user (a token is never reused, but
        # an index entry is only a hint).
        mine = [k for k, r in zip(keys, records, strict=True) if r and studio_owner(r) == user_id]

        async def delete() -> Any:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(
                    self._key("lang", user_id),
                    self._key("recent", user_id),
                    self._key("kept", user_id),
                    self._key("kept-run", user_id),
                    *mine,
                )
                if studio:  # not DEL: a record written meanwhile keeps its entry
                    pipe.zrem(index, *studio)
                return await pipe.execute()

        await self._call("del", delete)

    async def upgrade(self) -> None:
        """Bring records an older version of the bot wrote up to date (at start)."""
        await self.index_owners()

    async def index_owners(self) -> int:
        """List records written before the index in their owners' indexes (once a day at most)."""
        done = self._key("owned", "indexed")
        if await self._call("exists", lambda: self._redis.exists(done)):
            return 0
        count = 0
        async for batch in self._studio_batches():
            count += await self._call("index", functools.partial(self._index_studio, batch))
        waits_key = self._key("waits")
        waits = [_text(m) for m in await self._call("zrange", lambda: self._zrange(waits_key))]
        count += await self._call("index", lambda: self._index_waits(waits))
        await self._call("set", lambda: self._redis.set(done, "1", ex=INDEXED_TTL))
        logger.info("Listed %d Redis records in their owners' indexes", count)
        return count

    async def _zrange(self, key: str) -> list[Any]:
        return list(await self._redis.zrange(key, 0, -1))

    async def _mget(self, keys: list[str]) -> list[Any]:
        return list(await self._redis.mget(keys)) if keys else []

    async def _studio_batches(self) -> AsyncIterator[list[str]]:
        batch: list[str] = []
        pattern = self._key("studio", "*")
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(_text(key))
            if len(batch) == _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _index_studio(self, keys: list[str]) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        entries = []
        for n, key in enumerate(keys):
            record, ttl_ms = replies[2 * n], int(replies[2 * n + 1])
            owner = studio_owner(_text(record)) if record else None
            if owner is not None and ttl_ms > 0:
                entries.append((owner, key.removeprefix(self._prefix), ttl_ms))
        return await self._own_all(entries)

    async def _index_waits(self, waits: list[str]) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in waits:
                pipe.pttl(self._key("wait", key))
            ttls = await pipe.execute()
        entries = [
            (wait_owner(key), f"wait:{key}", int(ttl_ms))
            for key, ttl_ms in zip(waits, ttls, strict=True)
            if int(ttl_ms) > 0
        ]
        return await self._own_all(entries)

    async def _own_all(self, entries: list[tuple[int, str, int]]) -> int:
        # Not a transaction: each script is atomic, and listing a record twice is harmless.
        async with self._redis.pipeline(transaction=False) as pipe:
            for owner, member, ttl_ms in entries:
                args = own_args(member, ttl_ms)
                await self._own(keys=[self._owned(owner)], args=args, client=pipe)
            await pipe.execute()
        return len(entries)
