"""Webhook mode with Redis: every update goes through one Redis Stream shared by the replicas.

The webhook appends the update (`XADD`) before it answers 200, so a replica that dies after
answering loses nothing. Every replica reads through one consumer group (`XREADGROUP`), so each
entry goes to one of them; it acknowledges (`XACK`) once the reply is delivered. While it works
on an entry it renews its hold every third of the lease (`XCLAIM` to itself); an entry idle
for longer than the lease belonged to a replica that died and is taken over (`XAUTOCLAIM`).
The same `update_id` is appended once (a `SET NX` marker in the same script as the `XADD`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError
from telegram import Bot, Update

from bot.requests.journal import SEEN_TTL, RequestJournal, recordable
from bot.storage.base import StorageUnavailable

logger = logging.getLogger(__name__)

GROUP = "bot"
# Append an update unless its id was appended before: both or neither.
_APPEND = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'update', ARGV[2])
end
return false
"""


def consumer_name() -> str:
    """This replica's name in the consumer group (host and process: unique per process)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class UpdateStream:
    """Appends webhook updates to the stream and feeds this replica's share to the bot."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        lease: float,
        journal: RequestJournal,
        bot: Bot,
        max_attempts: int,
        timeout: float = 2.0,
    ) -> None:
        self._redis: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=max(timeout, 3.0),
            socket_connect_timeout=timeout,
            health_check_interval=15,
            decode_responses=True,
        )
        self._stream = f"{prefix}updates"
        self._seen = f"{prefix}seen:"
        self._notes = f"{prefix}inbox:notes"  # RedisStore.note_update's hash
        self._append = self._redis.register_script(_APPEND)
        self._lease_ms = max(1, int(lease * 1000))
        self._lease = lease
        self._journal = journal
        self._bot = bot
        self._max_attempts = max_attempts
        self.consumer = consumer_name()
        # Entries this replica holds (stream id -> update id), renewed until acknowledged.
        self._held: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def append(self, update: Update, body: str) -> bool:
        """Add an update to the stream; False if its id was added before (a repeat)."""
        keys = [f"{self._seen}{update.update_id}", self._stream]
        args: list[str | int] = [int(SEEN_TTL * 1000), body]
        try:
            added = await self._append(keys=keys, args=args)
        except (RedisError, OSError) as err:
            raise StorageUnavailable(f"Redis XADD failed: {type(err).__name__}") from err
        return added is not None

    async def start(self, enqueue: Callable[[Update], Awaitable[None]]) -> None:
        """Start reading this replica's share and taking over dead replicas' entries."""
        self._tasks = [
            asyncio.create_task(self._read(enqueue), name="stream-read"),
            asyncio.create_task(self._keep(enqueue), name="stream-keep"),
        ]

    async def stop(self) -> None:
        """Stop taking entries (those held stay pending for a replica or the next start)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def aclose(self) -> None:
        """Stop and close the connection pool."""
        await self.stop()
        await self._redis.aclose()

    async def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def _read(self, enqueue: Callable[[Update], Awaitable[None]]) -> None:
        group_ready = False
        while True:
            try:
                if not group_ready:
                    await self._ensure_group()
                    group_ready = True
                found: Any = await self._redis.xreadgroup(
                    GROUP, self.consumer, {self._stream: ">"}, count=50, block=1000
                )
                for _stream, entries in found or []:
                    for entry_id, fields in entries:
                        await self._take(entry_id, fields, 1, enqueue)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as err:
                # NOGROUP after Redis lost its data: create the group again.
                group_ready = False
                logger.warning("Reading the update stream failed: %s", type(err).__name__)
                await asyncio.sleep(1.0)
            except Exception:
                logger.exception("Unexpected error reading the update stream")
                await asyncio.sleep(1.0)

    async def _keep(self, enqueue: Callable[[Update], Awaitable[None]]) -> None:
        """Renew our holds and take over entries whose holder stopped renewing them."""
        interval = max(0.2, self._lease / 3)
        while True:
            try:
                await asyncio.sleep(interval)
                if self._held:
                    # Claiming our own entries resets their idle time: still alive.
                    await self._redis.xclaim(
                        self._stream,
                        GROUP,
                        self.consumer,
                        0,
                        list(self._held),
                        justid=True,
                    )
                await self._take_over(enqueue)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as err:
                logger.warning("Keeping the update stream failed: %s", type(err).__name__)
            except Exception:
                logger.exception("Unexpected error keeping the update stream")

    async def _take_over(self, enqueue: Callable[[Update], Awaitable[None]]) -> None:
        start = "0-0"
        while True:
            answer: Any = await self._redis.xautoclaim(
                self._stream, GROUP, self.consumer, self._lease_ms, start_id=start, count=50
            )
            start, claimed = answer[0], answer[1]
            for entry_id, fields in claimed:
                if fields is None:
                    continue
                pending = await self._redis.xpending_range(
                    self._stream, GROUP, min=entry_id, max=entry_id, count=1
                )
                deliveries = int(pending[0]["times_delivered"]) if pending else 1
                logger.warning(
                    "Took over update stream entry %s (delivery %d) from a replica that stopped",
                    entry_id,
                    deliveries,
                )
                await self._take(entry_id, fields, deliveries, enqueue)
            if start == "0-0":
                return

    async def _take(
        self,
        entry_id: str,
        fields: dict[str, str],
        deliveries: int,
        enqueue: Callable[[Update], Awaitable[None]],
    ) -> None:
        try:
            update = Update.de_json(json.loads(fields["update"]), self._bot)
        except (KeyError, ValueError, TypeError):
            logger.error("Dropping unreadable update stream entry %s", entry_id)
            await self._ack(entry_id)
            return
        if update.update_id in self._held.values():
            return  # already ours
        if not recordable(update):
            # Inline queries: answered in seconds or never (see bot.requests.journal.recordable).
            await self._ack(entry_id)
            await enqueue(update)
            return
        # The first delivery plus up to `max_attempts` take-overs, as with resumed records.
        if deliveries > self._max_attempts + 1:
            logger.warning("Giving up update %s after %d deliveries", update.update_id, deliveries)
            await self._journal.give_up(update)
            await self._ack(entry_id)
            return
        self._held[entry_id] = update.update_id
        sent: list[str] = []
        if deliveries > 1:
            # The status message the dead replica posted (the journal notes it in the store).
            note = await self._redis.hget(self._notes, str(update.update_id))
            sent = await self._journal.delete_status_messages(None if note is None else str(note))

        async def done() -> None:
            await self._ack(entry_id)

        self._journal.queued(update, on_done=done, sent=sent)
        await enqueue(update)

    async def _ack(self, entry_id: str) -> None:
        update_id = self._held.pop(entry_id, None)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self._stream, GROUP, entry_id)
                pipe.xdel(self._stream, entry_id)
                if update_id is not None:  # its status note is of no use once answered
                    pipe.hdel(self._notes, str(update_id))
                await pipe.execute()
        except (RedisError, OSError) as err:
            # Redelivered after the lease: the update id marker does not stop that, but the
            # next replica's reply would be a second one. Log loudly; Redis is down anyway.
            logger.error("Could not acknowledge update stream entry %s: %s", entry_id, err)
