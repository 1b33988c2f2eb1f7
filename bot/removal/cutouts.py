"""Never pay twice: a result cache and request coalescing in front of the pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.removal.pipeline import Cutout, Job, JobAborted, JobTimings, RemovalPipeline
from bot.removal.sources import ImageSource
from bot.storage.base import StateStore, StorageUnavailable, StoredCutout

logger = logging.getLogger(__name__)

Deliver = Callable[[Cutout], Awaitable[str | None]]
# Asked before a new Freepik job: None to go ahead, or the exception to raise instead.
Admit = Callable[[], Awaitable[Exception | None]]


class Role(StrEnum):
    """How a request got its cutout."""

    CACHED = "cached"  # re-sent from the cache: no Freepik call, no download, no upload
    LEADER = "leader"  # ran the Freepik job itself
    FOLLOWER = "follower"  # joined a job already in flight


@dataclass(frozen=True, slots=True)
class Produced:
    """The outcome of a job as seen by everyone waiting for it."""

    cutout: Cutout | None  # the PNG bytes, when this process made them
    file_id: str | None  # Telegram's id of the uploaded PNG, when the leader uploaded it
    file_name: str


class Ticket:
    """A request's handle on its cutout: cached, its own job, or someone else's."""

    def __init__(
        self,
        role: Role,
        result: Callable[[], Awaitable[Produced]],
        *,
        position: int = 0,
        stored: StoredCutout | None = None,
        task: asyncio.Task[Produced] | None = None,
    ) -> None:
        self.role = role
        self.position = position
        self.stored = stored
        self._result = result
        self._task = task

    def cancel(self) -> None:
        """Stop the job if this ticket runs it (its requester can no longer be answered)."""
        if self._task is not None:
            self._task.cancel()

    async def result(self) -> Produced:
        """Wait for the cutout (raises the job's error, or `JobAborted`)."""
        return await self._result()


class CutoutService:
    """Serves each source key once: cache hits are free and concurrent requests share a job."""

    def __init__(
        self,
        pipeline: RemovalPipeline,
        store: StateStore,
        *,
        cache_ttl: float,
        claim_ttl: float = 300.0,
        claim_lease: float = 30.0,
        remote_poll: float = 0.2,
    ) -> None:
        self._pipeline = pipeline
        self._store = store
        self._cache_ttl = cache_ttl
        self._claim_ttl = claim_ttl
        # A claim lives `claim_lease` seconds and its job renews it every third of that, so
        # a replica that died holds up the same image elsewhere for one lease at most.
        self._claim_lease = min(claim_lease, claim_ttl)
        self._remote_poll = remote_poll
        self._inflight: dict[str, asyncio.Future[Produced]] = {}
        self._releases: set[asyncio.Task[None]] = set()
        self._admitting: dict[str, asyncio.Lock] = {}

    @property
    def pipeline(self) -> RemovalPipeline:
        """The pipeline jobs run on."""
        return self._pipeline

    async def cached(self, source: ImageSource) -> StoredCutout | None:
        """The cached cutout of `source`, if any."""
        return await self._store.get_cutout(source.key)

    async def forget(self, source: ImageSource, file_id: str) -> None:
        """Drop a cached cutout Telegram no longer accepts (unless already replaced)."""
        await self._store.drop_cutout(source.key, file_id)

    async def remember(self, source: ImageSource, file_id: str, file_name: str) -> StoredCutout:
        """Cache the uploaded cutout of `source`."""
        stored = StoredCutout(file_id, file_name, time.time())
        await self._store.put_cutout(source.key, stored, self._cache_ttl)
        return stored

    async def start(
        self,
        source: ImageSource,
        deliver: Deliver,
        *,
        admit: Admit | None = None,
        timings: JobTimings | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> Ticket:
        """Find or start the job for `source`; `admit` is asked only before a new Freepik job.

        A refusal from `admit` is raised here and no job starts.

        `deliver` runs only for the leader; it returns the uploaded file id (or None).
        """
        key = source.key
        cached = await self._store.get_cutout(key)
        if cached is not None:
            return self._cached_ticket(cached)
        if key in self._inflight:
            return self._follower_ticket(self._inflight[key])
        if admit is not None:
            # One admission per image at a time: a second request for the same image waits
            # for the first one's verdict and then joins its job for free, however the
            # storage round trips of the two interleave.
            lock = self._admitting.setdefault(key, asyncio.Lock())
            try:
                async with lock:
                    if key in self._inflight:
                        return self._follower_ticket(self._inflight[key])
                    refused = await admit()
                    if refused is not None:
                        raise refused
                    if key in self._inflight:  # someone started it while we were counting
                        return self._follower_ticket(self._inflight[key])
                    shared = self._register(key)
            finally:
                if not lock.locked() and self._admitting.get(key) is lock:
                    del self._admitting[key]
        else:
            shared = self._register(key)
        try:
            claimed = await self._store.claim(key, self._claim_lease)
        except BaseException as err:
            self._settle(key, shared, error=err)
            raise
        if claimed:
            try:
                late = await self._store.get_cutout(key)
            except BaseException as err:
                await self._release(key)
                self._settle(key, shared, error=err)
                raise
            if late is not None:
                # Another replica cached it and let go of its claim between our cache read and
                # our claim: a new job now would pay Freepik a second time for the same image.
                await self._release(key)
                self._settle(key, shared, Produced(None, late.file_id, late.file_name))
                return self._cached_ticket(late)
        else:
            # Another replica is making it: wait for its result in the shared cache.
            task = asyncio.create_task(
                self._await_remote(source, deliver, shared, timings, on_start)
            )
            task.add_done_callback(lambda t: self._settle_from(key, shared, t))
            return self._follower_ticket(shared)
        try:
            job = self._lead(source, deliver, shared, timings, on_start)
        except BaseException as err:
            await self._release(key)
            self._settle(key, shared, error=err)
            raise
        return Ticket(Role.LEADER, job.result, position=job.position, task=job.task)

    def _register(self, key: str) -> asyncio.Future[Produced]:
        shared: asyncio.Future[Produced] = asyncio.get_running_loop().create_future()
        shared.add_done_callback(_consume)
        self._inflight[key] = shared
        return shared

    def _lead(
        self,
        source: ImageSource,
        deliver: Deliver,
        shared: asyncio.Future[Produced],
        timings: JobTimings | None,
        on_start: Callable[[], Awaitable[None]] | None,
    ) -> Job[Produced]:
        """Run the job for `source` (the claim is ours) and share its result."""
        key = source.key

        async def deliver_and_share(cutout: Cutout) -> Produced:
            try:
                file_id = await deliver(cutout)
            except BaseException:
                self._settle(key, shared, Produced(cutout, None, cutout.file_name))
                raise
            if file_id:
                await self.remember(source, file_id, cutout.file_name)
            produced = Produced(cutout, file_id, cutout.file_name)
            self._settle(key, shared, produced)
            return produced

        job = self._pipeline.submit(source, deliver_and_share, timings=timings, on_start=on_start)
        renewal = asyncio.get_running_loop().create_task(self._renew(key, job.task))
        self._releases.add(renewal)
        renewal.add_done_callback(self._releases.discard)

        def finished(task: asyncio.Task[Produced]) -> None:
            self._settle_from(key, shared, task)
            release = asyncio.get_running_loop().create_task(self._release(key))
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

        job.task.add_done_callback(finished)
        return job

    async def _renew(self, key: str, job: asyncio.Task[Produced]) -> None:
        """Renew the claim on `key` while its job runs."""
        while True:
            await asyncio.wait([job], timeout=self._claim_lease / 3)
            if job.done():
                return
            try:
                await self._store.renew_claim(key, self._claim_lease)
            except StorageUnavailable as err:
                logger.warning("Could not renew the claim on a job: %s", err)

    async def _release(self, key: str) -> None:
        try:
            await self._store.release(key)
        except StorageUnavailable as err:
            # The claim expires by itself (its TTL); others wait a little longer meanwhile.
            logger.warning("Could not release the claim on a job: %s", err)

    def _cached_ticket(self, stored: StoredCutout) -> Ticket:
        async def result() -> Produced:
            return Produced(None, stored.file_id, stored.file_name)

        return Ticket(Role.CACHED, result, stored=stored)

    def _follower_ticket(self, shared: asyncio.Future[Produced]) -> Ticket:
        async def result() -> Produced:
            try:
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if shared.cancelled() and (current is None or not current.cancelling()):
                    raise JobAborted("the shared job was aborted") from None
                raise

        return Ticket(Role.FOLLOWER, result)

    async def _await_remote(
        self,
        source: ImageSource,
        deliver: Deliver,
        shared: asyncio.Future[Produced],
        timings: JobTimings | None,
        on_start: Callable[[], Awaitable[None]] | None,
    ) -> Produced:
        deadline = time.monotonic() + self._claim_ttl
        while time.monotonic() < deadline:
            await asyncio.sleep(self._remote_poll)
            stored = await self._store.get_cutout(source.key)
            if stored is not None:
                return Produced(None, stored.file_id, stored.file_name)
            if await self._store.claim(source.key, self._claim_lease):
                stored = await self._store.get_cutout(source.key)
                if stored is not None:  # it finished between our read and our claim
                    await self._release(source.key)
                    return Produced(None, stored.file_id, stored.file_name)
                # The other replica gave up (its job failed, or it died): do it here.
                return await self._lead(source, deliver, shared, timings, on_start).result()
        raise JobAborted("the job on another replica did not finish")

    def _settle(
        self,
        key: str,
        shared: asyncio.Future[Produced],
        produced: Produced | None = None,
        *,
        error: BaseException | None = None,
    ) -> None:
        if self._inflight.get(key) is shared:
            del self._inflight[key]
        if shared.done():
            return
        if produced is not None:
            shared.set_result(produced)
        elif isinstance(error, asyncio.CancelledError) or error is None:
            shared.cancel()
        else:
            shared.set_exception(error)

    def _settle_from(
        self, key: str, shared: asyncio.Future[Produced], task: asyncio.Task[Produced]
    ) -> None:
        if task.cancelled():
            self._settle(key, shared)
        elif task.exception() is not None:
            self._settle(key, shared, error=task.exception())
        else:
            self._settle(key, shared, task.result())


def _consume(future: asyncio.Future[Produced]) -> None:
    # Nobody may be waiting: mark the error as seen so asyncio does not warn about it.
    if not future.cancelled():
        future.exception()
