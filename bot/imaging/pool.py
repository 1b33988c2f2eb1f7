"""A process pool for CPU-heavy image work, so decoding and encoding never run on the event loop.

Functions sent here must be plain module-level functions taking and returning picklable values
(bytes in, bytes out). The queue in front of the workers is bounded: past it, `CpuBusy` is
raised at once so the caller can answer "busy" instead of letting work pile up in memory.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class CpuBusy(Exception):
    """Every worker is busy and the queue in front of them is full."""


class CpuWorkerLost(Exception):
    """A worker process died during the call (killed, out of memory); the pool was rebuilt."""


def default_workers() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class CpuPool:
    """A lazily started process pool with a bounded queue."""

    def __init__(self, workers: int = 0, queue: int = 32) -> None:
        self.workers = workers or default_workers()
        self.queue = queue
        self._executor: ProcessPoolExecutor | None = None
        self._pending = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Calls running or waiting for a worker."""
        return self._pending

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args)` in a worker process and return its result."""
        if self._closed:
            raise RuntimeError("the CPU pool is closed")
        if self._pending >= self.workers + self.queue:
            raise CpuBusy(f"{self._pending} conversions running or queued")
        executor = self._ensure()
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, _call, fn, args, kwargs)
        except BrokenProcessPool as err:
            logger.warning("An image worker process died; restarting the pool")
            self._reset(executor)
            raise CpuWorkerLost("an image worker process died") from err
        finally:
            self._pending -= 1

    def _ensure(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # forkserver: never fork the event loop's threads and sockets into a worker.
            context = multiprocessing.get_context("forkserver")
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_lower_priority
            )
        return self._executor

    def _reset(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is broken:
            self._executor = None
            broken.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Stop the workers (running calls are abandoned)."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


# Workers yield the CPU to the bot's event loop: on a machine with as many workers as cores, a
# conversion at the same priority can starve the loop of its time slices (seen as 0.8 s stalls).
WORKER_NICENESS = 10


def _lower_priority() -> None:
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # pragma: no cover - a sandbox may forbid it; the work still runs
        logger.debug("Could not lower the priority of an image worker")


def _call(fn: Callable[..., T], args: tuple[object, ...], kwargs: dict[str, object]) -> T:
    return fn(*args, **kwargs)
