"""Credits for Telegram Stars, without Telegram: the free allowance, spending, buying, refunds.

The request lifecycle asks `Credits` before a Freepik call is made for a user (`spend`) and
gives the credit back when that job fails (`give_back`); the payment handlers check checkouts
(`checkout_problem`) and add what was paid (`purchase`). Payments off (CREDIT_PACKS empty):
every check passes and nothing is counted, as before payments existed.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bot.ops.metrics import Metrics
from bot.requests.admission import RateLimiter, Refusal
from bot.settings import CreditPack
from bot.storage.base import (
    REFUND,
    SPEND,
    LedgerEntry,
    LedgerTotals,
    Payment,
    RefundOutcome,
    StateStore,
    totals_of,
)

logger = logging.getLogger(__name__)

# An invoice payload: version, credits, Stars, buyer (at most 128 bytes; ~40 used).
_PAYLOAD = re.compile(r"^c1:(\d{1,7}):(\d{1,6}):(\d{1,20})$")

# The refusal scope of a job refused for want of credits (the surfaces offer the packs).
CREDITS_SCOPE = "credits"

SpendKind = Literal["off", "exempt", "free", "credit"]
CheckoutProblem = Literal["payments_off", "bad_payload", "not_buyer", "no_such_pack", "price"]


@dataclass(frozen=True, slots=True)
class Spend:
    """What one Freepik call for a user was paid with (give it to `give_back` on failure)."""

    user_id: int
    kind: SpendKind
    note: str = ""
    # What the credit was taken for (see `StateStore.debit`), None if unnamed.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Allowance:
    """What a user may still do: free removals left (None = unlimited) and credits."""

    free_left: int | None
    free_resets_in: float | None  # seconds until the next free removal comes back
    credits: int

    @property
    def removals_left(self) -> int | None:
        """Free removals plus credits (None = unlimited)."""
        return None if self.free_left is None else self.free_left + self.credits


@dataclass(frozen=True, slots=True)
class Order:
    """What an invoice payload names: a pack for a buyer."""

    credits: int
    stars: int
    buyer: int


def invoice_payload(pack: CreditPack, buyer: int) -> str:
    """The payload naming `pack` and its buyer (checked again at pre-checkout)."""
    return f"c1:{pack.credits}:{pack.stars}:{buyer}"


def parse_payload(payload: str) -> Order | None:
    """The order in a payload we made, or None."""
    found = _PAYLOAD.match(payload)
    if found is None:
        return None
    return Order(int(found[1]), int(found[2]), int(found[3]))


@dataclass(frozen=True, slots=True)
class Stats:
    """The ledger's sums for today (UTC) and the last 7 days."""

    today: LedgerTotals
    week: LedgerTotals
    since: float  # start of the 7 days


def utc_midnight(now: float) -> float:
    """The start of `now`'s UTC day."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class Credits:
    """The free allowance (FREE_REMOVALS, in the limits storage) and the credits ledger."""

    def __init__(
        self,
        store: StateStore,
        free: RateLimiter,
        packs: Sequence[CreditPack],
        *,
        admin_ids: frozenset[int] = frozenset(),
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._free = free
        self.packs = tuple(packs)
        self._admins = admin_ids
        self._metrics = metrics

    @property
    def enabled(self) -> bool:
        """Whether payments are on (CREDIT_PACKS set)."""
        return bool(self.packs)

    def pack(self, credits: int) -> CreditPack | None:
        """The pack of this size on sale now, if any."""
        return next((p for p in self.packs if p.credits == credits), None)

    def _counted(self, user_id: int) -> bool:
        return self.enabled and user_id not in self._admins

    # --- the lifecycle's side ----------------------------------------------------------------

    async def spend(self, user_id: int, note: str = "", key: str | None = None) -> Spend | None:
        """Pay for one Freepik call: a free removal first, else one credit; None if neither.

        Call it only when a Freepik call will be made for this user (not for cache hits, joins
        of another job or studio buttons). `key` names the request's job: a free removal or a
        credit taken under it before (the request resumed after a crash) is not taken again.
        Raises `StorageUnavailable`.
        """
        if not self.enabled:
            return Spend(user_id, "off", note)
        if user_id in self._admins:
            return Spend(user_id, "exempt", note)
        # FREE_REMOVALS empty: every removal is free (credits are never needed).
        if not self._free.enabled:
            return Spend(user_id, "free", note)
        before = None if key is None else await self._store.spent_under(key)
        if before == "free":
            logger.info("User %s's free removal for %s was used before the restart", user_id, key)
            return Spend(user_id, "free", note, key)
        # A credit taken before: `debit` below finds its marker and takes nothing.
        if before is None and await self._free.acquire(user_id) is None:
            if key is not None:
                # Counted in the limits storage, remembered in ours: a crash between the two
                # costs the user a second free removal on the replay, as before keys existed.
                await self._store.note_free_spend(user_id, key)
            return Spend(user_id, "free", note, key)
        entry = await self._store.debit(user_id, SPEND, note=note, key=key)
        if entry is None:
            return None
        if entry.amount == 0:
            logger.info("User %s's credit for %s was taken before the restart", user_id, key)
        elif self._metrics is not None:
            self._metrics.credits_changed("spent", 1)
        return Spend(user_id, "credit", note, key)

    async def give_back(self, spend: Spend) -> LedgerEntry | None:
        """The job `spend` paid for failed: its credit comes back (free removals do not)."""
        if spend.kind != "credit":
            return None
        entry = await self._store.give_back(spend.user_id, note=spend.note, key=spend.key)
        if self._metrics is not None:
            self._metrics.credits_changed("returned", 1)
        return entry

    async def paid_before(self, key: str | None) -> bool:
        """Whether the job named `key` was paid for by a run that died (see `spend`)."""
        if key is None or not self.enabled or not self._free.enabled:
            return False
        return await self._store.spent_under(key) is not None

    async def refusal(self, user_id: int) -> Refusal:
        """Why a job is refused for want of free removals and credits (scope `credits`)."""
        allowance = await self.allowance(user_id)
        wait = allowance.free_resets_in if allowance.free_resets_in is not None else 0.0
        return Refusal(wait, self._free.items[0], scope=CREDITS_SCOPE)

    async def shortfall(self, user_id: int, count: int) -> Refusal | None:
        """A refusal naming how many credits `count` removals lack now (None: enough)."""
        missing = await self.missing_for(user_id, count)
        if not missing:
            return None
        return replace(await self.refusal(user_id), missing=missing)

    async def missing_for(self, user_id: int, count: int) -> int:
        """How many credits `user_id` lacks for `count` removals now (0: enough)."""
        if not self._counted(user_id):
            return 0
        allowance = await self.allowance(user_id)
        if allowance.removals_left is None:
            return 0
        return max(0, count - allowance.removals_left)

    async def allowance(self, user_id: int) -> Allowance:
        """Free removals left now, when the next comes back, and credits."""
        credits = await self._store.balance(user_id)
        if not self._free.enabled:
            return Allowance(None, None, credits)
        left, resets_in = await self._free.remaining(user_id)
        return Allowance(left, resets_in, credits)

    # --- buying --------------------------------------------------------------------------------

    def checkout_problem(
        self, payer: int, payload: str, currency: str, total_amount: int
    ) -> CheckoutProblem | None:
        """Why a pre-checkout must be refused (None: accept it). No storage: answers at once."""
        if not self.enabled:
            return "payments_off"
        order = parse_payload(payload)
        if order is None or currency != "XTR":
            return "bad_payload"
        if order.buyer != payer:
            return "not_buyer"
        pack = self.pack(order.credits)
        if pack is None:
            return "no_such_pack"
        if pack.stars != order.stars or total_amount != pack.stars:
            return "price"
        return None

    async def purchase(
        self, payer: int, payload: str, charge_id: str, total_amount: int
    ) -> LedgerEntry | None:
        """Add what a successful payment bought, once per charge id (None: added before).

        The credits are the payload's, whatever the packs are now: Telegram took the Stars.
        """
        order = parse_payload(payload)
        credits = 0
        if order is None:
            # Pre-checkout refuses payloads we did not make; if one is paid anyway, the
            # payment is recorded (Stars, no credits) for an admin to /refund.
            logger.error("Payment %s names no pack; recorded for a refund", charge_id)
        else:
            credits = order.credits
        entry = await self._store.credit(
            payer, credits, charge_id, stars=total_amount, note=f"pack {credits}"
        )
        if entry is not None and self._metrics is not None:
            self._metrics.stars_paid(total_amount)
            self._metrics.credits_changed("sold", credits)
        return entry

    async def refund(
        self, charge_id: str, *, partial: bool = False, reason: str = REFUND
    ) -> RefundOutcome:
        """Take a payment's credits back (see `StateStore.refund`), with metrics."""
        outcome = await self._store.refund(charge_id, reason, partial=partial)
        if outcome.entry is not None and self._metrics is not None:
            self._metrics.credits_changed("refunded", -outcome.entry.amount)
            self._metrics.stars_refunded(outcome.entry.stars)
        return outcome

    async def balance(self, user_id: int) -> int:
        """A user's credits."""
        return await self._store.balance(user_id)

    async def payment(self, charge_id: str) -> Payment | None:
        """A recorded payment by its charge id."""
        return await self._store.payment(charge_id)

    # --- the operator's view ---------------------------------------------------------------

    async def stats(self, now: float | None = None) -> Stats:
        """Sums of the ledger for today (UTC) and the last 7 days (today included)."""
        now = time.time() if now is None else now
        today = utc_midnight(now)
        since = today - 6 * 24 * 3600
        entries = await self._store.ledger(since=since)
        return Stats(totals_of([e for e in entries if e.at >= today]), totals_of(entries), since)
