"""The request that ran out of credits, kept so a payment can answer it without a resend.

A chat request refused for want of free removals and credits is kept per user (the newest
wins) for a day; when that user's payment is credited it is claimed by that payment and run
through the lifecycle again. It stays in storage until the run has ended in a reply, and is
removed then (unless a newer one replaced it): a process killed mid-run leaves it for the
payment's replayed update, which claims it again, while another payment finds it claimed and
does not run it a second time. A Telegram file id stays downloadable; a link may have gone
meanwhile, which the run then says.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from bot.removal.sources import ImageSource, SourceKind
from bot.storage.base import StateStore, StorageUnavailable

logger = logging.getLogger(__name__)

# How long a refused request waits for its payment.
KEPT_TTL = 24 * 3600


@dataclass(frozen=True, slots=True)
class KeptRequest:
    """What it takes to answer a chat request later: the image and where to reply."""

    source: ImageSource
    user_id: int
    chat_id: int
    message_id: int
    group: bool
    thread_id: int | None
    locale: str
    kept_at: float

    def to_json(self) -> str:
        """The stored form."""
        source = self.source
        return json.dumps(
            {
                "v": 1,
                "source": {
                    "kind": str(source.kind),
                    "file_id": source.file_id,
                    "file_unique_id": source.file_unique_id,
                    "url": source.url,
                    "file_name": source.file_name,
                    "file_size": source.file_size,
                },
                "user": self.user_id,
                "chat": self.chat_id,
                "message": self.message_id,
                "group": self.group,
                "thread": self.thread_id,
                "locale": self.locale,
                "at": self.kept_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> KeptRequest:
        """Inverse of `to_json`; raises ValueError (or KeyError, TypeError) if unreadable."""
        data: dict[str, Any] = json.loads(raw)
        s = data["source"]
        source = ImageSource(
            SourceKind(s["kind"]),
            _text(s.get("file_id")),
            _text(s.get("file_unique_id")),
            _text(s.get("url")),
            _text(s.get("file_name")),
            None if s.get("file_size") is None else int(s["file_size"]),
        )
        thread = data.get("thread")
        return cls(
            source,
            int(data["user"]),
            int(data["chat"]),
            int(data["message"]),
            bool(data.get("group")),
            None if thread is None else int(thread),
            str(data["locale"]),
            float(data["at"]),
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    """A kept request claimed by a payment, and its stored form (to remove exactly it)."""

    request: KeptRequest
    record: str


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class KeptRequests:
    """One kept request per user in the storage backend, run by one payment at a time."""

    def __init__(self, store: StateStore, *, ttl: float = KEPT_TTL) -> None:
        self._store = store
        self._ttl = ttl

    async def keep(self, request: KeptRequest) -> bool:
        """Keep `request` (replacing the user's earlier one); False if storage is down."""
        try:
            await self._store.keep_request(request.user_id, request.to_json(), self._ttl)
        except StorageUnavailable as err:
            logger.error("Could not keep user %s's refused request: %s", request.user_id, err)
            return False
        return True

    async def claim(self, user_id: int, runner: str) -> Claimed | None:
        """The user's kept request for `runner` (a payment) to run, unless another runs it.

        It stays kept until `done`; `runner` claims it again after a crash. Raises
        `StorageUnavailable`.
        """
        raw = await self._store.claim_request(user_id, runner)
        if raw is None:
            return None
        try:
            return Claimed(KeptRequest.from_json(raw), raw)
        except (ValueError, KeyError, TypeError) as err:
            logger.error("Dropped user %s's unreadable kept request: %s", user_id, err)
            await self._store.drop_request(user_id, raw)
            return None

    async def done(self, claimed: Claimed) -> None:
        """The claimed request got its reply: it is kept no more (a newer one stays)."""
        user_id = claimed.request.user_id
        try:
            await self._store.drop_request(user_id, claimed.record)
        except StorageUnavailable as err:
            # It expires with its TTL; until then only its own payment's replay would run it.
            logger.error("Could not drop user %s's answered kept request: %s", user_id, err)
