"""The press lifecycle's steps with a surface that records its calls (no Telegram, no pool).

End to end, every press is tested against the fake Bot API in tests/transport/test_studio.py;
here: the order of the steps, the admission hook, and one count per press.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bot.i18n import messages
from bot.imaging.pool import CpuPool
from bot.ops.metrics import Metrics
from bot.requests.presses import Presses, PressSurface
from bot.storage.memory import MemoryStore
from bot.studio.actions import Action, Delivery, Keyboard, StudioAction
from bot.studio.callback import callback_data, new_token
from bot.studio.making import Declined, Made, Maker
from bot.studio.records import Item, Record, Records
from bot.studio.work import Sent, Workshop
from tests.fakes.images import make_image

OWNER = 42


class Recorded(PressSurface):
    """A press whose replies are written down; its cutouts cannot be downloaded."""

    def __init__(self, data: str, user_id: int = OWNER) -> None:
        self.user_id = user_id
        self.data = data
        self.calls: list[tuple[str, object]] = []

    def stand_in(self) -> Record | None:
        return None

    def place(self, record: Record) -> None:
        self.chat_id = record.chat

    async def answer(self, text: str | None) -> None:
        if not any(name == "answer" for name, _ in self.calls):
            self.calls.append(("answer", text))

    async def switch(self, keyboard: Keyboard, token: str) -> None:
        self.calls.append(("switch", keyboard))

    async def explain(self, text: Callable[[], str]) -> None:
        self.calls.append(("explain", text()))

    async def ask(self, record: Record) -> None:
        self.calls.append(("ask", record.owner))

    async def download(self, item: Item) -> bytes:
        raise Declined("gone", messages.studio_gone)

    async def send(self, delivery: Delivery, made: Sequence[Made], sent: Sent) -> None:
        self.calls.append(("send", delivery))

    async def add_to_pack(self, owner: int, made: Made) -> bool:
        self.calls.append(("add_to_pack", owner))
        return False

    async def packed(self, owner: int, added: int, created: bool) -> None:
        self.calls.append(("packed", added))


class SlowToAnswer(Recorded):
    """A press whose answer is still on its way when the cutout is downloaded."""

    def __init__(self, data: str, cutout: bytes | None = None) -> None:
        super().__init__(data)
        self.cutout = cutout
        self.downloading = asyncio.Event()

    async def answer(self, text: str | None) -> None:
        self.calls.append(("answering", text))
        await self.downloading.wait()
        await asyncio.sleep(0.05)  # a round trip to Telegram
        self.calls.append(("answered", text))

    async def download(self, item: Item) -> bytes:
        self.calls.append(("download", item.file_id))
        self.downloading.set()
        if self.cutout is None:
            raise Declined("gone", messages.studio_gone)
        return self.cutout


class Rationed(Presses):
    """Presses with an admission that says no to every job."""

    async def admit(
        self, surface: PressSurface, action: StudioAction, record: Record
    ) -> Declined | None:
        return Declined("rate_limited", messages.studio_busy)


async def presses(kind: type[Presses] = Presses) -> tuple[Presses, str, Metrics]:
    """A press lifecycle on a memory store holding one keyboard of one cutout; its token."""
    store = MemoryStore()
    records = Records(store, cache_ttl=60)
    token = new_token()
    item = Item("file-1", "unique-1", "a-nobg.png", 10)
    await store.put_studio(token, Record(OWNER, 100, (item,)).dumps(), 60)
    metrics = Metrics()
    maker = Maker(store, CpuPool(workers=1), cache_ttl=60)
    return kind(records, Workshop(maker), metrics=metrics), token, metrics


def counted(metrics: Metrics, action: str, outcome: str) -> bool:
    line = f'nobg_studio_presses_total{{action="{action}",outcome="{outcome}"}} 1.0'
    return line in metrics.render().decode()


async def test_a_job_is_answered_at_once_then_explained() -> None:
    lifecycle, token, metrics = await presses()
    surface = Recorded(callback_data(Action.CROP, token))
    assert await lifecycle.run(surface) == "gone"
    assert surface.calls == [
        ("answer", messages.studio_working()),
        ("explain", messages.studio_gone()),
    ]
    assert counted(metrics, "crop", "gone")


async def test_admission_refuses_a_job_before_the_status() -> None:
    lifecycle, token, metrics = await presses(Rationed)
    surface = Recorded(callback_data(Action.STICKER, token))
    assert await lifecycle.run(surface) == "rate_limited"
    # The refusal is the toast itself: no "working", no job.
    assert surface.calls == [("explain", messages.studio_busy())]
    assert counted(metrics, "sticker", "rate_limited")


async def test_keyboards_are_never_rationed() -> None:
    lifecycle, token, metrics = await presses(Rationed)
    surface = Recorded(callback_data(Action.PALETTE, token))
    assert await lifecycle.run(surface) == "keyboard"
    assert surface.calls == [("answer", None), ("switch", Keyboard.PALETTE)]
    assert counted(metrics, "background", "keyboard")


async def test_a_stranger_is_told_and_nothing_runs() -> None:
    lifecycle, token, metrics = await presses()
    surface = Recorded(callback_data(Action.PACK, token), user_id=OWNER + 1)
    assert await lifecycle.run(surface) == "not_owner"
    assert surface.calls == [("answer", messages.studio_not_yours())]
    assert counted(metrics, "pack", "not_owner")


async def test_an_unknown_token_has_expired() -> None:
    lifecycle, _token, metrics = await presses()
    surface = Recorded(callback_data(Action.CROP, new_token()))
    assert await lifecycle.run(surface) == "expired"
    assert surface.calls == [("answer", messages.studio_expired())]
    assert counted(metrics, "crop", "expired")


async def test_my_background_asks_and_is_never_rationed() -> None:
    lifecycle, token, metrics = await presses(Rationed)
    surface = Recorded(callback_data(Action.MY_BACKGROUND, token))
    assert await lifecycle.run(surface) == "asked"
    # The question is the one reply; the photo that answers it is a request of its own.
    assert surface.calls == [("answer", None), ("ask", OWNER)]
    assert counted(metrics, "my_background", "asked")


async def test_the_job_starts_while_the_press_is_answered_and_replies_after() -> None:
    lifecycle, token, _metrics = await presses()
    surface = SlowToAnswer(callback_data(Action.CROP, token), cutout=make_image("PNG"))
    assert await lifecycle.run(surface) == "ok"
    # The download did not wait for the answer; the result did.
    assert surface.calls == [
        ("answering", messages.studio_working()),
        ("download", "file-1"),
        ("answered", messages.studio_working()),
        ("send", Delivery.DOCUMENT),
    ]


async def test_an_explanation_waits_for_the_answer() -> None:
    lifecycle, token, _metrics = await presses()
    surface = SlowToAnswer(callback_data(Action.STICKER, token))
    assert await lifecycle.run(surface) == "gone"
    assert surface.calls == [
        ("answering", messages.studio_working()),
        ("download", "file-1"),
        ("answered", messages.studio_working()),
        ("explain", messages.studio_gone()),
    ]
