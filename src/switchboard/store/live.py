"""Live events shared through the database, for processes that do not share memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, text

from switchboard.models import SharedEvent as SharedEventRow
from switchboard.store.database import Database
from switchboard.store.records import SharedEvent

events: Any = SharedEventRow.__table__
COLUMNS = (events.c.id, events.c.origin, events.c.name, events.c.data, events.c.at)
ADD = insert(events)
AFTER = (select(*COLUMNS)
         .where(events.c.id > bindparam("last")).order_by(events.c.id).limit(bindparam("limit")))
AFTER_OR_LATE = (select(*COLUMNS)
                 .where((events.c.id > bindparam("last"))
                        | events.c.id.in_(bindparam("late", expanding=True)))
                 .order_by(events.c.id).limit(bindparam("limit")))
NEWEST = select(*COLUMNS).order_by(events.c.id.desc()).limit(bindparam("limit"))
# PostgreSQL: writers take this lock before their ids, so ids commit in the order they are
# handed out and a follower reading `id > last` never passes one that commits later.
IN_ORDER = text("SELECT pg_advisory_xact_lock(7395021)")
CHANNEL = "switchboard_live"
NOTIFY = text(f"NOTIFY {CHANNEL}")  # sent at commit; the followers LISTEN (feed.py)


class LiveEventStore:
    """`store.live`: the shared live-events table every `serve` follows (see feed.py)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def share(self, origin: str, name: str, data: dict[str, Any]) -> None:
        """Write a live event for the other processes on this database to stream."""
        await self.share_many(origin, [(name, self.db.clock.now(), data)])

    async def share_many(self, origin: str,
                         batch: Sequence[tuple[str, datetime, dict[str, Any]]]) -> None:
        """Write many live events, in order, in one transaction (one multi-row INSERT)."""
        rows = [{"at": at, "origin": origin, "name": name, "data": data}
                for name, at, data in batch]
        if not rows:
            return

        def work(db: Any) -> None:
            connection = db.connection()
            if not self.db.is_sqlite:
                connection.execute(IN_ORDER)
            connection.execute(ADD, rows)
            if not self.db.is_sqlite:
                connection.execute(NOTIFY)

        await self.db.run_tx(work)

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
        return [_event(row) for row in rows]

    async def newest(self, limit: int) -> list[SharedEvent]:
        """The newest `limit` shared events, oldest first (what a starting process replays)."""
        rows = await self.db.run_tx(
            lambda db: list(db.connection().execute(NEWEST, {"limit": limit}).all()))
        return [_event(row) for row in reversed(rows)]

    async def prune(self, up_to: int) -> None:
        """Forget shared events up to an id every follower has read long ago."""
        await self.db.run_tx(
            lambda db: db.connection().execute(delete(events).where(events.c.id <= up_to)))


def _event(row: Any) -> SharedEvent:
    return SharedEvent(row.id, row.origin, row.name, dict(row.data or {}), row.at)
