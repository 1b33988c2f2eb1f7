"""The services a running bot owns, as handlers reach them (built in bot.app.services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telegram.ext import Application, CallbackContext

from bot.imaging.pool import CpuPool
from bot.ops.metrics import Metrics
from bot.removal.cutouts import CutoutService
from bot.removal.freepik import FreepikClient
from bot.removal.pipeline import RemovalPipeline
from bot.removal.relay import RelayLinks
from bot.removal.sources import accepted_mime_types
from bot.requests.admission import Admission, HintGate, close_counters
from bot.requests.credits import Credits
from bot.requests.journal import RequestJournal
from bot.requests.spending import FreepikGate
from bot.requests.stream import UpdateStream
from bot.settings import Settings
from bot.storage.base import StateStore
from bot.transport.albums import AlbumCollector
from bot.transport.migrations import Migrations
from bot.transport.studio import Studio
from bot.transport.surfaces.background import Backgrounds
from bot.transport.surfaces.chat import ChatRemoval
from bot.transport.surfaces.inline import InlineRemoval

_KEY = "nobg.services"


@dataclass(slots=True)
class Services:
    """Everything handlers need, reached through `get_services`."""

    settings: Settings
    freepik: FreepikClient
    pipeline: RemovalPipeline
    store: StateStore
    cutouts: CutoutService
    admission: Admission
    chat: ChatRemoval
    albums: AlbumCollector
    inline: InlineRemoval
    metrics: Metrics
    relay: RelayLinks | None
    cpu: CpuPool
    studio: Studio
    # The photos My background waits for: offered here before any removal could start.
    backgrounds: Backgrounds
    gate: FreepikGate
    hints: HintGate
    journal: RequestJournal
    credits: Credits
    stream: UpdateStream | None = None
    # Groups upgraded to supergroups: replies from handlers, jobs and the studio follow them.
    migrations: Migrations = field(default_factory=Migrations)

    @property
    def accepted_mime_types(self) -> frozenset[str]:
        """Image files the handlers accept (more in relay mode, which converts them)."""
        return accepted_mime_types(self.settings.photo_url_mode)

    async def aclose(self) -> None:
        """Release connections."""
        await self.studio.aclose()
        await self.freepik.aclose()
        if self.relay is not None:
            await self.relay.aclose()
        await self.store.aclose()
        await close_counters(self.admission.users.storage)
        if self.stream is not None:
            await self.stream.aclose()
        await self.cpu.aclose()


def attach_services(application: Application[Any, Any, Any, Any, Any, Any], s: Services) -> None:
    """Make `s` reachable from handlers."""
    application.bot_data[_KEY] = s


def services_of(application: Application[Any, Any, Any, Any, Any, Any]) -> Services:
    """The services of a running Application."""
    found = application.bot_data.get(_KEY)
    if not isinstance(found, Services):
        raise RuntimeError("services are not started: was post_init run?")
    return found


def get_services(context: CallbackContext[Any, Any, Any, Any]) -> Services:
    """The services, from a handler's context."""
    return services_of(context.application)
