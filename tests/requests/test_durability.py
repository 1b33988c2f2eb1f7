"""Nothing lost: the default SQLite storage across restarts, kill -9 and redelivered updates.

Real `python -m bot` processes against the fakes, a real SQLite file in a DATA_DIR that two
processes use one after the other, real SIGTERM and SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from telegram import Update

from bot.i18n import messages
from bot.storage.base import GIVE_BACK, PURCHASE, SPEND
from bot.storage.sqlite_store import SqliteStore
from tests.conftest import StartBot, bot_env, scratch_data_dir
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import inline_query, photo_message, private_user, text_message, update
from tests.support import (
    USER,
    offers,
    pay_from_offer,
    photo,
    post_update,
    send,
    spawn_bot_process,
    visible_messages,
)


class BotProcess:
    """One `python -m bot` process on a given DATA_DIR."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `sig` and wait for the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout)

    def text(self) -> str:
        """Everything the process logged."""
        return self.log.read_text(errors="replace")


async def start(
    telegram: FakeTelegram, freepik: FakeFreepik, data_dir: Path, **env: str
) -> BotProcess:
    """Start the bot on `data_dir` (default storage: SQLite there) and wait until it polls."""
    polls = len(telegram.calls_of("getUpdates"))
    log = data_dir.parent / f"{data_dir.name}-{polls}.log"
    handle = log.open("wb")
    process = await spawn_bot_process(
        env=bot_env(telegram, freepik, DATA_DIR=str(data_dir), **env),
        cwd=data_dir.parent,
        stdout=handle,
        stderr=handle,
    )
    handle.close()
    bot = BotProcess(process, log)
    try:
        await telegram.wait_for_call("getUpdates", count=polls + 1, timeout=20)
    except AssertionError:
        await bot.stop(signal.SIGKILL)
        raise AssertionError(bot.text()) from None
    return bot


def push_photo(telegram: FakeTelegram, user_id: int, file: tuple[str, str] | None = None) -> int:
    file_id, unique_id = file or telegram.add_file(make_image("JPEG", color=(user_id % 250, 9, 9)))
    message = photo_message(private_user(user_id), file_id, unique_id)
    telegram.push_update(update(message=message))
    return int(message["message_id"])


async def documents(telegram: FakeTelegram, chat_id: int, count: int = 1) -> None:
    await telegram.wait_for(lambda t: len(t.sent_documents(chat_id)) >= count, timeout=30)


async def test_a_restart_keeps_the_cache_the_limits_and_recent_cutouts(
    telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    data = scratch_data_dir()
    first = await start(telegram, freepik, data, RATE_LIMIT="1/hour")
    photo = telegram.add_file(make_image("JPEG", color=(40, 50, 60)))
    push_photo(telegram, 701, photo)
    await documents(telegram, 701)
    assert await first.stop() == 0
    assert len(freepik.calls) == 1

    second = await start(telegram, freepik, data, RATE_LIMIT="1/hour")
    # The same photo from someone else: a cache hit, Telegram's copy re-sent, no Freepik call.
    push_photo(telegram, 702, photo)
    await documents(telegram, 702)
    # User 701 had their one image this hour before the restart: still over the limit.
    push_photo(telegram, 701)
    await telegram.wait_for(lambda t: any("limit" in text for text in t.texts_to(701)), timeout=15)
    # Inline mode with an empty query lists the cutout 701 received before the restart.
    telegram.push_update(inline_query(private_user(701), ""))
    [answer] = await telegram.wait_for_call("answerInlineQuery", timeout=15)
    results = answer.params["results"]
    assert results, answer.params
    assert (
        results[0]["document_file_id"]
        == telegram.sent_documents(701)[0].result["document"]["file_id"]
    )
    assert len(freepik.calls) == 1, "no Freepik call after the restart"
    assert len(telegram.sent_documents(701)) == 1
    assert await second.stop() == 0


async def test_sigkill_after_freepik_answered_resumes_and_delivers(
    telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    data = scratch_data_dir()
    first = await start(telegram, freepik, data)
    # The upload never completes: the process dies with the cutout in hand.
    telegram.latency["sendDocument"] = 3600
    push_photo(telegram, 801)
    await telegram.wait_for_call("sendDocument", timeout=15)
    assert len(freepik.calls) == 1
    await first.stop(signal.SIGKILL)
    assert not telegram.sent_documents(801)

    telegram.latency["sendDocument"] = 0
    second = await start(telegram, freepik, data)
    await documents(telegram, 801)
    await asyncio.sleep(0.5)
    assert len(telegram.sent_documents(801)) == 1
    # The documented cost: the cutout was made again.
    assert len(freepik.calls) == 2
    # The dead process's status message is cleaned up: one message in the chat.
    shown = visible_messages(telegram, 801)
    assert [v.method for v in shown] == ["sendDocument"], shown
    assert await second.stop() == 0
    await assert_no_records(data)


async def test_sigkill_with_20_jobs_waiting_on_freepik_every_user_gets_one_document(
    telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    data = scratch_data_dir()
    users = list(range(901, 921))
    first = await start(telegram, freepik, data, MAX_CONCURRENT_JOBS="20")
    freepik.latency = 3600  # the dead process's calls never return
    for user in users:
        push_photo(telegram, user)
    # The fake records a call once it answers: wait for every job to have asked Telegram for
    # its file link (the step before the Freepik call), then a moment for the calls to go out.
    await telegram.wait_for_call("getFile", count=20, timeout=20)
    await asyncio.sleep(1.0)
    await first.stop(signal.SIGKILL)
    assert not freepik.calls

    freepik.latency = 0.2
    second = await start(telegram, freepik, data, MAX_CONCURRENT_JOBS="20")
    for user in users:
        await documents(telegram, user)
    await asyncio.sleep(1.0)  # time for a duplicate to show up
    assert {user: len(telegram.sent_documents(user)) for user in users} == dict.fromkeys(users, 1)
    assert await second.stop() == 0
    assert "Resumed 20 unfinished request(s)" in second.text()
    await assert_no_records(data)


async def test_shutdown_past_the_grace_leaves_the_request_for_the_next_start(
    telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    data = scratch_data_dir()
    first = await start(telegram, freepik, data, SHUTDOWN_GRACE="0.5")
    freepik.latency = 3600
    push_photo(telegram, 1001)
    await telegram.wait_for_call("getFile", timeout=15)
    await asyncio.sleep(0.3)
    assert await first.stop(signal.SIGINT) == 0
    assert "left for the next start" in first.text()
    # No "please resend": the request is still on record.
    assert messages.aborted() not in telegram.texts_to(1001)

    freepik.latency = 0.1
    second = await start(telegram, freepik, data)
    await documents(telegram, 1001)
    assert messages.aborted() not in telegram.texts_to(1001)
    assert await second.stop() == 0


async def test_a_request_that_keeps_failing_is_given_up_with_an_explanation(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    # Two records a dead process left: one tried twice, one tried three times already.
    store = SqliteStore(tmp_path / "nobg.sqlite3")
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    for update_id, user_id, attempts in ((5001, 1101, 2), (5002, 1102, 3)):
        message = photo_message(private_user(user_id), file_id, unique_id)
        payload = json.dumps(update(message=message, update_id=update_id))
        assert await store.accept_update(update_id, payload, ttl=3600)
        for _ in range(attempts):
            await store.count_attempt(update_id)
    await store.aclose()

    await start_bot(data_dir=tmp_path, request_attempts=3)
    await documents(telegram, 1101)
    await telegram.wait_for(lambda t: messages.gave_up() in t.texts_to(1102), timeout=10)
    assert not telegram.sent_documents(1102)
    assert len(freepik.calls) == 1
    await assert_no_records(tmp_path)


async def test_the_same_update_posted_twice_is_one_job(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    # Telegram posts a webhook update again when it did not get our 200 (a lost answer).
    freepik.latency = 0.3
    bot = await start_bot(mode="webhook")
    assert bot.http_url is not None
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    same = update(message=photo_message(private_user(1201), file_id, unique_id), update_id=777)
    assert (await post_update(bot.http_url, same)).status_code == 200
    await freepik.wait_for_calls(1)
    # While the first is in progress, and after it was answered: taken (200), not redone.
    assert (await post_update(bot.http_url, same)).status_code == 200
    await documents(telegram, 1201)
    assert (await post_update(bot.http_url, same)).status_code == 200
    await asyncio.sleep(1.0)
    assert len(telegram.sent_documents(1201)) == 1
    assert len(freepik.calls) == 1
    assert telegram.texts_to(1201).count(messages.working()) == 1


async def assert_no_records(data_dir: Path, timeout: float = 5.0) -> None:
    """Every request the database recorded was answered (records close just after)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with sqlite3.connect(data_dir / "nobg.sqlite3") as conn:
            left = conn.execute("SELECT update_id FROM inbox WHERE payload IS NOT NULL")
            pending = left.fetchall()
        if not pending or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert pending == []


async def test_an_unwritable_data_dir_stops_the_start_with_one_clear_line(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where DATA_DIR should be")
    process = await spawn_bot_process(
        env=bot_env(telegram, freepik, DATA_DIR=str(blocker / "data")),
        cwd=tmp_path,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    text = stderr.decode()
    assert f"data directory {blocker / 'data'} is not writable" in text
    assert "Traceback" not in text


async def test_polled_updates_are_on_record_before_the_next_poll_confirms_them(
    tmp_path: Path,
) -> None:
    # python-telegram-bot puts a polled batch into the update queue, then confirms it with
    # its next getUpdates: the queue itself records each update on the way in.
    from telegram import Bot

    from bot.requests.journal import RecordingQueue, RequestJournal

    store = SqliteStore(tmp_path / "nobg.sqlite3")
    bot = Bot("123:abcdefghijklmnopqrstuvwxyz")
    queue = RecordingQueue()
    queue.journal = RequestJournal(store, bot)
    first = update(message=photo_message(private_user(1), "f", "u"), update_id=41)
    try:
        await queue.put(Update.de_json(first, bot))
        assert [p.update_id for p in await store.pending_updates()] == [41]
        await queue.put(Update.de_json(first, bot))  # the same update polled again
        assert queue.qsize() == 1
        await queue.put("not an update")  # PTB's own stop signal passes through
        assert queue.qsize() == 2
    finally:
        await store.aclose()


async def test_the_running_bot_records_a_polled_update_before_confirming_it(
    start_bot: StartBot, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_bot()
    store = bot.services.store
    accept = store.accept_update
    confirmed_before_recorded: list[bool] = []

    def confirmed(update_id: int) -> bool:
        offsets = [int(c.params.get("offset") or 0) for c in telegram.calls_of("getUpdates")]
        return any(offset > update_id for offset in offsets)

    async def slow_accept(update_id: int, payload: str, ttl: float) -> bool:
        await asyncio.sleep(0.3)  # a slow disk: the next poll must still wait for the record
        done = await accept(update_id, payload, ttl)
        confirmed_before_recorded.append(confirmed(update_id))
        return done

    monkeypatch.setattr(store, "accept_update", slow_accept)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(
        update(message=photo_message(private_user(331), file_id, unique_id), update_id=9001)
    )
    await telegram.wait_for(lambda t: bool(t.sent_documents(331)), timeout=15)
    assert confirmed_before_recorded == [False]
    assert confirmed(9001)


async def test_a_polled_batch_is_recorded_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A flood of 900 messages arrives as 9 getUpdates answers: one storage write each, not 900
    # writes in a row that everyone else's update waits behind.
    from telegram import Bot

    from bot.requests.journal import ArrivedUpdates, RecordingQueue, RequestJournal

    store = SqliteStore(tmp_path / "nobg.sqlite3")
    bot = Bot("123:abcdefghijklmnopqrstuvwxyz")
    arrived = ArrivedUpdates()
    queue = RecordingQueue()
    queue.journal = RequestJournal(store, bot, arrived=arrived)
    writes: list[list[int]] = []
    accept_updates = store.accept_updates

    async def spy(records: Sequence[tuple[int, str]], ttl: float) -> list[bool]:
        writes.append([update_id for update_id, _ in records])
        return await accept_updates(records, ttl)

    monkeypatch.setattr(store, "accept_updates", spy)
    user = private_user(2)
    bodies = [update(message=text_message(user, f"t{n}"), update_id=60 + n) for n in range(5)]
    bodies.insert(2, {"update_id": 62, **inline_query(user, "x")})  # not a request: no record
    for n, body in enumerate(bodies[3:], start=63):
        body["update_id"] = n
    try:
        for body in bodies:  # as polling does: keep the answer's JSON, then put one by one
            arrived.keep(body)
        for body in bodies:
            await queue.put(Update.de_json(body, bot))
        assert writes == [[60, 61, 63, 64, 65]]
        assert [p.update_id for p in await store.pending_updates()] == [60, 61, 63, 64, 65]
        assert queue.qsize() == 6
        for body in bodies:  # the same answer polled again (not confirmed before a crash)
            arrived.keep(body)
        for body in bodies:
            await queue.put(Update.de_json(body, bot))
        assert len(writes) == 2
        assert queue.qsize() == 7  # only the inline query again: the requests are repeats
        assert not arrived._recorded  # none left over for a later batch
    finally:
        await store.aclose()


async def test_updates_still_waiting_for_a_handler_at_shutdown_stay_for_the_next_start(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    # One user's 12 texts, 4 handlers at a time (the user's share), each reply taking 3 s: at
    # shutdown 4 are running and 8 have not started. The 8 must not run during the shutdown
    # (they would take 6 s past the grace); their records stay, like the 4 stopped ones'.
    data = scratch_data_dir()
    bot = await start_bot(hint_rate_limit="", grace=0.3, data_dir=data)
    telegram.latency["sendMessage"] = 3.0
    user = private_user(1207)
    for number in range(12):
        telegram.push_update(update(message=text_message(user, f"hi {number}")))
    await telegram.wait_for(lambda t: len(t.calls_of("sendMessage")) >= 4, timeout=10)
    await asyncio.sleep(0.2)
    assert len(telegram.calls_of("sendMessage")) == 4
    stopping = asyncio.get_running_loop().time()
    await bot.shutdown()
    assert asyncio.get_running_loop().time() - stopping < 3.0
    store = SqliteStore(data / "nobg.sqlite3")
    try:
        assert len(await store.pending_updates()) == 12
    finally:
        await store.aclose()


async def test_sigkill_during_a_free_removal_uses_one_free_removal(
    telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    # Two free removals a day; the process dies during the first one's Freepik call. The
    # replay must not use the second: the user still has it, and a third photo is an offer.
    data = scratch_data_dir()
    free = {"CREDIT_PACKS": "10:25", "FREE_REMOVALS": "2/day"}
    first = await start(telegram, freepik, data, **free)
    freepik.hang_next()
    push_photo(telegram, USER, telegram.add_file(make_image("JPEG", color=(11, 12, 13))))
    await freepik.wait_for_calls(1, timeout=15)
    await first.stop(signal.SIGKILL)
    assert not telegram.sent_documents(USER)

    second = await start(telegram, freepik, data, **free)
    await documents(telegram, USER, 1)
    push_photo(telegram, USER, telegram.add_file(make_image("JPEG", color=(21, 22, 23))))
    await documents(telegram, USER, 2)
    push_photo(telegram, USER, telegram.add_file(make_image("JPEG", color=(31, 32, 33))))
    await offers(telegram, 1)
    assert len(freepik.calls) == 3  # the dead run's, its replay's and the second photo's
    assert len(telegram.sent_documents(USER)) == 2
    assert await second.stop() == 0
    await assert_no_records(data)
    store = SqliteStore(data / "nobg.sqlite3")
    try:
        assert await store.ledger(user_id=USER) == [], "no credit was needed"
    finally:
        await store.aclose()


async def test_sigkill_while_the_kept_photo_runs_after_the_payment_delivers_it_after_restart(
    telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    # The photo that ran out of credits is run by the payment's update; the process dies
    # during its Freepik call. The replayed payment must still find the photo and make it.
    data = scratch_data_dir()
    paid = {"CREDIT_PACKS": "10:25", "FREE_REMOVALS": "1/day"}
    first = await start(telegram, freepik, data, **paid)
    send(telegram, photo(telegram))
    await documents(telegram, USER, 1)  # the day's free removal
    kept = send(telegram, photo(telegram))
    [offer] = await offers(telegram, 1)
    freepik.hang_next()
    await pay_from_offer(telegram, offer)
    await freepik.wait_for_calls(2, timeout=15)  # the kept photo's call, never answered
    await first.stop(signal.SIGKILL)
    assert len(telegram.sent_documents(USER)) == 1

    second = await start(telegram, freepik, data, **paid)
    await documents(telegram, USER, 2)
    await asyncio.sleep(1.0)  # time for a duplicate to show up
    made = telegram.sent_documents(USER)
    assert len(made) == 2
    assert made[-1].params["reply_parameters"]["message_id"] == kept
    # One confirmation of the payment: the dead run's (the balance before the photo), not
    # repeated by the replay.
    texts = [v.text for v in visible_messages(telegram, USER)]
    confirmations = {messages.payment_received(10, b, kept=True): b for b in (9, 10)}
    assert [t for t in texts if t in confirmations] == [
        messages.payment_received(10, 10, kept=True)
    ], texts
    assert await second.stop() == 0
    await assert_no_records(data)

    store = SqliteStore(data / "nobg.sqlite3")
    try:
        ledger = await store.ledger(user_id=USER)
        assert [e.reason for e in ledger].count(PURCHASE) == 1, ledger
        # The dead run took a credit for the photo; the resumed one does not take another.
        spent = sum(-e.amount for e in ledger if e.reason == SPEND)
        returned = sum(e.amount for e in ledger if e.reason == GIVE_BACK)
        assert spent - returned == 1, ledger
        assert await store.balance(USER) == 9
        assert await store.claim_request(USER, "another payment") is None  # no longer kept
    finally:
        await store.aclose()
