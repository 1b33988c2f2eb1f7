"""`python -m bot doctor`: check settings, Telegram and storage; print a masked summary."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from limits.aio.storage import Storage
from pydantic import SecretStr
from telegram import Bot
from telegram.error import TelegramError

from bot.ops.logs import redact
from bot.requests.admission import async_storage, close_counters
from bot.requests.spending import DailyBudget, utc_day
from bot.settings import Settings
from bot.storage.base import StorageUnavailable
from bot.storage.factory import create_store
from bot.storage.sqlite_store import DataDirError

Printer = Callable[[str], None]


def mask(secret: SecretStr) -> str:
    """Say whether a secret is set without revealing it."""
    value = secret.get_secret_value()
    return f"set ({len(value)} characters)" if value else "not set"


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
            out(f"  webhook                  {info.url or '(none: polling)'}")
            out(f"  pending updates          {info.pending_update_count}")
            if info.last_error_message:
                out(f"  last webhook error       {info.last_error_message}")
            if settings.mode == "webhook" and info.url != settings.webhook_url:
                out("  note                     the webhook is set to WEBHOOK_URL at start")
    except TelegramError as err:
        problems.append(f"Telegram: {err}")
        out(f"  getMe                    FAILED: {err}")

    out("Storage")
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

    if problems:
        out("Problems")
        for problem in problems:
            out(f"  - {problem}")
        return 1
    out("All checks passed.")
    return 0


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
    """Every setting by its environment name, secrets masked."""
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        shown = mask(value) if isinstance(value, SecretStr) else repr(value)
        if isinstance(value, frozenset):
            shown = ",".join(str(v) for v in sorted(value)) or "(none)"
        elif name == "storage_url":
            shown = repr(hide_password(value))
        rows.append((name.upper(), shown))
    return rows
