"""The removal pipeline: source -> public URL -> Freepik -> download -> deliver.

It knows nothing of Telegram handlers, so private chats, groups, inline mode and a webhook
server can all reuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bot.removal.freepik import (
    FreepikClient,
    ImageNotFetched,
    ImageRejected,
    PostCount,
    ResultExpired,
)
from bot.removal.sources import ImageSource, PublicUrlProvider, SourceKind

logger = logging.getLogger(__name__)

T = TypeVar("T")


class JobAborted(Exception):
    """The job was stopped because the bot is shutting down."""


class JobTimedOut(Exception):
    """The job (or its result download) ran past its deadline and was given up."""


class LinkNotFound(ImageRejected):
    """Freepik could not download anything from the user's link (gone, 404, unreachable)."""


class LinkNotAnImage(ImageRejected):
    """Freepik fetched the user's link but it held no image it reads (a web page...)."""


@dataclass(frozen=True, slots=True)
class Cutout:
    """A finished transparent PNG, ready to deliver: in the pieces it was downloaded in."""

    pieces: tuple[bytes, ...]
    file_name: str

    @property
    def data(self) -> bytes:
        """The PNG in one piece (a copy of the whole: uploads send `pieces`)."""
        return b"".join(self.pieces)


@dataclass(slots=True)
class JobTimings:
    """Seconds spent in each stage of one job."""

    started: float = field(default_factory=time.monotonic)
    queue: float = 0.0
    source: float = 0.0
    freepik: float = 0.0
    download: float = 0.0
    upload: float = 0.0
    attempts: int = 0

    @property
    def total(self) -> float:
        """Seconds since the job was accepted."""
        return time.monotonic() - self.started

    def stages(self) -> dict[str, float]:
        """Seconds per stage, for metrics."""
        return {
            "queue": self.queue,
            "freepik": self.freepik,
            "download": self.download,
            "upload": self.upload,
            "total": self.total,
        }

    def summary(self) -> str:
        """Compact `name=seconds` pairs for the job log line."""
        return (
            f"queue={self.queue:.3f}s source={self.source:.3f}s freepik={self.freepik:.3f}s "
            f"download={self.download:.3f}s upload={self.upload:.3f}s total={self.total:.3f}s "
            f"attempts={self.attempts}"
        )


class Job(Generic[T]):
    """A submitted job: its place in the queue when submitted, and its result."""

    def __init__(self, task: asyncio.Task[T], position: int) -> None:
        self.task = task
        self.position = position

    async def result(self) -> T:
        """Wait for the job; a job cancelled at shutdown raises `JobAborted`."""
        try:
            return await asyncio.shield(self.task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.task.cancelled() and (current is None or not current.cancelling()):
                raise JobAborted("cancelled at shutdown") from None
            raise


class RemovalPipeline:
    """Runs removal jobs with a global concurrency cap, in arrival order."""

    def __init__(
        self,
        freepik: FreepikClient,
        urls: PublicUrlProvider,
        *,
        max_concurrent_jobs: int = 8,
        result_link_retries: int = 1,
        download_timeout: float = 120.0,
        job_timeout: float = 240.0,
    ) -> None:
        self._freepik = freepik
        self._urls = urls
        self._slots = asyncio.Semaphore(max_concurrent_jobs)
        self._capacity = max_concurrent_jobs
        self._running = 0
        self._result_link_retries = result_link_retries
        self._download_timeout = download_timeout
        self._job_timeout = job_timeout
        self._jobs: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def in_flight(self) -> int:
        """Jobs holding a slot."""
        return self._running

    @property
    def queued(self) -> int:
        """Jobs waiting for a slot."""
        return len(self._jobs) - self._running

    def queue_position(self) -> int:
        """0 if a new job would start at once, else its place in the queue (1 = next)."""
        return max(0, len(self._jobs) - self._capacity + 1)

    def submit(
        self,
        source: ImageSource,
        deliver: Callable[[Cutout], Awaitable[T]],
        *,
        timings: JobTimings | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> Job[T]:
        """Queue one job now (its place is taken at once); `Job.result()` awaits it."""
        if self._closing:
            raise JobAborted("shutting down")
        position = self.queue_position()
        task = asyncio.create_task(
            self._run_in_slot(source, deliver, timings or JobTimings(), on_start)
        )
        self._jobs.add(task)
        self._idle.clear()
        task.add_done_callback(self._forget)
        return Job(task, position)

    async def run(
        self,
        source: ImageSource,
        deliver: Callable[[Cutout], Awaitable[T]],
        *,
        timings: JobTimings | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """Process one source and hand the cutout to `deliver`; return what it returns."""
        job = self.submit(source, deliver, timings=timings, on_start=on_start)
        return await job.result()

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` seconds for jobs in flight, then abort the rest; return how many."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        self._closing = True
        leftovers = list(self._jobs)
        for task in leftovers:
            task.cancel()
        if leftovers:
            logger.warning("Grace of %.0fs is over: aborting %d job(s)", grace, len(leftovers))
            await asyncio.gather(*leftovers, return_exceptions=True)
        return len(leftovers)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._jobs.discard(task)
        if not self._jobs:
            self._idle.set()

    async def _run_in_slot(
        self,
        source: ImageSource,
        deliver: Callable[[Cutout], Awaitable[T]],
        timings: JobTimings,
        on_start: Callable[[], Awaitable[None]] | None,
    ) -> T:
        queued_at = time.monotonic()
        async with self._slots:
            self._running += 1
            timings.queue = time.monotonic() - queued_at
            try:
                if on_start is not None:
                    await on_start()
                try:
                    # A deadline for the whole job: nothing (a trickling download, a stalled
                    # peer) may hold a slot forever. Delivery has Telegram's own timeouts.
                    async with asyncio.timeout(self._job_timeout):
                        cutout = await self._make_cutout(source, timings)
                except TimeoutError as err:
                    raise JobTimedOut(f"job took longer than {self._job_timeout:.0f}s") from err
                upload_started = time.monotonic()
                try:
                    return await deliver(cutout)
                finally:
                    timings.upload = time.monotonic() - upload_started
            finally:
                self._running -= 1

    async def _make_cutout(self, source: ImageSource, timings: JobTimings) -> Cutout:
        # One numbering for every POST of this image, the re-run included (attempt metric).
        posts = PostCount()
        for retry in range(self._result_link_retries + 1):
            timings.attempts += 1
            started = time.monotonic()
            image_url = await self._urls.public_url(source)
            timings.source += time.monotonic() - started

            started = time.monotonic()
            try:
                result = await self._freepik.remove_background(image_url, posts)
            except ImageRejected as err:
                if source.kind is not SourceKind.LINK:
                    raise
                # The user's own link: say what is wrong with it, not "unreadable image".
                if isinstance(err, ImageNotFetched):
                    raise LinkNotFound(str(err)) from err
                raise LinkNotAnImage(str(err)) from err
            finally:
                timings.freepik += time.monotonic() - started

            started = time.monotonic()
            try:
                async with asyncio.timeout(self._download_timeout):
                    pieces = await self._freepik.download_result(result.high_resolution)
            except TimeoutError as err:
                raise JobTimedOut(
                    f"result download took longer than {self._download_timeout:.0f}s"
                ) from err
            except ResultExpired:
                if retry >= self._result_link_retries:
                    raise
                logger.warning("Result link lapsed before download; running the job again")
                continue
            finally:
                timings.download += time.monotonic() - started
            return Cutout(pieces, source.result_file_name())
        raise AssertionError("unreachable")  # pragma: no cover
