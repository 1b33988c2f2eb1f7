"""Picks the state store a `STORAGE_URL` names."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.storage.base import StateStore
from bot.storage.memory import MemoryStore


def create_store(
    storage_url: str,
    *,
    prefix: str = "nobg:",
    sqlite_synchronous: str = "normal",
    exclusive: bool = True,
) -> StateStore:
    """The store for a `STORAGE_URL`: `sqlite://PATH`, `memory://` or `redis://host:port/db`."""
    url = storage_url.removeprefix("async+")
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from bot.storage.sqlite_store import SqliteStore, sqlite_path, synchronous_mode

        return SqliteStore(
            sqlite_path(url), synchronous=synchronous_mode(sqlite_synchronous), exclusive=exclusive
        )
    if scheme in ("redis", "rediss"):
        from bot.storage.redis_store import RedisStore  # only deployments with Redis need redis-py

        return RedisStore(url, prefix=prefix)
    raise ValueError(f"unsupported storage scheme {scheme!r}")
