"""The bot as a real `python -m bot` process, and its resident memory read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from bot.settings import Settings
from tests.support import spawn_bot_process

BOT_TOKEN = "123456:BENCH-token_abcdefghijklmnopqrstuvw"  # noqa: S105 - for the fake only
FREEPIK_KEY = "bench-freepik-key"


def bot_env(telegram_url: str, freepik_url: str, **settings: str) -> dict[str, str]:
    """Environment for the bot: ours minus any bot setting, plus the fakes' URLs and `settings`."""
    names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    env.update(
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        FREEPIK_API_KEY=FREEPIK_KEY,
        TELEGRAM_API_URL=telegram_url,
        FREEPIK_API_URL=freepik_url,
        RATE_LIMIT="",
        # A fresh database per run: never the checkout's ./data, never a warm cache.
        DATA_DIR=tempfile.mkdtemp(prefix="nobg-bench-data-"),
    )
    env.update(settings)
    return env


def rss_kb(pid: int) -> int | None:
    """VmRSS of `pid` in kB (None once the process is gone)."""
    return _status_field(pid, "VmRSS")


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM (peak RSS since start or since `reset_peak_rss`) of `pid` in kB."""
    return _status_field(pid, "VmHWM")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used so far (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_field(pid: int, name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return None


class RssSampler:
    """Samples VmRSS every `interval` seconds in a thread (the event loop may be busy)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_kb(self.pid)
            if value is None:
                return
            self.samples.append((time.monotonic(), value))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def peak(self) -> tuple[float, int]:
        """When the largest sample was taken, and its value in kB."""
        return max(self.samples, key=lambda sample: sample[1], default=(math.nan, 0))


class BotProcess:
    """One bot process; its output goes to a log file, never to a pipe that could fill up."""

    def __init__(
        self, env: dict[str, str], workdir: Path, *, module: str = "bot", name: str = "bot"
    ) -> None:
        self.env = env
        self.workdir = workdir
        self.module = module
        self.log_path = workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    async def start(self) -> None:
        """Start the process (from an empty working directory: no stray .env is read)."""
        self._log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.process = await spawn_bot_process(
            module=self.module,
            env=self.env,
            cwd=self.workdir,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )

    def exited(self) -> bool:
        """Whether the process has ended."""
        return self.process is not None and self.process.returncode is not None

    async def stop(self, within: float = 15.0, *, kill: bool = False) -> int | None:
        """SIGTERM (or SIGKILL when `kill`), wait up to `within` s, then SIGKILL; exit code."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode

    def log_text(self) -> str:
        """Everything the process has written so far ("" if unreadable)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's output."""
        return "\n".join(self.log_text().splitlines()[-lines:])
