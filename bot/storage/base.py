"""Shared state behind one small interface: result cache, recent cutouts, claims, requests."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

RECENT_LIMIT = 20
# A wait for a user's next message (`put_wait`) outlives its deadline by this long, so the one
# line saying it ran out can still be sent by a bot that was down when it did.
WAIT_LINGER = 3600.0


@dataclass(frozen=True, slots=True)
class StoredCutout:
    """A cutout Telegram already holds: it can be re-sent by `file_id` at no cost."""

    file_id: str
    file_name: str
    created: float

    def to_dict(self) -> dict[str, Any]:
        """Plain form for serialising backends."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredCutout:
        """Inverse of `to_dict`."""
        return cls(str(data["file_id"]), str(data["file_name"]), float(data["created"]))


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """An update accepted but not yet answered: the request record resumed after a crash."""

    update_id: int
    payload: str
    accepted: float
    attempts: int
    # What the request left in the chat (status messages), for the resumed run to clean up.
    note: str | None = None


# Why a balance changed (`LedgerEntry.reason`).
PURCHASE = "purchase"  # a successful_payment: a pack's credits, once per charge id
SPEND = "spend"  # one Freepik call made for the user
GIVE_BACK = "give_back"  # the job that spent a credit failed
REFUND = "refund"  # an admin's /refund: the Stars went back, so do the credits
TELEGRAM_REFUND = "telegram_refund"  # a refunded_payment message: refunded outside the bot


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One change of a user's credits: who, why, which payment, how much, before and after."""

    user_id: int
    reason: str
    amount: int  # signed: + credits added, - credits taken
    before: int
    after: int
    at: float  # Unix time
    charge_id: str | None = None  # telegram_payment_charge_id of purchases and refunds
    stars: int = 0  # Stars paid (purchase) or given back (refunds)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain form for serialising backends."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        """Inverse of `to_dict`."""
        charge = data.get("charge_id")
        return cls(
            int(data["user_id"]),
            str(data["reason"]),
            int(data["amount"]),
            int(data["before"]),
            int(data["after"]),
            float(data["at"]),
            None if charge in (None, "") else str(charge),
            int(data.get("stars") or 0),
            str(data.get("note") or ""),
        )


@dataclass(frozen=True, slots=True)
class Payment:
    """A successful Stars payment as the ledger knows it (looked up by its charge id)."""

    charge_id: str
    user_id: int
    credits: int
    stars: int
    at: float
    refunded: float | None = None  # when its credits were taken back

    def to_dict(self) -> dict[str, Any]:
        """Plain form for serialising backends."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Payment:
        """Inverse of `to_dict`."""
        refunded = data.get("refunded")
        return cls(
            str(data["charge_id"]),
            int(data["user_id"]),
            int(data["credits"]),
            int(data["stars"]),
            float(data["at"]),
            None if refunded is None else float(refunded),
        )


RefundStatus = Literal["refunded", "unknown", "already_refunded", "spent"]


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    """What `refund` did: the entry if credits were taken back, else why not."""

    status: RefundStatus
    payment: Payment | None = None
    entry: LedgerEntry | None = None
    balance: int = 0  # the user's balance now (for "spent": less than the payment's credits)


@dataclass(slots=True)
class LedgerTotals:
    """Sums of the ledger over a time range (for /stats)."""

    purchases: int = 0
    credits_sold: int = 0
    stars_received: int = 0
    credits_spent: int = 0
    credits_returned: int = 0  # given back after failed jobs
    refunds: int = 0
    credits_refunded: int = 0
    stars_refunded: int = 0
    buyers: set[int] = field(default_factory=set)
    spenders: set[int] = field(default_factory=set)

    def add(self, entry: LedgerEntry) -> None:
        """Count one entry."""
        if entry.reason == PURCHASE:
            self.purchases += 1
            self.credits_sold += entry.amount
            self.stars_received += entry.stars
            self.buyers.add(entry.user_id)
        elif entry.reason == SPEND:
            self.credits_spent -= entry.amount
            self.spenders.add(entry.user_id)
        elif entry.reason == GIVE_BACK:
            self.credits_returned += entry.amount
        elif entry.reason in (REFUND, TELEGRAM_REFUND):
            self.refunds += 1
            self.credits_refunded -= entry.amount
            self.stars_refunded += entry.stars


def totals_of(entries: list[LedgerEntry]) -> LedgerTotals:
    """The sums of `entries`."""
    totals = LedgerTotals()
    for entry in entries:
        totals.add(entry)
    return totals


class StateStore(Protocol):
    """What the bot keeps between requests; memory now, Redis for several replicas."""

    async def get_cutout(self, key: str) -> StoredCutout | None:
        """The cached cutout for a source key, if any and not expired."""
        ...

    async def put_cutout(self, key: str, cutout: StoredCutout, ttl: float) -> None:
        """Cache a cutout for `ttl` seconds (0 = do not cache)."""
        ...

    async def drop_cutout(self, key: str, file_id: str) -> None:
        """Forget the cached cutout for `key` if it is still `file_id` (Telegram rejected it)."""
        ...

    async def push_recent(self, user_id: int, cutout: StoredCutout) -> None:
        """Remember a cutout a user received (newest first, at most `RECENT_LIMIT`)."""
        ...

    async def recent(self, user_id: int, limit: int = RECENT_LIMIT) -> list[StoredCutout]:
        """A user's recent cutouts, newest first."""
        ...

    async def drop_recent(self, user_id: int, file_id: str) -> None:
        """Forget one of a user's recent cutouts (Telegram rejected its file id)."""
        ...

    async def claim(self, key: str, ttl: float) -> bool:
        """Become the one worker for `key` (True) unless someone else holds it (False)."""
        ...

    async def release(self, key: str) -> None:
        """Give up a claim."""
        ...

    async def renew_claim(self, key: str, ttl: float) -> None:
        """Extend a claim we hold to `ttl` seconds from now (a live holder's heartbeat)."""
        ...

    async def put_relay(self, token: str, file_id: str, ttl: float) -> None:
        """Map a relay link token to a Telegram file id for `ttl` seconds."""
        ...

    async def get_relay(self, token: str) -> str | None:
        """The Telegram file id behind a relay token, if it has not expired."""
        ...

    async def get_language(self, user_id: int) -> str | None:
        """The locale a user picked with /language, if any."""
        ...

    async def set_language(self, user_id: int, locale: str) -> None:
        """Remember the locale a user picked with /language."""
        ...

    async def put_studio(self, token: str, record: str, ttl: float) -> None:
        """Keep a studio keyboard's record (who may press, which cutouts) for `ttl` seconds."""
        ...

    async def get_studio(self, token: str) -> str | None:
        """The record behind a studio keyboard's token, if it has not expired."""
        ...

    async def accept_update(self, update_id: int, payload: str, ttl: float) -> bool:
        """Record an update before any work on it; False if it was seen before (redelivery)."""
        ...

    async def finish_update(self, update_id: int) -> None:
        """The update got its reply: drop its record, remember its id until `ttl` ends."""
        ...

    async def pending_updates(self) -> list[PendingUpdate]:
        """Updates accepted but not finished, oldest first."""
        ...

    async def note_update(self, update_id: int, note: str, *, held: bool = False) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note).

        `held`: the update is a Redis stream entry, not an inbox record; the stream drops the
        note when it acknowledges the entry.
        """
        ...

    async def count_attempt(self, update_id: int) -> int:
        """Count one more attempt at an unfinished update; the attempts so far, 0 if finished."""
        ...

    async def credit(
        self, user_id: int, amount: int, charge_id: str, *, stars: int, note: str = ""
    ) -> LedgerEntry | None:
        """Add a payment's credits once per `charge_id`; None if that charge was credited."""
        ...

    async def debit(
        self, user_id: int, reason: str = SPEND, *, amount: int = 1, note: str = ""
    ) -> LedgerEntry | None:
        """Take `amount` credits if the balance has them (atomically); None if it has not."""
        ...

    async def give_back(
        self, user_id: int, reason: str = GIVE_BACK, *, amount: int = 1, note: str = ""
    ) -> LedgerEntry:
        """Return credits taken for a job that failed."""
        ...

    async def refund(
        self, charge_id: str, reason: str = REFUND, *, partial: bool = False
    ) -> RefundOutcome:
        """Take a payment's credits back, once; refused if they are spent unless `partial`.

        `partial` (Telegram already refunded the Stars) takes what is left of them instead.
        """
        ...

    async def balance(self, user_id: int) -> int:
        """A user's credits now."""
        ...

    async def payment(self, charge_id: str) -> Payment | None:
        """The payment with this charge id, if it was credited."""
        ...

    async def ledger(
        self, *, since: float = 0.0, until: float | None = None, user_id: int | None = None
    ) -> list[LedgerEntry]:
        """Ledger entries in [since, until), oldest first (optionally of one user)."""
        ...

    async def keep_request(self, user_id: int, record: str, ttl: float) -> None:
        """Keep one request of a user's for `ttl` seconds (one per user: the newest wins)."""
        ...

    async def take_request(self, user_id: int) -> str | None:
        """The user's kept request, removed in the same step (so only one caller gets it)."""
        ...

    async def put_wait(self, key: str, record: str, until: float) -> None:
        """Wait for a user's next message until `until` (epoch seconds); replaces any earlier.

        `key` is `<chat id>:<user id>`. The record stays `WAIT_LINGER` past `until`, for
        `due_waits`.
        """
        ...

    async def get_wait(self, key: str) -> str | None:
        """The wait under `key`, whether its time ran out or not."""
        ...

    async def take_wait(self, key: str) -> str | None:
        """The wait under `key`, removed in the same step (so only one caller gets it)."""
        ...

    async def due_waits(self, now: float, limit: int = 100) -> list[str]:
        """Keys of waits whose time ran out by `now` and that nobody has taken yet."""
        ...

    async def forget_user(self, user_id: int) -> None:
        """Delete what is kept about a user (language, recents, studio, kept request, waits).

        The ledger and balance stay: they are kept for refunds and disputes.
        """
        ...

    @property
    def durable(self) -> bool:
        """Whether records outlive this process (a restart resumes them)."""
        ...

    async def ping(self) -> bool:
        """Whether the backend is reachable."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class StorageUnavailable(Exception):
    """The storage backend cannot be reached right now."""


class ProcessClaims:
    """Job claims held in this process's memory (for stores that serve a single process)."""

    def __init__(self) -> None:
        self._claims: dict[str, float] = {}

    async def claim(self, key: str, ttl: float) -> bool:
        """Become the one worker for `key` (True) unless someone else holds it (False)."""
        now = time.monotonic()
        expires = self._claims.get(key)
        if expires is not None and expires > now:
            return False
        if len(self._claims) > 10_000:  # forget expired claims of jobs that never released them
            self._claims = {k: t for k, t in self._claims.items() if t > now}
        self._claims[key] = now + ttl
        return True

    async def release(self, key: str) -> None:
        """Give up a claim."""
        self._claims.pop(key, None)

    async def renew_claim(self, key: str, ttl: float) -> None:
        """Extend a claim we hold to `ttl` seconds from now (a live holder's heartbeat)."""
        if key in self._claims:
            self._claims[key] = time.monotonic() + ttl


class MemoryStore(ProcessClaims):
    """In-process state with TTLs; for a single bot process."""

    def __init__(self, *, max_cached: int = 100_000) -> None:
        super().__init__()
        self._cutouts: OrderedDict[str, tuple[float, StoredCutout]] = OrderedDict()
        self._recent: dict[int, list[StoredCutout]] = {}
        self._relays: dict[str, tuple[float, str]] = {}
        self._languages: dict[int, str] = {}
        self._studio: dict[str, tuple[float, str]] = {}
        self._max_cached = max_cached
        self._inbox: dict[int, PendingUpdate | None] = {}
        self._seen_expiry: dict[int, float] = {}
        self._balances: dict[int, int] = {}
        self._payments: dict[str, Payment] = {}
        self._ledger: list[LedgerEntry] = []
        self._kept: dict[int, tuple[float, str]] = {}
        self._waits: dict[str, tuple[float, str]] = {}

    async def get_cutout(self, key: str) -> StoredCutout | None:
        """The cached cutout for a source key, if any and not expired."""
        entry = self._cutouts.get(key)
        if entry is None:
            return None
        expires, cutout = entry
        if expires <= time.monotonic():
            del self._cutouts[key]
            return None
        self._cutouts.move_to_end(key)
        return cutout

    async def put_cutout(self, key: str, cutout: StoredCutout, ttl: float) -> None:
        """Cache a cutout for `ttl` seconds (0 = do not cache)."""
        if ttl <= 0:
            return
        self._cutouts[key] = (time.monotonic() + ttl, cutout)
        self._cutouts.move_to_end(key)
        while len(self._cutouts) > self._max_cached:
            self._cutouts.popitem(last=False)

    async def drop_cutout(self, key: str, file_id: str) -> None:
        """Forget the cached cutout for `key` if it is still `file_id` (Telegram rejected it)."""
        entry = self._cutouts.get(key)
        if entry is not None and entry[1].file_id == file_id:
            del self._cutouts[key]

    async def push_recent(self, user_id: int, cutout: StoredCutout) -> None:
        """Remember a cutout a user received (newest first, at most `RECENT_LIMIT`)."""
        items = [c for c in self._recent.get(user_id, []) if c.file_id != cutout.file_id]
        self._recent[user_id] = [cutout, *items][:RECENT_LIMIT]

    async def recent(self, user_id: int, limit: int = RECENT_LIMIT) -> list[StoredCutout]:
        """A user's recent cutouts, newest first."""
        return list(self._recent.get(user_id, [])[:limit])

    async def drop_recent(self, user_id: int, file_id: str) -> None:
        """Forget one of a user's recent cutouts (Telegram rejected its file id)."""
        items = [c for c in self._recent.get(user_id, []) if c.file_id != file_id]
        self._recent[user_id] = items

    async def put_relay(self, token: str, file_id: str, ttl: float) -> None:
        """Map a relay link token to a Telegram file id for `ttl` seconds."""
        now = time.monotonic()
        # Drop expired links now and then, so the map cannot grow without bound.
        if len(self._relays) > 1000:
            self._relays = {k: v for k, v in self._relays.items() if v[0] > now}
        self._relays[token] = (now + ttl, file_id)

    async def get_relay(self, token: str) -> str | None:
        """The Telegram file id behind a relay token, if it has not expired."""
        entry = self._relays.get(token)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    async def get_language(self, user_id: int) -> str | None:
        """The locale a user picked with /language, if any."""
        return self._languages.get(user_id)

    async def set_language(self, user_id: int, locale: str) -> None:
        """Remember the locale a user picked with /language."""
        self._languages[user_id] = locale

    async def put_studio(self, token: str, record: str, ttl: float) -> None:
        """Keep a studio keyboard's record (who may press, which cutouts) for `ttl` seconds."""
        now = time.monotonic()
        if len(self._studio) > 10_000:
            self._studio = {k: v for k, v in self._studio.items() if v[0] > now}
        self._studio[token] = (now + ttl, record)

    async def get_studio(self, token: str) -> str | None:
        """The record behind a studio keyboard's token, if it has not expired."""
        entry = self._studio.get(token)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    async def accept_update(self, update_id: int, payload: str, ttl: float) -> bool:
        """Record an update before any work on it; False if it was seen before (redelivery)."""
        now = time.monotonic()
        if len(self._seen_expiry) > 10_000:  # forget finished ids whose time is up
            for old in [u for u, t in self._seen_expiry.items() if t <= now]:
                if self._inbox.get(old) is None:
                    self._inbox.pop(old, None)
                    del self._seen_expiry[old]
        if update_id in self._inbox and self._seen_expiry.get(update_id, 0) > now:
            return False
        self._inbox[update_id] = PendingUpdate(update_id, payload, time.time(), 0)
        self._seen_expiry[update_id] = now + ttl
        return True

    async def finish_update(self, update_id: int) -> None:
        """The update got its reply: drop its record, remember its id until `ttl` ends."""
        if update_id in self._inbox:
            self._inbox[update_id] = None

    async def pending_updates(self) -> list[PendingUpdate]:
        """Updates accepted but not finished, oldest first."""
        return sorted((p for p in self._inbox.values() if p), key=lambda p: p.update_id)

    async def count_attempt(self, update_id: int) -> int:
        """Count one more attempt at an unfinished update; return the attempts so far."""
        pending = self._inbox.get(update_id)
        if pending is None:
            return 0
        self._inbox[update_id] = replace(pending, attempts=pending.attempts + 1)
        return pending.attempts + 1

    async def note_update(self, update_id: int, note: str, *, held: bool = False) -> None:
        """Attach `note` to an unfinished update's record (replacing any earlier note)."""
        pending = self._inbox.get(update_id)
        if pending is not None:
            self._inbox[update_id] = replace(pending, note=note)

    # Credits: no await between reading and writing a balance, so each call is atomic.

    def _change(
        self,
        user_id: int,
        reason: str,
        amount: int,
        *,
        charge_id: str | None = None,
        stars: int = 0,
        note: str = "",
    ) -> LedgerEntry:
        before = self._balances.get(user_id, 0)
        entry = LedgerEntry(
            user_id, reason, amount, before, before + amount, time.time(), charge_id, stars, note
        )
        self._balances[user_id] = entry.after
        self._ledger.append(entry)
        return entry

    async def credit(
        self, user_id: int, amount: int, charge_id: str, *, stars: int, note: str = ""
    ) -> LedgerEntry | None:
        """Add a payment's credits once per `charge_id`; None if that charge was credited."""
        if charge_id in self._payments:
            return None
        entry = self._change(
            user_id, PURCHASE, amount, charge_id=charge_id, stars=stars, note=note
        )
        self._payments[charge_id] = Payment(charge_id, user_id, amount, stars, entry.at)
        return entry

    async def debit(
        self, user_id: int, reason: str = SPEND, *, amount: int = 1, note: str = ""
    ) -> LedgerEntry | None:
        """Take `amount` credits if the balance has them (atomically); None if it has not."""
        if self._balances.get(user_id, 0) < amount:
            return None
        return self._change(user_id, reason, -amount, note=note)

    async def give_back(
        self, user_id: int, reason: str = GIVE_BACK, *, amount: int = 1, note: str = ""
    ) -> LedgerEntry:
        """Return credits taken for a job that failed."""
        return self._change(user_id, reason, amount, note=note)

    async def refund(
        self, charge_id: str, reason: str = REFUND, *, partial: bool = False
    ) -> RefundOutcome:
        """Take a payment's credits back, once; refused if they are spent unless `partial`."""
        payment = self._payments.get(charge_id)
        if payment is None:
            return RefundOutcome("unknown")
        balance = self._balances.get(payment.user_id, 0)
        if payment.refunded is not None:
            return RefundOutcome("already_refunded", payment, balance=balance)
        if balance < payment.credits and not partial:
            return RefundOutcome("spent", payment, balance=balance)
        take = min(balance, payment.credits)
        entry = self._change(
            payment.user_id, reason, -take, charge_id=charge_id, stars=payment.stars
        )
        payment = replace(payment, refunded=entry.at)
        self._payments[charge_id] = payment
        return RefundOutcome("refunded", payment, entry, entry.after)

    async def balance(self, user_id: int) -> int:
        """A user's credits now."""
        return self._balances.get(user_id, 0)

    async def payment(self, charge_id: str) -> Payment | None:
        """The payment with this charge id, if it was credited."""
        return self._payments.get(charge_id)

    async def ledger(
        self, *, since: float = 0.0, until: float | None = None, user_id: int | None = None
    ) -> list[LedgerEntry]:
        """Ledger entries in [since, until), oldest first (optionally of one user)."""
        return [
            e
            for e in self._ledger
            if e.at >= since
            and (until is None or e.at < until)
            and (user_id is None or e.user_id == user_id)
        ]

    async def keep_request(self, user_id: int, record: str, ttl: float) -> None:
        """Keep one request of a user's for `ttl` seconds (one per user: the newest wins)."""
        now = time.monotonic()
        if len(self._kept) > 10_000:
            self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
        self._kept[user_id] = (now + ttl, record)

    async def take_request(self, user_id: int) -> str | None:
        """The user's kept request, removed in the same step (so only one caller gets it)."""
        entry = self._kept.pop(user_id, None)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    async def put_wait(self, key: str, record: str, until: float) -> None:
        """Wait for a user's next message until `until` (epoch seconds); replaces any earlier."""
        now = time.time()
        if len(self._waits) > 10_000:
            self._waits = {k: v for k, v in self._waits.items() if v[0] + WAIT_LINGER > now}
        self._waits[key] = (until, record)

    async def get_wait(self, key: str) -> str | None:
        """The wait under `key`, whether its time ran out or not."""
        entry = self._waits.get(key)
        if entry is None or entry[0] + WAIT_LINGER <= time.time():
            return None
        return entry[1]

    async def take_wait(self, key: str) -> str | None:
        """The wait under `key`, removed in the same step (so only one caller gets it)."""
        entry = self._waits.pop(key, None)
        if entry is None or entry[0] + WAIT_LINGER <= time.time():
            return None
        return entry[1]

    async def due_waits(self, now: float, limit: int = 100) -> list[str]:
        """Keys of waits whose time ran out by `now` and that nobody has taken yet."""
        due = [k for k, (until, _r) in self._waits.items() if until <= now < until + WAIT_LINGER]
        return due[:limit]

    async def forget_user(self, user_id: int) -> None:
        """Delete what is kept about a user (language, recents, studio, kept request, waits)."""
        self._languages.pop(user_id, None)
        self._recent.pop(user_id, None)
        self._kept.pop(user_id, None)
        self._waits = {k: v for k, v in self._waits.items() if not k.endswith(f":{user_id}")}
        self._studio = {
            token: entry
            for token, entry in self._studio.items()
            if studio_owner(entry[1]) != user_id
        }

    @property
    def durable(self) -> bool:
        """Records die with the process."""
        return False

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


def studio_owner(record: str) -> int | None:
    """The user a studio record belongs to (its "owner"), if readable."""
    try:
        owner = json.loads(record).get("owner")
    except (ValueError, AttributeError):
        return None
    return owner if isinstance(owner, int) else None
