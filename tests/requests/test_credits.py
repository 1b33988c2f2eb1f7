"""Credits without Telegram: the free allowance, spending, buying, refunds and the sums."""

from __future__ import annotations

import time

import limits
import pytest

from bot.ops.metrics import Metrics
from bot.requests.admission import RateLimiter, async_storage
from bot.requests.credits import Credits, invoice_payload, parse_payload
from bot.settings import CreditPack
from bot.storage.base import GIVE_BACK, SPEND
from bot.storage.memory import MemoryStore

PACKS = (CreditPack(10, 25), CreditPack(50, 100))
ADMIN = 1
USER = 7


def make(
    free: str = "2/day", packs: tuple[CreditPack, ...] = PACKS
) -> tuple[Credits, MemoryStore, Metrics]:
    store = MemoryStore()
    metrics = Metrics()
    items = limits.parse_many(free) if free else []
    limiter = RateLimiter(items, async_storage("memory://"), namespace="free")
    credits = Credits(store, limiter, packs, admin_ids=frozenset({ADMIN}), metrics=metrics)
    return credits, store, metrics


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_total", labels)
    return 0.0 if value is None else value


async def test_payments_off_counts_nothing() -> None:
    credits, store, _ = make(packs=())
    assert not credits.enabled
    for _ in range(5):
        spent = await credits.spend(USER)
        assert spent is not None
        assert spent.kind == "off"
    assert await credits.missing_for(USER, 100) == 0
    assert await store.ledger() == []
    assert credits.checkout_problem(USER, "c1:10:25:7", "XTR", 25) == "payments_off"


async def test_free_removals_first_then_credits_then_none() -> None:
    credits, store, metrics = make("2/day")
    await store.credit(USER, 1, "charge", stars=3)
    kinds = []
    for _ in range(4):
        spent = await credits.spend(USER, note="job")
        kinds.append(None if spent is None else spent.kind)
    assert kinds == ["free", "free", "credit", None]
    assert await store.balance(USER) == 0
    [entry] = [e for e in await store.ledger() if e.reason == SPEND]
    assert (entry.amount, entry.note) == (-1, "job")
    assert counter(metrics, "nobg_credits", event="spent") == 1


async def test_admins_are_exempt() -> None:
    credits, store, _ = make("1/day")
    for _ in range(3):
        spent = await credits.spend(ADMIN)
        assert spent is not None
        assert spent.kind == "exempt"
    assert await credits.missing_for(ADMIN, 50) == 0
    assert await store.ledger() == []


async def test_unlimited_free_removals_never_need_credits() -> None:
    credits, store, _ = make("")
    for _ in range(10):
        spent = await credits.spend(USER)
        assert spent is not None
        assert spent.kind == "free"
    allowance = await credits.allowance(USER)
    assert allowance.free_left is None
    assert allowance.removals_left is None
    assert await credits.missing_for(USER, 1000) == 0
    assert await store.ledger() == []


async def test_give_back_returns_credits_only() -> None:
    credits, store, metrics = make("1/day")
    await store.credit(USER, 1, "charge", stars=3)
    free = await credits.spend(USER)
    paid = await credits.spend(USER)
    assert free is not None
    assert paid is not None
    assert await credits.give_back(free) is None, "a free removal is not a credit"
    back = await credits.give_back(paid)
    assert back is not None
    assert (back.reason, back.amount, back.after) == (GIVE_BACK, 1, 1)
    assert await store.balance(USER) == 1
    assert counter(metrics, "nobg_credits", event="returned") == 1


async def test_a_resumed_job_uses_its_free_removal_once() -> None:
    credits, store, _ = make("2/day")
    await store.credit(USER, 1, "charge", stars=3)
    first = await credits.spend(USER, key="51:tg:a")
    assert first is not None
    assert first.kind == "free"
    assert await credits.paid_before("51:tg:a")
    assert not await credits.paid_before("51:tg:b")
    # The same job resumed after a crash: free again, and no second free removal taken.
    again = await credits.spend(USER, key="51:tg:a")
    assert again is not None
    assert again.kind == "free"
    assert (await credits.allowance(USER)).free_left == 1
    # It failed: a free removal is not given back, and its key stays paid.
    assert await credits.give_back(again) is None
    assert await credits.paid_before("51:tg:a")
    kinds = [(await credits.spend(USER, key=f"52:tg:{n}")) for n in range(3)]
    assert [None if k is None else k.kind for k in kinds] == ["free", "credit", None]


async def test_a_resumed_job_a_credit_paid_for_takes_nothing_more() -> None:
    credits, store, _ = make("1/day")
    await store.credit(USER, 2, "charge", stars=3)
    assert (await credits.spend(USER)) is not None  # the day's free removal
    paid = await credits.spend(USER, key="53:tg:a")
    assert paid is not None
    assert paid.kind == "credit"
    again = await credits.spend(USER, key="53:tg:a")
    assert again is not None
    assert again.kind == "credit"
    assert await store.balance(USER) == 1


async def test_missing_for_an_album() -> None:
    credits, store, _ = make("3/day")
    await credits.spend(USER)  # 2 free left
    await store.credit(USER, 2, "charge", stars=5)
    assert await credits.missing_for(USER, 4) == 0
    assert await credits.missing_for(USER, 5) == 1
    assert await credits.missing_for(USER, 10) == 6


async def test_allowance_says_what_is_left_and_when_it_comes_back() -> None:
    credits, store, _ = make("2/minute;3/day")
    await store.credit(USER, 4, "charge", stars=10)
    fresh = await credits.allowance(USER)
    assert (fresh.free_left, fresh.free_resets_in, fresh.credits) == (2, None, 4)
    await credits.spend(USER)
    await credits.spend(USER)
    spent = await credits.allowance(USER)
    assert spent.free_left == 0
    assert spent.free_resets_in is not None
    assert 0 < spent.free_resets_in <= 60
    assert spent.removals_left == 4


def test_payload_names_pack_and_buyer_within_128_bytes() -> None:
    payload = invoice_payload(CreditPack(1_000_000, 100_000), 10**15)
    assert len(payload.encode()) <= 128
    order = parse_payload(payload)
    assert order is not None
    assert (order.credits, order.stars, order.buyer) == (1_000_000, 100_000, 10**15)
    assert parse_payload("c1:10:25") is None
    assert parse_payload("something else") is None


@pytest.mark.parametrize(
    ("payer", "payload", "currency", "total", "problem"),
    [
        (USER, "c1:10:25:7", "XTR", 25, None),
        (USER, "c1:50:100:7", "XTR", 100, None),
        (8, "c1:10:25:7", "XTR", 25, "not_buyer"),
        (USER, "c1:20:40:7", "XTR", 40, "no_such_pack"),
        (USER, "c1:10:20:7", "XTR", 20, "price"),
        (USER, "c1:10:25:7", "XTR", 20, "price"),
        (USER, "c1:10:25:7", "USD", 25, "bad_payload"),
        (USER, "hello", "XTR", 25, "bad_payload"),
    ],
)
def test_checkout_problems(
    payer: int, payload: str, currency: str, total: int, problem: str | None
) -> None:
    credits, _, _ = make()
    assert credits.checkout_problem(payer, payload, currency, total) == problem


async def test_purchase_once_per_charge_and_refund() -> None:
    credits, _store, metrics = make()
    entry = await credits.purchase(USER, "c1:10:25:7", "charge-1", 25)
    assert entry is not None
    assert (entry.amount, entry.after, entry.stars) == (10, 10, 25)
    assert await credits.purchase(USER, "c1:10:25:7", "charge-1", 25) is None
    assert await credits.balance(USER) == 10
    assert counter(metrics, "nobg_stars", direction="received") == 25
    assert counter(metrics, "nobg_credits", event="sold") == 10
    outcome = await credits.refund("charge-1")
    assert outcome.status == "refunded"
    assert counter(metrics, "nobg_credits", event="refunded") == 10
    assert counter(metrics, "nobg_stars", direction="refunded") == 25
    assert (await credits.refund("charge-1")).status == "already_refunded"
    assert counter(metrics, "nobg_stars", direction="refunded") == 25


async def test_a_paid_payload_we_did_not_make_is_kept_for_a_refund() -> None:
    credits, store, _ = make()
    entry = await credits.purchase(USER, "forged", "charge-x", 25)
    assert entry is not None
    assert (entry.amount, entry.stars) == (0, 25)
    payment = await store.payment("charge-x")
    assert payment is not None
    assert payment.stars == 25


async def test_pack_bought_before_a_price_change_keeps_its_credits() -> None:
    credits, _, _ = make(packs=(CreditPack(10, 30),))
    entry = await credits.purchase(USER, "c1:10:25:7", "charge-1", 25)
    assert entry is not None
    assert entry.amount == 10


async def test_stats_today_and_the_last_seven_days() -> None:
    credits, _store, _ = make("1/day")
    await credits.purchase(USER, "c1:10:25:7", "a", 25)
    await credits.purchase(8, "c1:50:100:8", "b", 100)
    await credits.spend(USER)  # free
    await credits.spend(USER)  # a credit
    now = time.time()
    stats = await credits.stats(now)
    assert (stats.today.purchases, stats.today.stars_received) == (2, 125)
    assert (stats.today.credits_sold, stats.today.credits_spent) == (60, 1)
    assert stats.today.buyers == {USER, 8}
    assert stats.week.stars_received == 125
    later = await credits.stats(now + 3 * 24 * 3600)
    assert later.today.purchases == 0, "three days on, not today any more"
    assert later.week.purchases == 2
    much_later = await credits.stats(now + 8 * 24 * 3600)
    assert much_later.week.purchases == 0
