"""The process pool for image work: results, a bounded queue, a dead worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from bot.imaging.pool import WORKER_NICENESS, CpuBusy, CpuPool, CpuWorkerLost


def _pid_and_square(value: int) -> tuple[int, int]:
    return os.getpid(), value * value


def _niceness() -> int:
    return os.nice(0)


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def test_runs_in_another_process() -> None:
    pool = CpuPool(workers=1, queue=1)
    try:
        pid, square = await pool.run(_pid_and_square, 7)
    finally:
        await pool.aclose()
    assert square == 49
    assert pid != os.getpid()


async def test_full_queue_is_refused_at_once_and_loop_stays_free() -> None:
    pool = CpuPool(workers=1, queue=1)
    try:
        await pool.run(_sleep, 0)  # start the worker
        running = [asyncio.create_task(pool.run(_sleep, 0.5)) for _ in range(2)]
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(CpuBusy):
            await pool.run(_sleep, 0)
        await asyncio.sleep(0.05)  # the loop ticks while workers sleep
        assert time.monotonic() - started < 0.3
        assert await asyncio.gather(*running) == [0.5, 0.5]
        assert pool.pending == 0
    finally:
        await pool.aclose()


async def test_a_killed_worker_is_reported_and_the_pool_recovers() -> None:
    pool = CpuPool(workers=1, queue=0)
    try:
        with pytest.raises(CpuWorkerLost):
            await pool.run(_die)
        _, square = await pool.run(_pid_and_square, 3)
    finally:
        await pool.aclose()
    assert square == 9


async def test_workers_run_at_a_lower_priority_than_the_bot() -> None:
    pool = CpuPool(workers=1, queue=0)
    try:
        worker = await pool.run(_niceness)
    finally:
        await pool.aclose()
    assert worker >= os.nice(0) + WORKER_NICENESS or worker == 19
