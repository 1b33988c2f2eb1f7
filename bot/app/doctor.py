"""`python -m bot doctor`: check settings, Telegram and storage; print a masked summary."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from limits.aio.storage import Storage
from pydantic import SecretStr
from telegram import Bot
from telegram.error import TelegramError

from bot.ops.logs import redact
from bot.requests.admission import async_storage, close_counters
from bot.requests.spending import DailyBudget, utc_day
from bot.settings import CreditPack, Settings
from bot.storage.base import StorageUnavailable
from bot.storage.factory import create_store
from bot.storage.sqlite_store import DataDirError, sqlite_path

Printer = Callable[[str], None]

# One word for every empty setting, whatever its type (text, number, list, secret).
NOT_SET = "not set"
_DATA_DIR_HINT = "; set DATA_DIR to a writable directory (in Docker, mount a volume on /data)"


def mask(secret: SecretStr) -> str:
    """Say whether a secret is set without revealing it."""
    value = secret.get_secret_value()
    return f"set ({len(value)} characters)" if value else NOT_SET


async def run_doctor(settings: Settings, printer: Printer = print) -> int:
    """Run every check; return 0 when all pass, 1 otherwise."""
    secrets = settings.secrets()

    def out(line: str) -> None:
        printer(redact(line, secrets))

    problems: list[str] = []
    out("Settings")
    for name, value in summary(settings):
        out(f"  {name:<24} {value}")

    out("Telegram")
    bot = Bot(
        settings.telegram_bot_token.get_secret_value(),
        base_url=f"{settings.telegram_api_url}/bot",
        base_file_url=f"{settings.telegram_api_url}/file/bot",
    )
    try:
        async with bot:
            me = bot.bot
            out(f"  getMe                    ok: @{me.username} (id {me.id})")
            out(f"  inline mode              {'on' if me.supports_inline_queries else 'OFF'}")
            info = await bot.get_webhook_info()
            out(f"  webhook                  {info.url or NOT_SET + ' (polling)'}")
            out(f"  pending updates          {info.pending_update_count}")
            if info.last_error_message:
                out(f"  last webhook error       {info.last_error_message}")
            if settings.mode == "webhook" and info.url != settings.webhook_url:
                out("  note                     the webhook is set to WEBHOOK_URL at start")
    except TelegramError as err:
        problems.append(f"Telegram: {err}")
        out(f"  getMe                    FAILED: {err}")

    out("Storage")
    database = sqlite_path(settings.storage_url) if settings.storage_scheme == "sqlite" else None
    unopened: str | None = None
    if database is not None:
        line, problem = data_dir_state(database.parent)
        out(f"  data directory           {line}")
        if problem is not None:
            problems.append(problem)
            unopened = "not checked"
        elif not database.exists():
            # Opening it would create it (and its directory): the doctor only looks.
            unopened = "not created yet"
    if unopened is None:
        await _check_storage(settings, out, problems)
    else:
        out(f"  state                    {unopened}")
        out(f"  rate-limit counters      {unopened}")
        out(f"  Freepik budget today     {_budget_without_database(settings)}")

    if problems:
        out("Problems")
        for problem in problems:
            out(f"  - {problem}")
        return 1
    out("All checks passed.")
    return 0


async def _check_storage(settings: Settings, out: Printer, problems: list[str]) -> None:
    """Open the store and the counters (both exist already) and report them."""
    try:
        store = create_store(
            settings.storage_url,
            prefix=settings.redis_prefix,
            sqlite_synchronous=settings.sqlite_synchronous,
            exclusive=False,
        )
        try:
            reachable = await store.ping()
        finally:
            await store.aclose()
        counters = async_storage(
            settings.storage_url,
            prefix=settings.redis_prefix,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        try:
            counters_ok = bool(await counters.check())
        except Exception:
            counters_ok = False
        try:
            budget_line = await _budget_line(settings, counters)
        finally:
            await close_counters(counters)
    except DataDirError as err:
        out(f"  data directory           FAILED: {err}")
        problems.append(str(err))
        reachable = counters_ok = True  # already reported
        budget_line = "unknown (no storage)"
    out(f"  state                    {'reachable' if reachable else 'UNREACHABLE'}")
    out(f"  rate-limit counters      {'reachable' if counters_ok else 'UNREACHABLE'}")
    out(f"  Freepik budget today     {budget_line}")
    if not reachable or not counters_ok:
        problems.append(f"storage {hide_password(settings.storage_url)} is unreachable")


def data_dir_state(directory: Path) -> tuple[str, str | None]:
    """What to say about the database's directory, and the problem if any; creates nothing."""
    if directory.is_dir():
        if os.access(directory, os.W_OK | os.X_OK):
            return f"{directory} (writable)", None
        problem = f"data directory {directory} is not writable"
        return f"FAILED: {directory} is not writable", problem + _DATA_DIR_HINT
    if directory.exists():
        problem = f"data directory {directory} is not a directory"
        return f"FAILED: {directory} is not a directory", problem + _DATA_DIR_HINT
    ancestor = directory.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK):
        return f"{directory} does not exist yet (the bot creates it at start)", None
    problem = f"data directory {directory} cannot be created: {ancestor} is not writable"
    return f"FAILED: {directory} cannot be created ({ancestor} is not writable)", (
        problem + _DATA_DIR_HINT
    )


def _budget_without_database(settings: Settings) -> str:
    if settings.freepik_daily_budget is None:
        return "no budget (FREEPIK_DAILY_BUDGET is empty)"
    return f"{settings.freepik_daily_budget} calls (none used: no database yet)"


async def _budget_line(settings: Settings, counters: Storage) -> str:
    budget = DailyBudget(settings.freepik_daily_budget, counters)
    if budget.budget is None:
        return "no budget (FREEPIK_DAILY_BUDGET is empty)"
    try:
        used = await budget.used()
    except StorageUnavailable:
        return f"{budget.budget} calls (usage unknown: storage unreachable)"
    return f"{used} of {budget.budget} calls used (UTC day {utc_day()})"


def hide_password(url: str) -> str:
    """`redis://:secret@host` -> `redis://:***@host`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def summary(settings: Settings) -> list[tuple[str, str]]:
    """Every setting by its environment name, as an operator would write it; secrets masked."""
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        shown = hide_password(value) if name == "storage_url" else plain(value)
        rows.append((name.upper(), shown))
    return rows


def plain(value: object) -> str:
    """A setting's value as text: no quotes or type names, `not set` for every empty value."""
    if isinstance(value, SecretStr):
        return mask(value)
    if value is None or value == "" or (isinstance(value, frozenset | tuple) and not value):
        return NOT_SET
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, frozenset):
        return ",".join(str(item) for item in sorted(value))
    if isinstance(value, tuple):
        return ",".join(plain(item) for item in value)
    if isinstance(value, CreditPack):
        return f"{value.credits}:{value.stars}"
    return str(value)
