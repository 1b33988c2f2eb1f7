"""Handler slots in turns between users (bot.transport.turns): one user's backlog waits alone."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Hashable

import pytest
from telegram import Update

from bot.transport.turns import FairSlots, FairUpdateProcessor, turn_of
from tests.fakes.updates import (
    inline_query,
    photo_message,
    private_chat,
    private_user,
    text_message,
    update,
)

USER = private_user(4401)
PRESS = {
    "id": "77",
    "from": USER,
    "message": text_message(USER, "x", chat=private_chat(USER)),
    "chat_instance": "1",
    "data": "d",
}


async def let_tasks_run() -> None:
    """Let the ready tasks run to their next wait (a few loop turns, no wall-clock time)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_free_slot_goes_to_the_next_key_not_to_the_longest_queue() -> None:
    slots = FairSlots(2)
    started: list[str] = []
    release: dict[str, asyncio.Event] = {}

    async def job(key: str, name: str) -> None:
        await slots.acquire(key)
        started.append(name)
        release[name] = asyncio.Event()
        await release[name].wait()
        slots.release(key)

    tasks = [asyncio.create_task(job("flood", f"f{n}")) for n in range(6)]
    await let_tasks_run()
    tasks.append(asyncio.create_task(job("other", "o1")))
    await let_tasks_run()
    assert started == ["f0", "f1"]
    assert slots.waiting == 5
    release["f0"].set()
    await let_tasks_run()
    assert started == ["f0", "f1", "o1"]  # not f2, although it queued first
    for name in ["f1", "o1", "f2", "f3", "f4", "f5"]:
        await let_tasks_run()
        release[name].set()
    await asyncio.gather(*tasks)
    assert started[3:] == ["f2", "f3", "f4", "f5"]  # one key's own order is kept
    assert slots.busy == 0


async def test_a_key_holds_at_most_its_share_and_uncapped_acquirers_pass() -> None:
    slots = FairSlots(10, per_key=2)
    await slots.acquire("a")
    await slots.acquire("a")
    third = asyncio.create_task(slots.acquire("a"))
    await let_tasks_run()
    assert not third.done()
    assert slots.busy == 2
    await slots.acquire("b")  # others are not held up by a's wait
    # An album item or a press: outside the share, and not behind a's capped backlog.
    await asyncio.wait_for(slots.acquire("a", capped=False), 1)
    assert slots.held_by("a") == 3
    slots.release("a", capped=False)
    await let_tasks_run()
    assert not third.done()
    slots.release("a")
    await asyncio.wait_for(third, 1)
    assert slots.held_by("a") == 2


async def test_uncapped_acquirers_still_wait_for_a_free_slot_in_turn() -> None:
    slots = FairSlots(2, per_key=1)
    await slots.acquire("a")
    await slots.acquire("a", capped=False)
    pressed = asyncio.create_task(slots.acquire("a", capped=False))
    other = asyncio.create_task(slots.acquire("b"))
    await let_tasks_run()
    assert not pressed.done()
    slots.release("a", capped=False)
    await let_tasks_run()
    assert other.done()  # b holds nothing, a still one: b goes first though it came later
    assert not pressed.done()
    slots.release("b")
    await asyncio.wait_for(pressed, 1)


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    slots = FairSlots(1)
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    await let_tasks_run()
    waiter.cancel()
    await let_tasks_run()
    slots.release("a")
    assert slots.busy == 0
    assert slots.waiting == 0
    await asyncio.wait_for(slots.acquire("c"), 1)


async def test_a_waiter_cancelled_as_it_was_granted_gives_the_slot_back() -> None:
    slots = FairSlots(1)
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    await let_tasks_run()
    slots.release("a")  # granted: its future is done, the task not yet resumed
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.busy == 0


def parsed(body: dict[str, object]) -> Update:
    update_obj = Update.de_json({"update_id": 1, **body}, None)
    assert update_obj is not None
    return update_obj


@pytest.mark.parametrize(
    ("body", "capped"),
    [
        (update(message=text_message(USER, "hi")), True),
        (update(message=photo_message(USER, "f", "u")), True),
        (update(message=photo_message(USER, "f", "u", media_group_id="g1")), False),
        (inline_query(USER, "x"), False),
        (update(callback_query=PRESS), False),
    ],
)
def test_only_messages_outside_albums_count_against_the_share(
    body: dict[str, object], capped: bool
) -> None:
    key, counted = turn_of(parsed(body))
    assert key == ("user", USER["id"])
    assert counted is capped


async def test_the_processor_runs_updates_in_turns_and_closes_what_never_ran() -> None:
    processor = FairUpdateProcessor(1)
    ran: list[Hashable] = []
    gate = asyncio.Event()

    async def handle(name: str) -> None:
        ran.append(name)
        await gate.wait()

    first = asyncio.create_task(processor.process_update("x", handle("first")))
    await let_tasks_run()
    never = handle("never")
    assert inspect.iscoroutine(never)
    waiting = asyncio.create_task(processor.process_update("y", never))
    await let_tasks_run()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert inspect.getcoroutinestate(never) == inspect.CORO_CLOSED  # no "never awaited"
    gate.set()
    await first
    assert ran == ["first"]
    assert processor.slots.busy == 0
