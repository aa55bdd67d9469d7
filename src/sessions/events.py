"""Live events: numbered, kept in a bounded buffer, streamed to subscribers.

Every event has an increasing id, so a client that reconnects with `Last-Event-ID` gets what
it missed (as long as it is still in the buffer). The transcript stays the source of truth.

A hub with a `relay` does not number what is published: it hands each event to the relay
(switchboard's shared events on PostgreSQL), which numbers it and hands it back with `deliver`,
so that every process streams the same events under the same ids.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class LiveEvent:
    id: int
    name: str
    at: str
    data: dict[str, Any]


class EventHub:
    """In-process publish/subscribe with replay from an id."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self.relay: Callable[[str, str, dict[str, Any]], None] | None = None  # (name, at, data)
        self._buffer: deque[LiveEvent] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._watched = False  # whether a stream waits on _changed

    def publish(self, name: str, data: dict[str, Any]) -> LiveEvent | None:
        """Number and stream an event; with a relay, hand it over (None: numbered later)."""
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if self.relay is not None:
            self.relay(name, at, data)
            return None
        return self.deliver(LiveEvent(next(self._ids), name, at, data))

    def deliver(self, event: LiveEvent) -> LiveEvent:
        """Stream an event numbered elsewhere (ids increase, as with `publish`)."""
        self._buffer.append(event)
        if self._watched:  # wake the streams; with none, a flood of events costs no more
            self._changed.set()
            self._changed = asyncio.Event()
            self._watched = False
        return event

    @property
    def last_id(self) -> int:
        """The id of the newest event, 0 before the first."""
        return self._buffer[-1].id if self._buffer else 0

    def since(self, last_id: int) -> list[LiveEvent]:
        return [e for e in self._buffer if e.id > last_id]

    async def stream(self, last_id: int = 0, heartbeat: float = 15.0
                     ) -> AsyncIterator[LiveEvent | None]:
        """Events after `last_id`, forever; None every `heartbeat` seconds of silence."""
        while True:
            waiter = self._changed
            self._watched = True
            pending = self.since(last_id)
            for event in pending:
                last_id = event.id
                yield event
            if pending:
                continue
            try:
                await asyncio.wait_for(waiter.wait(), heartbeat)
            except TimeoutError:
                yield None
