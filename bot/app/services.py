"""The services a running bot owns, started and stopped with the Application."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from telegram import Bot

from bot.app.aiohttp_transport import AiohttpTransport
from bot.imaging.pool import CpuPool
from bot.ops.metrics import Metrics
from bot.removal.cutouts import CutoutService
from bot.removal.freepik import FreepikClient, RetryPolicy
from bot.removal.pipeline import RemovalPipeline
from bot.removal.relay import RelayLinks
from bot.removal.sources import PublicUrlProvider, TelegramFileLinks
from bot.requests.admission import Admission, HintGate, RateLimiter, async_storage
from bot.requests.credits import Credits
from bot.requests.journal import ArrivedUpdates, RequestJournal
from bot.requests.kept import KeptRequests
from bot.requests.lifecycle import Lifecycle
from bot.requests.spending import DailyBudget, FreepikGate, RateCap
from bot.requests.stream import UpdateStream
from bot.settings import Settings
from bot.storage.factory import create_store
from bot.studio.waits import BACKGROUND_WAIT
from bot.transport.albums import AlbumCollector
from bot.transport.files import BotFiles
from bot.transport.migrations import Migrations
from bot.transport.services import Services
from bot.transport.studio import Studio
from bot.transport.surfaces.album import AlbumRemoval
from bot.transport.surfaces.background import Backgrounds
from bot.transport.surfaces.chat import ChatRemoval
from bot.transport.surfaces.inline import InlineRemoval

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Test and benchmark hooks that are not settings."""

    freepik_transport: httpx.AsyncBaseTransport | None = None
    freepik_retry: RetryPolicy | None = None
    # My background: how long a press waits for its photo, how often ended waits are looked for.
    background_wait: float = BACKGROUND_WAIT
    wait_sweep: float = 10.0


def create_services(
    settings: Settings, bot: Bot, options: ServiceOptions, arrived: ArrivedUpdates | None = None
) -> Services:
    """Build the services for one Application (`arrived`: the JSON polling keeps)."""
    metrics = Metrics()
    store = create_store(
        settings.storage_url,
        prefix=settings.redis_prefix,
        sqlite_synchronous=settings.sqlite_synchronous,
    )
    counters = async_storage(
        settings.storage_url,
        prefix=settings.redis_prefix,
        sqlite_synchronous=settings.sqlite_synchronous,
    )
    gate = FreepikGate(
        RateCap(settings.freepik_max_rate, counters),
        DailyBudget(
            settings.freepik_daily_budget, counters, on_change=metrics.budget_remaining.set
        ),
    )
    freepik_connections = max(10, settings.max_concurrent_jobs * 2)
    freepik = FreepikClient(
        settings.freepik_api_key.get_secret_value(),
        settings.freepik_api_url,
        api_key_header=settings.freepik_api_key_header,
        timeout=settings.freepik_timeout,
        retry=options.freepik_retry,
        max_connections=freepik_connections,
        transport=options.freepik_transport
        or AiohttpTransport(max_connections=freepik_connections),
        observer=metrics.freepik_answer,
        on_post=metrics.freepik_post,
        on_out_of_capacity=metrics.out_of_capacity,
        before_post=gate.before_post,
    )
    cpu = CpuPool(settings.image_workers, settings.image_queue)
    relay: RelayLinks | None = None
    files = BotFiles(bot)
    urls: PublicUrlProvider = TelegramFileLinks(files)
    if settings.photo_url_mode == "relay":
        relay = RelayLinks(
            files,
            store,
            base_url=settings.public_base_url,
            ttl=settings.relay_ttl,
            cpu=cpu,
            transport=AiohttpTransport(),
        )
        urls = relay
    pipeline = RemovalPipeline(
        freepik,
        urls,
        max_concurrent_jobs=settings.max_concurrent_jobs,
        download_timeout=settings.result_download_timeout,
        job_timeout=settings.job_timeout,
    )
    metrics.bind_gauges(lambda: pipeline.in_flight, lambda: pipeline.queued)
    admission = Admission(
        RateLimiter(settings.rate_limits, counters, namespace="user"),
        RateLimiter(settings.chat_rate_limits, counters, namespace="chat"),
        settings.admin_ids,
        gate.budget if settings.freepik_daily_budget is not None else None,
    )
    hints = HintGate(RateLimiter(settings.hint_rate_limits, counters, namespace="hint"))
    cutouts = CutoutService(
        pipeline, store, cache_ttl=settings.cache_ttl, claim_lease=settings.stream_lease
    )
    migrations = Migrations()
    studio = Studio(
        bot,
        store,
        cpu,
        cache_ttl=settings.cache_ttl,
        metrics=metrics,
        migrations=migrations,
        background_wait=options.background_wait,
        wait_sweep=options.wait_sweep,
    )
    backgrounds = Backgrounds(bot, studio.waits, studio.workshop, cpu, migrations, metrics)
    # Payments off (CREDIT_PACKS empty): every check passes and nothing is counted.
    credits = Credits(
        store,
        RateLimiter(settings.free_removal_limits, counters, namespace="free"),
        settings.credit_packs,
        admin_ids=settings.admin_ids,
        metrics=metrics,
    )
    lifecycle = Lifecycle(cutouts, store, admission, metrics=metrics, hints=hints, credits=credits)
    # A chat photo refused for want of credits waits for its payment (payments on only).
    kept = KeptRequests(store) if credits.enabled else None
    chat = ChatRemoval(bot, lifecycle, studio=studio, migrations=migrations, kept=kept)
    albums = AlbumCollector(
        AlbumRemoval(bot, lifecycle, studio=studio).process, wait=settings.album_wait
    )
    inline = InlineRemoval(
        bot,
        lifecycle,
        storage_chat_id=settings.inline_storage_chat_id,
        answer_timeout=settings.inline_answer_timeout,
        studio=studio,
    )
    journal = RequestJournal(store, bot, max_attempts=settings.request_attempts, arrived=arrived)
    stream: UpdateStream | None = None
    if settings.uses_stream:
        stream = UpdateStream(
            settings.storage_url,
            prefix=settings.redis_prefix,
            lease=settings.stream_lease,
            journal=journal,
            bot=bot,
            max_attempts=settings.request_attempts,
        )
    return Services(
        settings=settings,
        credits=credits,
        freepik=freepik,
        pipeline=pipeline,
        store=store,
        cutouts=cutouts,
        admission=admission,
        chat=chat,
        albums=albums,
        inline=inline,
        metrics=metrics,
        relay=relay,
        cpu=cpu,
        studio=studio,
        backgrounds=backgrounds,
        gate=gate,
        hints=hints,
        journal=journal,
        stream=stream,
        migrations=migrations,
    )
