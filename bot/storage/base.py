"""Shared state behind one small interface: result cache, recent cutouts, claims, requests."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

RECENT_LIMIT = 20
# A wait for a user's next message (`put_wait`) outlives its deadline by this long, so the one
# line saying it ran out can still be sent by a bot that was down when it did.
WAIT_LINGER = 3600.0
# How long a keyed spend (`debit(key=...)`) is remembered: longer than a request can wait to be
# resumed after a crash (Telegram keeps unconfirmed updates for 24 hours).
SPEND_KEY_TTL = 2 * 24 * 3600.0
# What a keyed spend was paid with (see `StateStore.spent_under`).
SpentWith = Literal["free", "credit"]


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

    async def accept_updates(self, records: Sequence[tuple[int, str]], ttl: float) -> list[bool]:
        """`accept_update` for several (update id, payload) at once, in one round trip."""
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
        self,
        user_id: int,
        reason: str = SPEND,
        *,
        amount: int = 1,
        note: str = "",
        key: str | None = None,
    ) -> LedgerEntry | None:
        """Take `amount` credits if the balance has them (atomically); None if it has not.

        `key` names what is paid for (a request's job): taken under that key before (a
        request resumed after a crash) and not given back, nothing is taken again and the
        entry returned has amount 0. The key is remembered for `SPEND_KEY_TTL`.
        """
        ...

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
        ...

    async def note_free_spend(self, user_id: int, key: str) -> None:
        """Remember that `key`'s job used a free removal, beside `debit`'s keyed markers.

        Free removals are never given back, so the marker stays for `SPEND_KEY_TTL`.
        """
        ...

    async def spent_under(self, key: str) -> SpentWith | None:
        """What the job named `key` was paid with (a free removal or a credit), if remembered."""
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

    async def claim_request(self, user_id: int, runner: str) -> str | None:
        """The user's kept request, for `runner` to run; None if none, or another runs it.

        It stays kept (a crash mid-run leaves it for the same runner's replay) until
        `drop_request`; a newer `keep_request` replaces it and is free to claim again.
        """
        ...

    async def drop_request(self, user_id: int, record: str) -> bool:
        """Remove the user's kept request if it is still `record` (a newer one stays)."""
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

    async def upgrade(self) -> None:
        """Bring records an older version of the bot wrote up to date (at start)."""
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


def studio_owner(record: str) -> int | None:
    """The user a studio record belongs to (its "owner"), if readable."""
    try:
        owner = json.loads(record).get("owner")
    except (ValueError, AttributeError):
        return None
    return owner if isinstance(owner, int) else None
