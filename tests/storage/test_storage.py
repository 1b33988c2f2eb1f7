"""The state stores, memory, SQLite and Redis, against the same expectations."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage.base import (
    GIVE_BACK,
    PURCHASE,
    RECENT_LIMIT,
    REFUND,
    SPEND,
    TELEGRAM_REFUND,
    WAIT_LINGER,
    RefundOutcome,
    StateStore,
    StorageUnavailable,
    StoredCutout,
    totals_of,
)
from bot.storage.factory import create_store
from bot.storage.memory import MemoryStore
from bot.storage.redis_store import RedisStore
from bot.storage.sqlite_store import DataDirError, SqliteStore
from tests.redis_server import RedisServer
from tests.support import redis_leftovers


def cutout(n: int) -> StoredCutout:
    return StoredCutout(f"file-{n}", f"name-{n}.png", float(n))


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        sqlite_store = create_store(f"sqlite://{tmp_path / 'db' / 'state.sqlite3'}")
        assert isinstance(sqlite_store, SqliteStore)
        yield sqlite_store
        await sqlite_store.aclose()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = create_store(url, prefix="test:")
    assert isinstance(redis_store, RedisStore)
    yield redis_store
    await redis_store.aclose()


async def test_cutouts_expire(store: StateStore) -> None:
    await store.put_cutout("k", cutout(1), ttl=0.2)
    assert await store.get_cutout("k") == cutout(1)
    await asyncio.sleep(0.3)
    assert await store.get_cutout("k") is None


async def test_drop_cutout_only_drops_the_rejected_file_id(store: StateStore) -> None:
    await store.put_cutout("k", cutout(1), ttl=60)
    await store.drop_cutout("k", "file-2")  # someone cached a newer one meanwhile: kept
    assert await store.get_cutout("k") == cutout(1)
    await store.drop_cutout("k", "file-1")
    assert await store.get_cutout("k") is None
    await store.drop_cutout("missing", "file-1")  # nothing to drop: no error


async def test_zero_ttl_is_not_cached(store: StateStore) -> None:
    await store.put_cutout("k", cutout(1), ttl=0)
    assert await store.get_cutout("k") is None


async def test_studio_records_expire(store: StateStore) -> None:
    await store.put_studio("tok", '{"owner": 1}', ttl=0.2)
    assert await store.get_studio("tok") == '{"owner": 1}'
    assert await store.get_studio("other") is None
    await asyncio.sleep(0.3)
    assert await store.get_studio("tok") is None


async def test_a_kept_request_stays_until_dropped_newest_wins_and_expires(
    store: StateStore,
) -> None:
    assert await store.claim_request(7, "pay-1") is None
    await store.keep_request(7, "first", ttl=60)
    await store.keep_request(7, "second", ttl=60)  # one per user: the newest wins
    await store.keep_request(8, "other", ttl=60)
    assert await store.claim_request(7, "pay-1") == "second"
    # Claimed, not removed: the same runner (a replay after a crash) claims it again.
    assert await store.claim_request(7, "pay-1") == "second"
    assert await store.drop_request(7, "second")
    assert await store.claim_request(7, "pay-1") is None, "dropped once run"
    assert not await store.drop_request(7, "second")
    assert await store.claim_request(8, "pay-2") == "other"
    await store.keep_request(7, "short", ttl=0.2)
    await asyncio.sleep(0.3)
    assert await store.claim_request(7, "pay-1") is None


async def test_a_claimed_kept_request_is_not_run_by_another_runner(store: StateStore) -> None:
    await store.keep_request(7, "photo", ttl=60)
    assert await store.claim_request(7, "pay-1") == "photo"
    assert await store.claim_request(7, "pay-2") is None, "a second payment does not run it"
    assert await store.claim_request(7, "pay-1") == "photo"
    assert await store.drop_request(7, "photo")
    assert await store.claim_request(7, "pay-2") is None


async def test_dropping_a_run_request_keeps_a_newer_one(store: StateStore) -> None:
    await store.keep_request(7, "old", ttl=60)
    assert await store.claim_request(7, "pay-1") == "old"
    # Refused again while the old one runs: the newer request is kept, free to claim.
    await store.keep_request(7, "new", ttl=60)
    assert not await store.drop_request(7, "old"), "compare-and-delete: not the old value"
    assert await store.claim_request(7, "pay-2") == "new"
    assert await store.drop_request(7, "new")
    assert await store.claim_request(7, "pay-2") is None


async def test_a_kept_request_goes_to_one_of_two_runners(store: StateStore) -> None:
    for n in range(5):
        await store.keep_request(7, f"photo-{n}", ttl=60)
        claimed = await asyncio.gather(
            store.claim_request(7, f"a{n}"), store.claim_request(7, f"b{n}")
        )
        assert sorted(claimed, key=str) == [None, f"photo-{n}"]
        assert await store.drop_request(7, f"photo-{n}")


async def test_only_one_of_two_drops_removes_the_kept_request(store: StateStore) -> None:
    for _ in range(5):
        await store.keep_request(7, "photo", ttl=60)
        dropped = await asyncio.gather(
            store.drop_request(7, "photo"), store.drop_request(7, "photo")
        )
        assert sorted(dropped) == [False, True]


async def test_a_wait_is_read_taken_once_and_found_when_its_time_runs_out(
    store: StateStore,
) -> None:
    now = time.time()
    await store.put_wait("-5:7", "first", now + 60)
    await store.put_wait("-5:7", "second", now + 60)  # a second press replaces the first
    await store.put_wait("-5:8", "other", now - 1)  # already ran out
    assert await store.get_wait("-5:7") == "second"
    assert await store.due_waits(now) == ["-5:8"]
    assert sorted(await store.due_waits(now + 61)) == ["-5:7", "-5:8"]
    assert await store.take_wait("-5:7") == "second"
    assert await store.take_wait("-5:7") is None
    assert await store.get_wait("-5:7") is None
    assert await store.due_waits(now + 61) == ["-5:8"]
    # Taken once, by one caller, and then no longer due.
    taken = await asyncio.gather(store.take_wait("-5:8"), store.take_wait("-5:8"))
    assert sorted(taken, key=str) == [None, "other"]
    assert await store.due_waits(now + 61) == []


async def test_a_wait_is_forgotten_long_after_its_deadline(store: StateStore) -> None:
    long_ago = time.time() - WAIT_LINGER - 1
    await store.put_wait("1:2", "old", long_ago)
    assert await store.get_wait("1:2") is None
    assert await store.due_waits(time.time()) == []
    assert await store.take_wait("1:2") is None


async def test_recent_is_newest_first_deduplicated_and_capped(store: StateStore) -> None:
    for n in range(RECENT_LIMIT + 5):
        await store.push_recent(1, cutout(n))
    await store.push_recent(1, StoredCutout("file-10", "name-10.png", 1000.0))
    recent = await store.recent(1)
    assert len(recent) == RECENT_LIMIT
    assert recent[0].file_id == "file-10"
    assert recent[1] == cutout(RECENT_LIMIT + 4)
    assert [c.file_id for c in recent].count("file-10") == 1
    assert await store.recent(2) == []
    assert len(await store.recent(1, limit=3)) == 3


async def test_drop_recent_forgets_one_file_id_of_one_user(store: StateStore) -> None:
    for n in range(3):
        await store.push_recent(1, cutout(n))
    await store.push_recent(2, cutout(1))
    await store.drop_recent(1, cutout(1).file_id)
    await store.drop_recent(1, "never-there")
    assert await store.recent(1) == [cutout(2), cutout(0)]
    assert await store.recent(2) == [cutout(1)]


async def test_claims(store: StateStore) -> None:
    assert await store.claim("k", ttl=60)
    assert not await store.claim("k", ttl=60)
    await store.release("k")
    assert await store.claim("k", ttl=0.1)
    await asyncio.sleep(0.2)
    assert await store.claim("k", ttl=60), "an expired claim can be taken over"


async def test_a_renewed_claim_outlives_its_first_ttl(store: StateStore) -> None:
    assert await store.claim("k", ttl=0.3)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await store.renew_claim("k", ttl=0.3)
    assert not await store.claim("k", ttl=60), "renewed: still held"
    await asyncio.sleep(0.4)
    assert await store.claim("k", ttl=60), "no longer renewed: expired"
    await store.renew_claim("gone", ttl=60)
    assert await store.claim("gone", ttl=60), "renewing nothing claims nothing"


async def test_relay_links_expire(store: StateStore) -> None:
    await store.put_relay("tok", "file-id-1", ttl=0.2)
    assert await store.get_relay("tok") == "file-id-1"
    assert await store.get_relay("other") is None
    await asyncio.sleep(0.3)
    assert await store.get_relay("tok") is None


async def test_language_choice_per_user(store: StateStore) -> None:
    assert await store.get_language(1) is None
    await store.set_language(1, "pt_BR")
    await store.set_language(2, "ar")
    await store.set_language(1, "uk")
    assert await store.get_language(1) == "uk"
    assert await store.get_language(2) == "ar"
    assert await store.get_language(3) is None


async def test_ping(store: StateStore) -> None:
    assert await store.ping()


async def test_request_records(store: StateStore) -> None:
    update = json.dumps({"update_id": 7, "message": {"text": "hi"}})
    assert await store.accept_update(7, update, ttl=60)
    assert not await store.accept_update(7, update, ttl=60), "a redelivery is not new"
    assert await store.accept_update(5, "{}", ttl=60)
    pending = await store.pending_updates()
    assert [p.update_id for p in pending] == [5, 7]
    assert pending[1].payload == update
    assert pending[1].attempts == 0
    assert await store.count_attempt(7) == 1
    assert await store.count_attempt(7) == 2
    assert [p.attempts for p in await store.pending_updates()] == [0, 2]
    await store.note_update(7, "status 1")
    await store.note_update(7, "status 2")
    assert [p.note for p in await store.pending_updates()] == [None, "status 2"]
    await store.finish_update(7)
    assert [p.update_id for p in await store.pending_updates()] == [5]
    assert not await store.accept_update(7, update, ttl=60), "finished ids are remembered"


async def test_request_records_of_a_batch_in_one_call(store: StateStore) -> None:
    assert await store.accept_update(11, '{"a": 1}', ttl=60)
    await store.finish_update(11)
    records = [(10, '{"b": 2}'), (11, '{"a": 1}'), (12, '{"c": 3}'), (10, '{"b": 2}')]
    # 11 was answered already and 10 comes twice: only the first 10 and 12 are new.
    assert await store.accept_updates(records, ttl=60) == [True, False, True, False]
    pending = await store.pending_updates()
    assert [(p.update_id, p.payload) for p in pending] == [(10, '{"b": 2}'), (12, '{"c": 3}')]
    assert await store.accept_updates([], ttl=60) == []


async def test_a_finished_update_takes_no_attempt_and_no_note(store: StateStore) -> None:
    # A process resuming a record another one just finished: nothing of it comes back.
    assert await store.accept_update(8, "{}", ttl=60)
    await store.finish_update(8)
    assert await store.count_attempt(8) == 0
    await store.note_update(8, "status")
    assert await store.count_attempt(99) == 0, "never accepted"
    assert await store.pending_updates() == []
    assert await store.accept_update(9, "{}", ttl=60)
    assert [p.attempts for p in await store.pending_updates()] == [0]
    if isinstance(store, RedisStore):
        # Only the documented marker (update ids are remembered for 24 hours) stays.
        assert await redis_leftovers(store._redis, 8) == ["test:seen:8"]


async def test_request_ids_are_forgotten_after_their_ttl(store: StateStore) -> None:
    assert await store.accept_update(1, "{}", ttl=0.2)
    await store.finish_update(1)
    await asyncio.sleep(0.3)
    assert await store.accept_update(1, "{}", ttl=60)


async def test_memory_cache_is_bounded() -> None:
    store = MemoryStore(max_cached=2)
    for n in range(3):
        await store.put_cutout(f"k{n}", cutout(n), ttl=60)
    assert await store.get_cutout("k0") is None
    assert await store.get_cutout("k2") == cutout(2)


async def test_redis_keys_carry_the_prefix_and_a_ttl(redis_url: str) -> None:
    import redis.asyncio as redis

    store = RedisStore(redis_url, prefix="pfx:")
    await store.put_cutout("tg:abc", cutout(1), ttl=100)
    await store.push_recent(5, cutout(2))
    await store.claim("tg:abc", ttl=100)
    await store.put_relay("tok", "f", ttl=100)
    await store.set_language(5, "es")
    await store.put_studio("tok", '{"owner": 5}', ttl=100)
    await store.keep_request(5, "{}", ttl=100)
    await store.claim_request(5, "pay")
    await store.put_wait("-9:5", "{}", time.time() + 100)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = sorted(str(k) for k in await client.keys("*"))
        assert keys == [
            "pfx:claim:tg:abc",
            "pfx:cutout:tg:abc",
            "pfx:kept-run:5",
            "pfx:kept:5",
            "pfx:lang:5",
            "pfx:owned:5",
            "pfx:recent:5",
            "pfx:relay:tok",
            "pfx:studio:tok",
            "pfx:wait:-9:5",
            "pfx:waits",
        ]
        for key in keys:
            assert await client.ttl(key) > 0
    finally:
        await client.aclose()
        await store.aclose()


async def test_redis_down_raises_storage_unavailable(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout=0.5)
    await store.put_cutout("k", cutout(1), ttl=60)
    own_redis.stop()
    with pytest.raises(StorageUnavailable):
        await store.get_cutout("k")
    assert not await store.ping()
    own_redis.start()
    # Recovers by itself once Redis is back (the data went with the old process).
    assert await store.ping()
    assert await store.get_cutout("k") is None
    await store.aclose()


async def test_sqlite_keeps_everything_across_reopening(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'state.sqlite3'}"
    first = create_store(url)
    await first.put_cutout("k", cutout(1), ttl=60)
    await first.push_recent(3, cutout(2))
    await first.put_relay("tok", "f", ttl=60)
    await first.accept_update(9, "{}", ttl=60)
    assert await first.claim("job", ttl=60)
    await first.aclose()
    second = create_store(url)
    try:
        assert await second.get_cutout("k") == cutout(1)
        assert await second.recent(3) == [cutout(2)]
        assert await second.get_relay("tok") == "f"
        assert [p.update_id for p in await second.pending_updates()] == [9]
        assert await second.claim("job", ttl=60), "a dead process's claim does not block"
    finally:
        await second.aclose()


async def test_sqlite_file_belongs_to_one_process(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'state.sqlite3'}"
    first = create_store(url)
    try:
        with pytest.raises(DataDirError, match="another bot process"):
            create_store(url)
        doctor = create_store(url, exclusive=False)  # looking is fine
        assert await doctor.ping()
        await doctor.aclose()
    finally:
        await first.aclose()


async def test_sqlite_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    # A file where the directory should be: refused even for root, unlike permissions.
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirError, match=r"data directory .*data/sub is not writable"):
        create_store(f"sqlite://{blocker / 'sub' / 'state.sqlite3'}")


async def test_sqlite_sweeps_expired_rows_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    try:
        sizes = []
        for round_ in range(4):
            for n in range(2000):
                await store.put_cutout(f"{round_}-{n}", cutout(n), ttl=0.05)
                await store.put_relay(f"{round_}-{n}", "f" * 50, ttl=0.05)
            await asyncio.sleep(0.1)
            await store.db.sweep()
            sizes.append(path.stat().st_size + path.with_name(path.name + "-wal").stat().st_size)
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM kv").fetchone()[0] == 0
        # The first round sets the high-water mark; later rounds reuse the freed pages.
        assert max(sizes[1:]) <= sizes[0] * 1.2, sizes
    finally:
        await store.aclose()


def test_round_trip_and_factory() -> None:
    assert StoredCutout.from_dict(cutout(3).to_dict()) == cutout(3)
    assert isinstance(create_store("memory://"), MemoryStore)
    with pytest.raises(ValueError, match="unsupported"):
        create_store("mongodb://x")


# --- credits: the ledger ---------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StateStore, StateStore]]:
    """Two handles on one state: two SQLite connections, two Redis clients (memory: one)."""
    if request.param == "memory":
        memory = MemoryStore()
        yield memory, memory
        return
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'state.sqlite3'}"
        first, second = create_store(url), create_store(url, exclusive=False)
    else:
        url = request.getfixturevalue("redis_url")
        first, second = create_store(url, prefix="test:"), create_store(url, prefix="test:")
    yield first, second
    await first.aclose()
    await second.aclose()


async def test_credit_applies_once_per_charge_id(store: StateStore) -> None:
    entry = await store.credit(7, 10, "charge-1", stars=25, note="pack 10")
    assert entry is not None
    assert (entry.user_id, entry.reason, entry.amount, entry.before, entry.after) == (
        7,
        PURCHASE,
        10,
        0,
        10,
    )
    assert (entry.charge_id, entry.stars, entry.note) == ("charge-1", 25, "pack 10")
    assert await store.credit(7, 10, "charge-1", stars=25) is None, "a redelivery adds nothing"
    assert await store.credit(8, 10, "charge-1", stars=25) is None, "whoever it names"
    assert await store.balance(7) == 10
    assert await store.balance(8) == 0
    payment = await store.payment("charge-1")
    assert payment is not None
    assert (payment.user_id, payment.credits, payment.stars, payment.refunded) == (7, 10, 25, None)
    assert await store.payment("nope") is None
    assert len(await store.ledger()) == 1


async def test_debit_never_goes_below_zero_and_give_back_returns(store: StateStore) -> None:
    assert await store.debit(7) is None, "no credits, nothing taken"
    await store.credit(7, 2, "c", stars=5)
    first = await store.debit(7, note="job a")
    assert first is not None
    assert (first.reason, first.amount, first.before, first.after, first.note) == (
        SPEND,
        -1,
        2,
        1,
        "job a",
    )
    assert await store.debit(7, amount=2) is None, "not enough for two"
    assert await store.debit(7) is not None
    assert await store.debit(7) is None
    assert await store.balance(7) == 0
    back = await store.give_back(7, note="job a")
    assert (back.reason, back.amount, back.before, back.after) == (GIVE_BACK, 1, 0, 1)
    assert await store.balance(7) == 1
    reasons = [(e.reason, e.amount, e.after) for e in await store.ledger(user_id=7)]
    assert reasons == [(PURCHASE, 2, 2), (SPEND, -1, 1), (SPEND, -1, 0), (GIVE_BACK, 1, 1)]
    assert await store.ledger(user_id=8) == []


async def test_refund_takes_a_payments_credits_back_once(store: StateStore) -> None:
    assert (await store.refund("missing")).status == "unknown"
    await store.credit(7, 10, "a", stars=25)
    await store.credit(7, 5, "b", stars=15)
    done = await store.refund("a")
    assert done.status == "refunded"
    assert done.entry is not None
    assert (done.entry.reason, done.entry.amount, done.entry.before, done.entry.after) == (
        REFUND,
        -10,
        15,
        5,
    )
    assert (done.entry.charge_id, done.entry.stars) == ("a", 25)
    assert done.payment is not None
    assert done.payment.refunded is not None
    assert done.balance == 5
    again = await store.refund("a")
    assert again.status == "already_refunded", "a second refund is refused and says why"
    assert again.entry is None
    assert await store.balance(7) == 5
    refunded = await store.payment("a")
    assert refunded is not None
    assert refunded.refunded is not None


async def test_refund_of_spent_credits_is_refused_unless_partial(store: StateStore) -> None:
    await store.credit(7, 3, "a", stars=10)
    await store.debit(7)
    refused = await store.refund("a")
    assert (refused.status, refused.balance) == ("spent", 2), "says the credits are spent"
    assert await store.balance(7) == 2
    payment = await store.payment("a")
    assert payment is not None
    assert payment.refunded is None, "still refundable later"
    # Telegram refunded it already (refunded_payment): take what is left.
    taken = await store.refund("a", TELEGRAM_REFUND, partial=True)
    assert taken.status == "refunded"
    assert taken.entry is not None
    assert (taken.entry.reason, taken.entry.amount, taken.entry.after) == (TELEGRAM_REFUND, -2, 0)
    assert (await store.refund("a", TELEGRAM_REFUND, partial=True)).status == "already_refunded"


async def test_ledger_ranges_and_totals(store: StateStore) -> None:
    start = time.time()
    await store.credit(1, 10, "a", stars=25)
    await store.credit(2, 50, "b", stars=100)
    await store.debit(1)
    await store.debit(1)
    await store.give_back(1)
    await store.refund("b")
    middle = time.time()
    await asyncio.sleep(0.01)
    await store.debit(1)
    entries = await store.ledger(since=start)
    assert [e.reason for e in entries] == [
        PURCHASE,
        PURCHASE,
        SPEND,
        SPEND,
        GIVE_BACK,
        REFUND,
        SPEND,
    ]
    assert all(start <= e.at for e in entries)
    assert len(await store.ledger(since=start, until=middle)) == 6
    assert len(await store.ledger(since=middle)) == 1
    totals = totals_of(await store.ledger(since=start, until=middle))
    assert (totals.purchases, totals.credits_sold, totals.stars_received) == (2, 60, 125)
    assert (totals.credits_spent, totals.credits_returned) == (2, 1)
    assert (totals.refunds, totals.credits_refunded, totals.stars_refunded) == (1, 50, 100)
    assert totals.buyers == {1, 2}
    assert totals.spenders == {1}


async def test_a_keyed_debit_takes_once_until_given_back(store: StateStore) -> None:
    await store.credit(7, 3, "c1", stars=5)
    first = await store.debit(7, key="41:tg:a")
    assert first is not None
    assert first.amount == -1
    assert first.after == 2
    # The same request resumed after a crash: nothing taken again, the balance as it is.
    again = await store.debit(7, key="41:tg:a")
    assert again is not None
    assert (again.amount, again.before, again.after) == (0, 2, 2)
    other = await store.debit(7, key="41:tg:b")  # another image of the same update
    assert other is not None
    assert other.after == 1
    assert await store.balance(7) == 1
    # Its job failed: the credit comes back once, and a rerun pays again.
    await store.give_back(7, key="41:tg:a")
    assert await store.balance(7) == 2
    rerun = await store.debit(7, key="41:tg:a")
    assert rerun is not None
    assert rerun.amount == -1
    assert await store.balance(7) == 1
    spends = [e for e in await store.ledger(user_id=7) if e.reason == SPEND]
    assert len(spends) == 3, "the repeat is no ledger entry"


async def test_a_keyed_debit_without_credits_leaves_no_mark(store: StateStore) -> None:
    assert await store.debit(7, key="42:tg:a") is None
    await store.credit(7, 1, "c1", stars=5)
    taken = await store.debit(7, key="42:tg:a")
    assert taken is not None
    assert taken.amount == -1
    assert await store.balance(7) == 0


async def test_one_of_two_concurrent_keyed_debits_takes_the_credit(store: StateStore) -> None:
    await store.credit(7, 5, "c1", stars=5)
    taken = await asyncio.gather(*(store.debit(7, key="43:tg:a") for _ in range(4)))
    assert sorted(e.amount for e in taken if e is not None) == [-1, 0, 0, 0]
    assert await store.balance(7) == 4


async def test_a_free_spend_is_remembered_beside_keyed_debits(store: StateStore) -> None:
    assert await store.spent_under("44:tg:a") is None
    await store.note_free_spend(7, "44:tg:a")
    assert await store.spent_under("44:tg:a") == "free"
    assert await store.spent_under("44:tg:b") is None  # another image of the same update
    # A debit under a key a free removal paid takes nothing either.
    await store.credit(7, 2, "c1", stars=5)
    again = await store.debit(7, key="44:tg:a")
    assert again is not None
    assert again.amount == 0
    assert await store.balance(7) == 2
    taken = await store.debit(7, key="44:tg:b")
    assert taken is not None
    assert taken.amount == -1
    assert await store.spent_under("44:tg:b") == "credit"
    # The credit's job failed: it comes back and its key is forgotten; the free one stays.
    await store.give_back(7, key="44:tg:b")
    assert await store.spent_under("44:tg:b") is None
    assert await store.spent_under("44:tg:a") == "free"
    assert await store.balance(7) == 2


async def test_forget_user_keeps_the_ledger(store: StateStore) -> None:
    await store.set_language(7, "de")
    await store.set_language(8, "fr")
    await store.push_recent(7, cutout(1))
    await store.push_recent(8, cutout(2))
    await store.put_studio("t7", json.dumps({"owner": 7, "chat": 7, "items": []}), ttl=60)
    await store.put_studio("t8", json.dumps({"owner": 8, "chat": -5, "items": []}), ttl=60)
    await store.credit(7, 10, "a", stars=25)
    await store.keep_request(7, "photo", ttl=60)
    await store.keep_request(8, "photo", ttl=60)
    await store.put_wait("-5:7", "wait", time.time() + 60)
    await store.put_wait("7:7", "wait", time.time() + 60)
    await store.put_wait("-5:8", "wait", time.time() + 60)
    await store.put_wait("-5:17", "wait", time.time() + 60)
    await store.forget_user(7)
    assert await store.get_wait("-5:7") is None
    assert await store.get_wait("7:7") is None
    assert await store.get_wait("-5:8") == "wait"
    assert await store.get_wait("-5:17") == "wait"
    assert await store.claim_request(7, "pay") is None
    assert await store.claim_request(8, "pay") == "photo"
    assert await store.get_language(7) is None
    assert await store.recent(7) == []
    assert await store.get_studio("t7") is None
    # Someone else's records stay, and so do the user's ledger and balance.
    assert await store.get_language(8) == "fr"
    assert await store.recent(8) == [cutout(2)]
    assert await store.get_studio("t8") is not None
    assert await store.balance(7) == 10
    assert [e.charge_id for e in await store.ledger(user_id=7)] == ["a"]
    assert (await store.refund("a")).status == "refunded", "refunds still work"


async def test_concurrent_debits_never_go_below_zero(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    first, second = two_stores
    await first.credit(7, 25, "c", stars=50)

    async def spend(store: StateStore) -> bool:
        return await store.debit(7) is not None

    # 80 debits over two connections/clients against 25 credits, all at once.
    results = await asyncio.gather(*(spend(first if n % 2 else second) for n in range(80)))
    assert sum(results) == 25
    assert await first.balance(7) == 0
    assert await second.balance(7) == 0
    entries = await second.ledger(user_id=7)
    spends = [e for e in entries if e.reason == SPEND]
    assert len(spends) == 25
    # Each entry's before/after chains: no two debits read the same balance.
    assert sorted(e.before for e in spends) == list(range(1, 26))
    assert all(e.after == e.before - 1 for e in spends)


async def test_concurrent_redeliveries_credit_once(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    first, second = two_stores

    async def deliver(store: StateStore, charge: str) -> bool:
        return await store.credit(7, 10, charge, stars=25) is not None

    results = await asyncio.gather(
        *(deliver(first if n % 2 else second, f"charge-{n % 3}") for n in range(60))
    )
    assert sum(results) == 3, "one success per charge id"
    assert await first.balance(7) == 30
    purchases = [e for e in await first.ledger(user_id=7) if e.reason == PURCHASE]
    assert sorted(e.charge_id or "" for e in purchases) == ["charge-0", "charge-1", "charge-2"]


async def test_concurrent_refund_and_debits_never_overdraw(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    first, second = two_stores
    await first.credit(7, 10, "c", stars=25)

    async def spend() -> bool:
        return await second.debit(7) is not None

    outcomes = await asyncio.gather(first.refund("c"), *(spend() for _ in range(5)))
    refund, spent = outcomes[0], sum(bool(r) for r in outcomes[1:])
    assert isinstance(refund, RefundOutcome)
    balance = await first.balance(7)
    assert balance >= 0
    if refund.status == "refunded":
        assert (spent, balance) == (0, 0), "refunded first: nothing left to spend"
    else:
        assert refund.status == "spent"
        assert balance == 10 - spent
