"""The Redis implementation of `StateStore`, shared by every replica."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from bot.storage.base import (
    GIVE_BACK,
    PURCHASE,
    RECENT_LIMIT,
    REFUND,
    SPEND,
    LedgerEntry,
    Payment,
    PendingUpdate,
    RefundOutcome,
    StorageUnavailable,
    StoredCutout,
    studio_owner,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

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
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 0
"""


# Credits: each change is one script, so replicas never interleave a read and a write of a
# balance. KEYS: balances (hash user -> credits), payments (hash charge id -> JSON of strings),
# ledger (stream). Numbers cross as strings: Lua's own would lose digits past 14.
_LEDGER_FIELDS = """
local function entry(user, reason, amount, before, after, at, charge, stars, note)
  redis.call('XADD', KEYS[3], '*', 'user_id', user, 'reason', reason, 'amount', amount,
    'before', before, 'after', after, 'at', at, 'charge_id', charge, 'stars', stars,
    'note', note)
end
"""
# ARGV: user, amount, charge id, stars, note, now, payment JSON
_CREDIT = (
    _LEDGER_FIELDS
    + """
if redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[7]) == 0 then return false end
local after = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
entry(ARGV[1], 'purchase', ARGV[2], tostring(after - tonumber(ARGV[2])), tostring(after),
  ARGV[6], ARGV[3], ARGV[4], ARGV[5])
return after
"""
)
# ARGV: user, reason, amount (positive), now, note, taking ('1': never below zero)
_CHANGE = (
    _LEDGER_FIELDS
    + """
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[3])
local delta = amount
if ARGV[6] == '1' then
  if before < amount then return false end
  delta = -amount
end
local after = redis.call('HINCRBY', KEYS[1], ARGV[1], delta)
entry(ARGV[1], ARGV[2], tostring(delta), tostring(before), tostring(after), ARGV[4], '', '0',
  ARGV[5])
return after
"""
)
# ARGV: charge id, reason, partial ('1'), now
_REFUND = (
    _LEDGER_FIELDS
    + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return {'unknown'} end
local p = cjson.decode(raw)
local before = tonumber(redis.call('HGET', KEYS[1], p['user_id']) or '0')
if p['refunded'] ~= nil and p['refunded'] ~= '' then
  return {'already_refunded', raw, tostring(before)}
end
local credits = tonumber(p['credits'])
if before < credits and ARGV[3] ~= '1' then return {'spent', raw, tostring(before)} end
local take = math.min(before, credits)
local after = redis.call('HINCRBY', KEYS[1], p['user_id'], -take)
p['refunded'] = ARGV[4]
local updated = cjson.encode(p)
redis.call('HSET', KEYS[2], ARGV[1], updated)
entry(p['user_id'], ARGV[2], tostring(-take), tostring(before), tostring(after), ARGV[4],
  ARGV[1], p['stars'], '')
return {'refunded', updated, tostring(after), tostring(before)}
"""
)


def _payment_json(payment: Payment) -> str:
    return json.dumps({k: "" if v is None else str(v) for k, v in payment.to_dict().items()})


def _payment_of(raw: str) -> Payment:
    data = json.loads(raw)
    data["refunded"] = data.get("refunded") or None
    return Payment.from_dict(data)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    """State in Redis under one key prefix, every key with a TTL."""

    def __init__(self, url: str, *, prefix: str = "nobg:", timeout: float = 2.0) -> None:
        self._prefix = prefix
        self._redis: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=15,
            decode_responses=True,
        )
        self._accept = self._redis.register_script(_ACCEPT)
        self._count_attempt = self._redis.register_script(_COUNT_ATTEMPT)
        self._note = self._redis.register_script(_NOTE)
        self._credit = self._redis.register_script(_CREDIT)
        self._change = self._redis.register_script(_CHANGE)
        self._refund = self._redis.register_script(_REFUND)

    @property
    def _credit_keys(self) -> list[str]:
        # Balances and the ledger have no TTL: they are kept for refunds and disputes.
        return [
            self._key("credits", "balances"),
            self._key("credits", "payments"),
            self._key("credits", "ledger"),
        ]

    def _key(self, *parts: str | int) -> str:
        return self._prefix + ":".join(str(p) for p in parts)

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        # One place where redis-py errors become the storage error the handlers know.
        try:
            return await op()
        except (RedisError, OSError) as err:
            raise StorageUnavailable(f"Redis {what} failed: {type(err).__name__}") from err

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

    async def put_studio(self, token: str, record: str, ttl: float) -> None:
        """Keep a studio keyboard's record (who may press, which cutouts) for `ttl` seconds."""
        await self._call(
            "set",
            lambda: self._redis.set(self._key("studio", token), record, px=int(ttl * 1000)),
        )

    async def get_studio(self, token: str) -> str | None:
        """The record behind a studio keyboard's token, if it has not expired."""
        value = await self._call("get", lambda: self._redis.get(self._key("studio", token)))
        return str(value) if value else None

    async def accept_update(self, update_id: int, payload: str, ttl: float) -> bool:
        """Record an update before any work on it; False if it was seen before (redelivery)."""
        record = json.dumps({"payload": payload, "accepted": time.time()})
        keys = [self._key("seen", update_id), self._key("inbox")]
        args: list[str | int] = [int(ttl * 1000), update_id, record]
        done = await self._call("accept", lambda: self._accept(keys=keys, args=args))
        return bool(done)

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

    async def note_update(self, update_id: int, note: str) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note)."""
        keys = [self._key("inbox"), self._key("inbox", "notes")]
        args = [str(update_id), note]
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

    async def credit(
        self, user_id: int, amount: int, charge_id: str, *, stars: int, note: str = ""
    ) -> LedgerEntry | None:
        """Add a payment's credits once per `charge_id`; None if that charge was credited."""
        now = time.time()
        record = _payment_json(Payment(charge_id, user_id, amount, stars, now))
        args: list[str | int | float] = [
            user_id,
            amount,
            charge_id,
            stars,
            note,
            repr(now),
            record,
        ]
        after = await self._call("credit", lambda: self._credit(keys=self._credit_keys, args=args))
        if after is None:
            return None
        after = int(after)
        return LedgerEntry(
            user_id, PURCHASE, amount, after - amount, after, now, charge_id, stars, note
        )

    async def _apply(
        self, user_id: int, reason: str, amount: int, note: str, *, taking: bool
    ) -> LedgerEntry | None:
        now = time.time()
        args: list[str | int | float] = [
            user_id,
            reason,
            amount,
            repr(now),
            note,
            "1" if taking else "0",
        ]
        after = await self._call(
            "credit change", lambda: self._change(keys=self._credit_keys, args=args)
        )
        if after is None:
            return None
        delta = -amount if taking else amount
        after = int(after)
        return LedgerEntry(user_id, reason, delta, after - delta, after, now, note=note)

    async def debit(
        self, user_id: int, reason: str = SPEND, *, amount: int = 1, note: str = ""
    ) -> LedgerEntry | None:
        """Take `amount` credits if the balance has them (atomically); None if it has not."""
        return await self._apply(user_id, reason, amount, note, taking=True)

    async def give_back(
        self, user_id: int, reason: str = GIVE_BACK, *, amount: int = 1, note: str = ""
    ) -> LedgerEntry:
        """Return credits taken for a job that failed."""
        entry = await self._apply(user_id, reason, amount, note, taking=False)
        assert entry is not None  # adding always succeeds
        return entry

    async def refund(
        self, charge_id: str, reason: str = REFUND, *, partial: bool = False
    ) -> RefundOutcome:
        """Take a payment's credits back, once; refused if they are spent unless `partial`."""
        now = time.time()
        args: list[str | int | float] = [charge_id, reason, "1" if partial else "0", repr(now)]
        answer: list[Any] = await self._call(
            "refund", lambda: self._refund(keys=self._credit_keys, args=args)
        )
        status = _text(answer[0])
        if status == "unknown":
            return RefundOutcome("unknown")
        payment = _payment_of(_text(answer[1]))
        balance = int(_text(answer[2]))
        if status == "already_refunded":
            return RefundOutcome("already_refunded", payment, balance=balance)
        if status == "spent":
            return RefundOutcome("spent", payment, balance=balance)
        before = int(_text(answer[3]))
        entry = LedgerEntry(
            payment.user_id,
            reason,
            balance - before,
            before,
            balance,
            now,
            charge_id,
            payment.stars,
        )
        return RefundOutcome("refunded", payment, entry, balance)

    async def balance(self, user_id: int) -> int:
        """A user's credits now."""
        value = await self._call(
            "hget", lambda: self._redis.hget(self._key("credits", "balances"), str(user_id))
        )
        return int(value) if value else 0

    async def payment(self, charge_id: str) -> Payment | None:
        """The payment with this charge id, if it was credited."""
        raw = await self._call(
            "hget", lambda: self._redis.hget(self._key("credits", "payments"), charge_id)
        )
        return _payment_of(_text(raw)) if raw else None

    async def ledger(
        self, *, since: float = 0.0, until: float | None = None, user_id: int | None = None
    ) -> list[LedgerEntry]:
        """Ledger entries in [since, until), oldest first (optionally of one user)."""
        key = self._key("credits", "ledger")
        # Stream ids are the Redis server's clock; a minute of slack either side, then the
        # entries' own times decide.
        start = f"{max(0, int((since - 60) * 1000))}"
        end = "+" if until is None else f"{int((until + 60) * 1000)}"
        found: list[LedgerEntry] = []
        while True:
            batch = await self._call("xrange", functools.partial(self._xrange, key, start, end))
            for _stream_id, fields in batch:
                entry = LedgerEntry.from_dict({_text(k): _text(v) for k, v in fields.items()})
                if entry.at < since or (until is not None and entry.at >= until):
                    continue
                if user_id is None or entry.user_id == user_id:
                    found.append(entry)
            if len(batch) < 1000:
                return found
            start = "(" + _text(batch[-1][0])

    async def _xrange(self, key: str, start: str, end: str) -> list[Any]:
        return list(await self._redis.xrange(key, start, end, count=1000) or [])

    async def forget_user(self, user_id: int) -> None:
        """Delete what is kept about a user (language, recent cutouts, studio records)."""
        await self._call(
            "del",
            lambda: self._redis.delete(self._key("lang", user_id), self._key("recent", user_id)),
        )
        pattern = self._key("studio", "*")

        async def studio_keys() -> list[str]:
            return [_text(k) async for k in self._redis.scan_iter(match=pattern, count=1000)]

        for key in await self._call("scan", studio_keys):
            record = await self._call("get", functools.partial(self._redis.get, key))
            if record and studio_owner(_text(record)) == user_id:
                await self._call("del", functools.partial(self._redis.delete, key))

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
