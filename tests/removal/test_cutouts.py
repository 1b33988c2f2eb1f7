"""CutoutService unit tests: cache hits, joins, errors shared with followers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpx
import pytest

from bot.removal.cutouts import CutoutService, Role
from bot.removal.freepik import FreepikClient, ImageRejected, RetryPolicy
from bot.removal.pipeline import Cutout, RemovalPipeline
from bot.removal.sources import ImageSource
from bot.requests.admission import RateLimited, Refusal
from bot.storage.base import StoredCutout
from bot.storage.memory import MemoryStore

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 10
SOURCE = ImageSource.link("https://img.test/a.jpg")


class Links:
    async def public_url(self, source: ImageSource) -> str:
        assert source.url is not None
        return source.url


def service(
    handler: httpx.MockTransport, store: MemoryStore | None = None, *, remote_poll: float = 0.2
) -> CutoutService:
    client = FreepikClient("k", "https://fp.test", transport=handler, retry=RetryPolicy(1))
    return CutoutService(
        RemovalPipeline(client, Links()),
        MemoryStore() if store is None else store,
        cache_ttl=60,
        remote_poll=remote_poll,
    )


def freepik(
    calls: list[int], *, statuses: Iterable[int] = (), status: int = 200, delay: float = 0.05
) -> httpx.MockTransport:
    """Freepik answering POSTs with `statuses` in turn, then `status`; `calls` records each."""
    answers = iter(statuses)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            answer = next(answers, status)
            calls.append(answer)
            await asyncio.sleep(delay)
            if answer != 200:
                return httpx.Response(answer, json={"message": "nope"})
            url = "https://fp.test/high.png"
            return httpx.Response(
                200, json={"original": url, "high_resolution": url, "preview": url, "url": url}
            )
        return httpx.Response(200, content=PNG)

    return httpx.MockTransport(handler)


async def test_leader_then_cache_hit() -> None:
    calls: list[int] = []
    cutouts = service(freepik(calls))

    async def deliver(cutout: Cutout) -> str:
        assert cutout.data == PNG
        return "file-1"

    ticket = await cutouts.start(SOURCE, deliver)
    assert ticket.role is Role.LEADER
    produced = await ticket.result()
    assert produced.file_id == "file-1"
    again = await cutouts.start(SOURCE, deliver)
    assert again.role is Role.CACHED
    assert again.stored is not None
    assert again.stored.file_id == "file-1"
    assert calls == [200]


async def test_followers_join_and_admit_is_not_asked() -> None:
    calls: list[int] = []
    cutouts = service(freepik(calls))
    asked: list[int] = []

    async def admit() -> RateLimited | None:
        asked.append(1)
        return None

    async def deliver(cutout: Cutout) -> None:
        return None

    leader = await cutouts.start(SOURCE, deliver, admit=admit)
    follower = await cutouts.start(SOURCE, deliver, admit=admit)
    assert (leader.role, follower.role) == (Role.LEADER, Role.FOLLOWER)
    _first, second = await asyncio.gather(leader.result(), follower.result())
    assert second.cutout is not None
    assert second.cutout.data == PNG
    assert second.file_id is None  # nothing uploaded: the follower uploads the bytes
    assert calls == [200]
    assert asked == [1]


async def test_errors_reach_followers_and_are_not_cached() -> None:
    calls: list[int] = []
    cutouts = service(freepik(calls, status=400))

    async def deliver(cutout: Cutout) -> str:
        return "never"

    leader = await cutouts.start(SOURCE, deliver)
    follower = await cutouts.start(SOURCE, deliver)
    for ticket in (leader, follower):
        with pytest.raises(ImageRejected):
            await ticket.result()
    assert (await cutouts.start(SOURCE, deliver)).role is Role.LEADER


async def test_refused_admission_raises() -> None:
    cutouts = service(freepik([]))

    async def admit() -> RateLimited | None:
        import limits

        return RateLimited(Refusal(12.0, limits.parse("1/minute")))

    async def deliver(cutout: Cutout) -> None:
        return None

    with pytest.raises(RateLimited) as caught:
        await cutouts.start(SOURCE, deliver, admit=admit)
    assert caught.value.refusal.retry_after == 12.0


async def test_leader_delivery_failure_still_hands_bytes_to_followers() -> None:
    cutouts = service(freepik([]))

    async def failing(cutout: Cutout) -> str:
        raise RuntimeError("user blocked the bot")

    leader = await cutouts.start(SOURCE, failing)
    follower = await cutouts.start(SOURCE, failing)
    with pytest.raises(RuntimeError):
        await leader.result()
    produced = await follower.result()
    assert produced.cutout is not None
    assert produced.file_id is None


async def test_a_replica_takes_over_when_the_other_gives_up() -> None:
    """Two services sharing one store stand for two replicas sharing Redis."""
    store = MemoryStore()
    posts: list[int] = []
    transport = freepik(posts, statuses=[400, 200], delay=0.1)

    def replica() -> CutoutService:
        return service(transport, store, remote_poll=0.02)

    first, second = replica(), replica()

    async def deliver(cutout: Cutout) -> str:
        return "file-from-second"

    leader = await first.start(SOURCE, deliver)
    waiting = await second.start(SOURCE, deliver)
    assert (leader.role, waiting.role) == (Role.LEADER, Role.FOLLOWER)
    with pytest.raises(ImageRejected):
        await leader.result()
    produced = await asyncio.wait_for(waiting.result(), 5)
    assert produced.file_id == "file-from-second"
    assert posts == [400, 200]


class _OtherReplicaFinishesDuringOurRead(MemoryStore):
    """A store shared with another replica whose job caches its cutout and lets go of its
    claim just after our cache read (and, with `held`, just after our first failed claim)."""

    def __init__(self, *, held: bool) -> None:
        super().__init__()
        self.reads = 0
        self.claims = 0
        self._held = held

    async def get_cutout(self, key: str) -> StoredCutout | None:
        self.reads += 1
        found = await super().get_cutout(key)
        if self.reads == (2 if self._held else 1):
            await self.put_cutout(key, StoredCutout("other-file", "a.png", 0.0), 60)
        return found

    async def claim(self, key: str, ttl: float) -> bool:
        self.claims += 1
        if self._held and self.claims == 1:
            return False  # the other replica still holds it
        return await super().claim(key, ttl)


@pytest.mark.parametrize("held", [False, True], ids=["free-claim", "remote-claim"])
async def test_a_cutout_cached_elsewhere_between_read_and_claim_is_not_made_again(
    held: bool,
) -> None:
    calls: list[int] = []
    store = _OtherReplicaFinishesDuringOurRead(held=held)
    cutouts = service(freepik(calls), store, remote_poll=0.01)

    async def deliver(cutout: Cutout) -> str:
        return "our-file"

    ticket = await cutouts.start(SOURCE, deliver)
    produced = await ticket.result()
    assert produced.file_id == "other-file"
    assert calls == []
    assert await store.claim(SOURCE.key, 1)  # our claim was let go
