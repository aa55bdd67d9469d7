"""Live events from other processes: each `serve` follows the shared-events table into its hub.

On SQLite (one `serve`), a session action taken by `switchboard sessions …` is written to the
table; `serve` reads what is new about twice a second (an indexed `id > :last` query) and
publishes it on its own `/api/events` streams. Events a process publishes itself reach its
streams directly and are skipped here.

On PostgreSQL the table carries every event (live_shared.py): the hub relays what this process
publishes to a batched writer, and this feed, woken by NOTIFY (or every `interval` without it),
streams every new row, this process's own too, under the row's id. Starting, it replays the
newest rows into the hub, so a client resumes with `Last-Event-ID` across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC
from typing import Any

from sessions.events import EventHub, LiveEvent
from switchboard.live_shared import LiveWriter, listen
from switchboard.store import Store
from switchboard.store.records import SharedEvent

log = logging.getLogger(__name__)
LIMIT = 500  # rows per read; a longer backlog is read in several


class IdCursor:
    """Where a follower is in ids that may commit out of order (a PostgreSQL sequence hands
    out 7 then 8, and 8 may commit first): ids skipped over are looked for again for a while."""

    def __init__(self, last: int, wait: float = 5.0, most: int = 1000) -> None:
        self.last = last
        self.late: dict[int, float] = {}  # an id skipped over -> when to stop looking for it
        self.wait = wait
        self.most = most  # a larger jump is a gap (rollbacks, a sequence cache), not late rows

    def take(self, ids: list[int], now: float) -> list[int]:
        """The ids of a read that are new to this follower, oldest first."""
        new = []
        for ident in sorted(ids):
            if ident > self.last:
                if ident - self.last - 1 <= self.most:
                    for skipped in range(self.last + 1, ident):
                        self.late[skipped] = now + self.wait
                self.last = ident
                new.append(ident)
            elif self.late.pop(ident, None) is not None:
                new.append(ident)
        for ident, until in list(self.late.items()):
            if until <= now:
                del self.late[ident]
        return new


class EventFeed:
    """Follows the shared events of other processes into this process's EventHub."""

    def __init__(self, store: Store, hub: EventHub, origin: str, interval: float = 0.5,
                 keep: float = 300.0,
                 react: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """`react(name, data)` is told of each event of another process too, for what this
        process does about it (an interaction answered from the CLI: its turn, its buttons)."""
        self.store = store
        self.hub = hub
        self.origin = origin
        self.react = react
        self.interval = interval
        self.keep = keep  # seconds a read event stays in the table for slower followers
        self.cursor: IdCursor | None = None
        self._read: deque[tuple[float, int]] = deque()  # (when, cursor) to prune up to later
        self.shared = not store.db.is_sqlite
        self.writer = LiveWriter(store, origin) if self.shared else None
        self.wake = asyncio.Event()  # set by NOTIFY: read now
        self._tasks: list[asyncio.Task[None]] = []
        if self.writer is not None:
            hub.relay = self.writer.add

    async def start(self) -> None:
        """Begin after what is already there: a new process streams what happens from now
        (shared: with the newest events replayed, for clients that resume)."""
        if not self.shared:
            self.cursor = IdCursor(await self.store.live.last_id())
            return
        replayed = await self.store.live.newest(self.hub.keep)
        for row in replayed:
            self.hub.deliver(_live(row))
        self.cursor = IdCursor(replayed[-1].id if replayed else await self.store.live.last_id())

    async def poll(self) -> int:
        """Publish what other processes shared since the last poll; how many events."""
        assert self.cursor is not None, "start() first"
        cursor = self.cursor
        published = 0
        while True:
            rows = await self.store.live.after(cursor.last, cursor.late, limit=LIMIT)
            now = time.monotonic()
            fresh = set(cursor.take([row.id for row in rows], now))
            for row in rows:
                if row.id not in fresh:
                    continue
                if self.shared:
                    self.hub.deliver(_live(row))
                elif row.origin != self.origin:
                    self.hub.publish(row.name, row.data)
                else:
                    continue
                published += 1
                if self.react is not None and row.origin != self.origin:
                    try:
                        self.react(row.name, row.data)
                    except Exception:
                        log.exception("reacting to the shared event %s failed", row.name)
            if len(rows) < LIMIT:
                break
        await self._prune(now)
        return published

    async def _prune(self, now: float) -> None:
        assert self.cursor is not None
        if not self._read or self._read[-1][0] <= now - 60:
            self._read.append((now, self.cursor.last))
        up_to = None
        while self._read and self._read[0][0] <= now - self.keep:
            up_to = self._read.popleft()[1]
        if up_to:
            await self.store.live.prune(up_to)

    async def run(self) -> None:
        """Poll forever (a background task of `serve`); shared, write and LISTEN too."""
        if self.cursor is None:
            await self.start()
        if self.writer is not None:
            self._tasks = [asyncio.create_task(self.writer.run()),
                           asyncio.create_task(listen(self.store, self.wake))]
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.interval)
                self.wake.clear()
                try:
                    await self.poll()
                except Exception:
                    log.exception("reading shared live events failed")
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Write what this process published and has not written yet (the writer's task is
        cancelled with run's)."""
        if self.writer is not None and self.writer.pending:
            try:
                await self.writer.flush()
            except Exception:
                log.exception("writing the last shared live events failed")


def _live(row: SharedEvent) -> LiveEvent:
    at = row.at.astimezone(UTC).isoformat().replace("+00:00", "Z") if row.at else ""
    return LiveEvent(row.id, row.name, at, row.data)
