"""Bad input under load (issue 13): a conversion's memory, the loop under conversions, a flood.

One real `python -m bot` process in relay mode with its own fake Telegram (the benchmark's
fake Freepik):

1. Peak RSS of one conversion of a 144 MP PNG (a 12000x12000 file of a few hundred KB): VmHWM
   of the bot process and of its image workers, above what they held just before.
2. `/healthz` latency while 4 such conversions run at once, against `/healthz` when idle.
3. Another user's photo, from push to cutout received, while one user floods the bot with 900
   texts (hints limited by `HINT_RATE_LIMIT`, the overall rate shared between chats), against
   the same job alone.
4. The same with `HINT_RATE_LIMIT` empty, in a bot of its own: every text of the flood gets
   its reply, so the flood's replies and the other user's take turns at Telegram's overall rate
   (`TELEGRAM_MAX_RATE`, 30/s) and the flood fills more than the pool of handlers.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.botproc import BOT_TOKEN, BotProcess, bot_env, peak_rss_kb, reset_peak_rss, rss_kb
from bench.stats import ms, percentile
from tests.fakes import FakeTelegram, make_image
from tests.fakes.images import huge_png
from tests.fakes.updates import (
    document_message,
    photo_message,
    private_user,
    text_message,
    update,
)
from tests.support import descendants

CONVERSIONS = 4
FLOODER = 9301
BYSTANDER = 9302


class FaultsBench:
    """The relay-mode bot and its fake Telegram."""

    def __init__(self, workdir: Path, freepik_url: str, **settings: str) -> None:
        self.telegram = FakeTelegram(token=BOT_TOKEN)
        self.workdir = workdir
        self.freepik_url = freepik_url
        self.settings = settings
        self.bot: BotProcess | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.http_url = f"http://127.0.0.1:{self.port}"
        self._users = 9400

    async def start(self) -> None:
        """Start the fake and the bot; wait until it polls."""
        self.telegram.start()
        env = bot_env(
            self.telegram.url,
            self.freepik_url,
            PHOTO_URL_MODE="relay",
            PUBLIC_BASE_URL=self.http_url,
            LISTEN_HOST="127.0.0.1",
            LISTEN_PORT=str(self.port),
            MAX_CONCURRENT_JOBS="8",
            **self.settings,
        )
        self.bot = BotProcess(env, self.workdir, name="faults")
        await self.bot.start()
        await self.telegram.wait_for_call("getUpdates", timeout=30)

    async def stop(self) -> None:
        """Stop the bot and the fake."""
        if self.bot is not None:
            await self.bot.stop()
        self.telegram.stop()

    @property
    def pid(self) -> int:
        """The bot's process id."""
        assert self.bot is not None
        return self.bot.pid

    def push_png(self, data: bytes) -> int:
        """A PNG file from a new user; return the user id."""
        self._users += 1
        file_id, unique_id = self.telegram.add_file(data)
        user = private_user(self._users)
        message = document_message(
            user, file_id, unique_id, file_name="big.png", file_size=len(data)
        )
        self.telegram.push_update(update(message=message))
        return self._users

    def push_photo(self, user_id: int) -> None:
        """A small photo (a new file each time) from `user_id`."""
        file_id, unique_id = self.telegram.add_file(make_image("JPEG", size=(640, 480)))
        message = photo_message(private_user(user_id), file_id, unique_id)
        self.telegram.push_update(update(message=message))

    async def document_for(self, user_id: int, count: int = 1, within: float = 300) -> float:
        """Wait for the `count`-th cutout to `user_id`; return when it arrived (monotonic)."""
        deadline = time.monotonic() + within
        while len(documents := self.telegram.sent_documents(user_id)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no cutout for user {user_id} within {within}s")
            await asyncio.sleep(0.005)
        return float(documents[count - 1].at)

    def workers(self) -> list[int]:
        """The bot's worker processes (and the forkserver)."""
        return descendants(self.pid)


async def conversion_memory(bench: FaultsBench, big: bytes) -> dict[str, Any]:
    """VmHWM of the bot and its workers around one conversion of `big`."""
    await bench.document_for(bench.push_png(huge_png(6000, 5000)))  # warm-up: start the workers
    await asyncio.sleep(0.5)
    pids = [bench.pid, *bench.workers()]
    before = {pid: rss_kb(pid) or 0 for pid in pids}
    resettable = all(reset_peak_rss(pid) for pid in pids)
    pushed = time.monotonic()
    received = await bench.document_for(bench.push_png(big))
    peaks = {pid: peak_rss_kb(pid) or 0 for pid in pids}
    above = {pid: (peaks[pid] - before[pid]) / 1024 for pid in pids}
    return {
        "megapixels": 144,
        "file_kb": round(len(big) / 1024),
        "job_s": round(received - pushed, 2),
        "bot_idle_mb": round(before[bench.pid] / 1024, 1),
        "bot_above_idle_mb": round(above[bench.pid], 1),
        "worker_peak_mb": round(max(peaks[p] for p in pids[1:]) / 1024, 1) if pids[1:] else 0,
        "worker_above_idle_mb": round(max(above[p] for p in pids[1:]), 1) if pids[1:] else 0,
        "peak_reset": resettable,
    }


async def health_under_conversions(bench: FaultsBench, big: bytes) -> dict[str, Any]:
    """`/healthz` latency while 4 conversions of `big` run, and when idle."""
    async with httpx.AsyncClient(base_url=bench.http_url, timeout=30) as client:
        idle: list[float] = []
        for _ in range(30):
            started = time.monotonic()
            await client.get("/healthz")
            idle.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
        users = [bench.push_png(big) for _ in range(CONVERSIONS)]
        waiting = asyncio.gather(*(bench.document_for(user) for user in users))
        busy: list[float] = []
        started_all = time.monotonic()
        while not waiting.done():
            started = time.monotonic()
            await client.get("/healthz")
            busy.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
        await waiting
    return {
        "conversions": CONVERSIONS,
        "wall_s": round(time.monotonic() - started_all, 2),
        "requests": len(busy),
        "idle_p50_ms": ms(statistics.median(idle)),
        "p50_ms": ms(statistics.median(busy)),
        "p99_ms": ms(percentile(busy, 99)),
        "max_ms": ms(max(busy)),
    }


async def job_during_flood(bench: FaultsBench, flood: int) -> dict[str, Any]:
    """Another user's photo job, alone and while one user sends `flood` texts."""
    solo: list[float] = []
    for count in range(1, 4):
        pushed = time.monotonic()
        bench.push_photo(BYSTANDER)
        solo.append(await bench.document_for(BYSTANDER, count) - pushed)
    hints_before = len(bench.telegram.texts_to(FLOODER))
    for number in range(flood):
        bench.telegram.push_update(
            update(message=text_message(private_user(FLOODER), f"hello {number}"))
        )
    pushed = time.monotonic()
    bench.push_photo(BYSTANDER)
    received = await bench.document_for(BYSTANDER, 4)
    replies_before = [
        call
        for call in bench.telegram.calls_of("sendMessage")
        if call.chat_id == FLOODER and call.ok and pushed <= call.at < received
    ]
    await asyncio.sleep(1.0)
    return {
        "flood": flood,
        "solo_job_s": round(statistics.median(solo), 3),
        "job_s": round(received - pushed, 3),
        "hints_sent": len(bench.telegram.texts_to(FLOODER)) - hints_before,
        "flood_replies_before_cutout": len(replies_before),
    }


async def run_faults(
    workdir: Path, freepik_url: str, megapixels: float = 144, flood: int = 900
) -> dict[str, Any]:
    """Every measurement of this phase."""
    side = max(64, round((megapixels * 1_000_000) ** 0.5))
    big = huge_png(side, side)
    bench = FaultsBench(workdir, freepik_url)
    await bench.start()
    try:
        results: dict[str, Any] = {"memory": await conversion_memory(bench, big)}
        results["memory"]["megapixels"] = round(side * side / 1e6, 1)
        results["healthz"] = await health_under_conversions(bench, big)
        results["flood"] = await job_during_flood(bench, flood)
    finally:
        await bench.stop()
    results["flood_every_text"] = await flood_every_text_answered(workdir, freepik_url, flood)
    return results


async def flood_every_text_answered(workdir: Path, freepik_url: str, flood: int) -> dict[str, Any]:
    """`job_during_flood` in a bot that answers every text (`HINT_RATE_LIMIT` empty)."""
    bench = FaultsBench(workdir, freepik_url, HINT_RATE_LIMIT="")
    await bench.start()
    try:
        return await job_during_flood(bench, flood)
    finally:
        await bench.stop()


def render_faults(faults: dict[str, Any]) -> list[str]:
    """The phase's lines of the printed report."""
    memory, health, flood = faults["memory"], faults["healthz"], faults["flood"]
    lines = [
        "9. Bad input under load (relay mode)",
        f"   One {memory['megapixels']:g} MP PNG ({memory['file_kb']} KB) converted: bot "
        f"+{memory['bot_above_idle_mb']} MB above idle ({memory['bot_idle_mb']} MB), "
        f"image worker +{memory['worker_above_idle_mb']} MB (peak {memory['worker_peak_mb']} "
        f"MB); cutout after {memory['job_s']} s",
        f"   /healthz while {health['conversions']} such conversions ran ({health['wall_s']} "
        f"s): p50 {health['p50_ms']} ms, p99 {health['p99_ms']} ms, max {health['max_ms']} ms "
        f"(idle p50 {health['idle_p50_ms']} ms)",
        f"   Another user's photo during a {flood['flood']}-message flood: {flood['job_s']} s "
        f"(alone {flood['solo_job_s']} s); hints sent to the flooder: {flood['hints_sent']}",
    ]
    every = faults.get("flood_every_text")
    if every is not None:
        lines.append(
            f"   The same with every text answered (HINT_RATE_LIMIT empty): {every['job_s']} s "
            f"(alone {every['solo_job_s']} s); the flood's replies sent before that cutout: "
            f"{every['flood_replies_before_cutout']} of {every['flood']}"
        )
    return lines
