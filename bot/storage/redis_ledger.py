"""Credits in Redis: balances, payments and the ledger, a part of `RedisStore`."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from bot.storage.base import (
    GIVE_BACK,
    PURCHASE,
    REFUND,
    SPEND,
    SPEND_KEY_TTL,
    LedgerEntry,
    Payment,
    RefundOutcome,
    SpentWith,
)
from bot.storage.redis_base import RedisBase
from bot.storage.redis_base import as_text as _text

# The value of a keyed spend's marker when a free removal paid (a credit's is the user id).
_FREE = "free"

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
# ARGV: user, reason, amount (positive), now, note, taking ('1': never below zero), key TTL
# in ms. A keyed change has KEYS[4], the key's marker: a taking under a live marker takes
# nothing and answers {balance}; a giving back removes it.
_CHANGE = (
    _LEDGER_FIELDS
    + """
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[3])
local delta = amount
if ARGV[6] == '1' then
  if #KEYS == 4 and redis.call('EXISTS', KEYS[4]) == 1 then return {tostring(before)} end
  if before < amount then return false end
  delta = -amount
  if #KEYS == 4 then redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[7]) end
elseif #KEYS == 4 then
  redis.call('DEL', KEYS[4])
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


class RedisLedger(RedisBase):
    """The credit methods of `RedisStore`: each change is one script, atomic across replicas."""

    def __init__(self, url: str, *, prefix: str = "nobg:", timeout: float = 2.0) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
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
        self, user_id: int, reason: str, amount: int, note: str, key: str | None, *, taking: bool
    ) -> LedgerEntry | None:
        now = time.time()
        args: list[str | int | float] = [
            user_id,
            reason,
            amount,
            repr(now),
            note,
            "1" if taking else "0",
            int(SPEND_KEY_TTL * 1000),
        ]
        keys = self._credit_keys
        if key is not None:
            keys = [*keys, self._key("spent", key)]
        after = await self._call("credit change", lambda: self._change(keys=keys, args=args))
        if after is None:
            return None
        if isinstance(after, list):  # spent under this key before: nothing taken
            balance = int(_text(after[0]))
            return LedgerEntry(user_id, reason, 0, balance, balance, now, note=note)
        delta = -amount if taking else amount
        after = int(after)
        return LedgerEntry(user_id, reason, delta, after - delta, after, now, note=note)

    async def debit(
        self,
        user_id: int,
        reason: str = SPEND,
        *,
        amount: int = 1,
        note: str = "",
        key: str | None = None,
    ) -> LedgerEntry | None:
        """Take `amount` credits if the balance has them (atomically); None if it has not."""
        return await self._apply(user_id, reason, amount, note, key, taking=True)

    async def give_back(
        self,
        user_id: int,
        reason: str = GIVE_BACK,
        *,
        amount: int = 1,
        note: str = "",
        key: str | None = None,
    ) -> LedgerEntry:
        """Return credits taken for a job that failed (and forget the `key` they were under)."""
        entry = await self._apply(user_id, reason, amount, note, key, taking=False)
        assert entry is not None  # adding always succeeds
        return entry

    async def note_free_spend(self, user_id: int, key: str) -> None:
        """Remember that `key`'s job used a free removal, beside `debit`'s keyed markers."""
        # The same marker key as a keyed debit's, whose value is the user id: 'free' tells
        # them apart.
        marker = self._key("spent", key)
        ttl = int(SPEND_KEY_TTL * 1000)
        await self._call("free spend", lambda: self._redis.set(marker, _FREE, px=ttl))

    async def spent_under(self, key: str) -> SpentWith | None:
        """What the job named `key` was paid with (a free removal or a credit), if remembered."""
        marker = self._key("spent", key)
        value = await self._call("spent", lambda: self._redis.get(marker))
        if value is None:
            return None
        return "free" if _text(value) == _FREE else "credit"

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
