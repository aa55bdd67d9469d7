"""Live events shared through the database, for processes that do not share memory."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select

from switchboard.models import SharedEvent as SharedEventRow
from switchboard.store.database import Database
from switchboard.store.records import SharedEvent

events: Any = SharedEventRow.__table__
ADD = insert(events)
AFTER = (select(events.c.id, events.c.origin, events.c.name, events.c.data)
         .where(events.c.id > bindparam("last")).order_by(events.c.id).limit(bindparam("limit")))
AFTER_OR_LATE = (select(events.c.id, events.c.origin, events.c.name, events.c.data)
                 .where((events.c.id > bindparam("last"))
                        | events.c.id.in_(bindparam("late", expanding=True)))
                 .order_by(events.c.id).limit(bindparam("limit")))


class LiveEventStore:
    """`store.live`: the shared live-events table every `serve` follows (see feed.py)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def share(self, origin: str, name: str, data: dict[str, Any]) -> None:
        """Write a live event for the other processes on this database to stream."""
        row = {"at": self.db.clock.now(), "origin": origin, "name": name, "data": data}
        await self.db.run_tx(lambda db: db.connection().execute(ADD, row))

    async def last_id(self) -> int:
        """The newest shared event's id (0 when there is none): where a follower starts."""
        return await self.db.run_tx(
            lambda db: db.connection().execute(select(func.max(events.c.id))).scalar() or 0)

    async def after(self, after: int, late: Collection[int] = (), limit: int = 500
                    ) -> list[SharedEvent]:
        """Shared events with an id after `after`, and those of the `late` ids that exist now,
        oldest first."""
        params: dict[str, Any] = {"last": after, "limit": limit}
        if late:
            params["late"] = list(late)
        statement = AFTER_OR_LATE if late else AFTER
        rows = await self.db.run_tx(
            lambda db: list(db.connection().execute(statement, params).all()))
        return [SharedEvent(row.id, row.origin, row.name, dict(row.data or {})) for row in rows]

    async def prune(self, up_to: int) -> None:
        """Forget shared events up to an id every follower has read long ago."""
        await self.db.run_tx(
            lambda db: db.connection().execute(delete(events).where(events.c.id <= up_to)))
