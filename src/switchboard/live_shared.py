"""Live events on PostgreSQL: every event any `serve` publishes goes through the shared table.

Each process's EventHub hands what it publishes to a `LiveWriter` (no database work where it is
published: the acknowledgement path only appends to a list); the writer's task writes everything
pending in one transaction (a multi-row INSERT under an advisory lock, so ids commit in order,
and a NOTIFY), and every process's feed (feed.py), woken by the NOTIFY, reads the new rows and
streams them under the table's ids. The ids are the same in every process and outlive them: a
client resumes with `Last-Event-ID` on any process, after a restart too. See docs/live-events.md.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from switchboard.store import Store
from switchboard.store.live import CHANNEL

log = logging.getLogger(__name__)
MOST_PENDING = 100_000  # beyond this (the database unreachable), the oldest are dropped
RETRY = 0.5
DELTA = "generation.delta"


class LiveWriter:
    """Batches the events this process publishes into the shared table."""

    def __init__(self, store: Store, origin: str) -> None:
        self.store = store
        self.origin = origin
        self.pending: list[tuple[str, datetime, dict[str, Any]]] = []
        self._last_of: dict[str, int] = {}  # turn id -> its newest pending event's index
        self._wake = asyncio.Event()
        self._dropped = 0

    def add(self, name: str, at: str, data: dict[str, Any]) -> None:
        """The hub's relay: queue an event (called on the event loop, where it is published).
        A `generation.delta` whose turn's last pending event is a delta joins it: under load
        a streamed reply is a few rows per batch, not one per token (same text, same order)."""
        turn = data.get("turn_id")
        last = self._last_of.get(turn) if turn else None
        if name == DELTA and last is not None and self.pending[last][0] == DELTA:
            _, first_at, first = self.pending[last]
            joined = first.get("delta", "") + data.get("delta", "")
            self.pending[last] = (DELTA, first_at, {**first, "delta": joined})
        else:
            self.pending.append((name, datetime.fromisoformat(at.replace("Z", "+00:00")), data))
            if turn:
                self._last_of[turn] = len(self.pending) - 1
        if len(self.pending) > MOST_PENDING:  # the oldest tenth goes at once
            drop = len(self.pending) - MOST_PENDING + MOST_PENDING // 10
            del self.pending[:drop]
            self._dropped += drop
            self._last_of.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Write what is pending (all of it, in one transaction)."""
        batch, self.pending = self.pending, []
        self._last_of.clear()
        try:
            await self.store.live.share_many(self.origin, batch)
        except BaseException:
            self.pending[:0] = batch  # in order, before what came meanwhile
            self._last_of.clear()
            raise

    async def run(self) -> None:
        """Write batches forever: while one is written the next gathers (a background task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._dropped:
                log.warning("live events: %d dropped while the database was unreachable",
                            self._dropped)
                self._dropped = 0
            try:
                await self.flush()
            except Exception:
                log.exception("writing shared live events failed; retrying")
                self._wake.set()
                await asyncio.sleep(RETRY)


def conninfo(store: Store) -> str:
    """The libpq connection string of the store's PostgreSQL database (for LISTEN)."""
    url = store.db.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def listen(store: Store, wake: asyncio.Event) -> None:
    """Set `wake` on each NOTIFY of the shared table, forever (reconnecting when cut)."""
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo(store),
                                                             autocommit=True) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                wake.set()  # read what came while not listening
                async for _ in connection.notifies():
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the feed's polls go on meanwhile
            log.warning("listening for shared live events failed (%s); retrying",
                        type(error).__name__)
        await asyncio.sleep(1.0)
