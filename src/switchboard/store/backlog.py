"""Turns waiting in the database for room in this process's queue (`queued`, work.py): read
back oldest first, a batch per query, so a flood of acknowledged turns never has to be held in
memory."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, or_, update
from sqlmodel import Session, select

from switchboard.models import Turn, TurnEvent, Worker
from switchboard.store.database import Database
from switchboard.store.records import TurnRecord, load


class BacklogStore:
    """`store.backlog`: this process's `queued` turns."""

    def __init__(self, db: Database, worker: str | None) -> None:
        self.db = db
        self.worker = worker

    async def adopt(self, stale_after: timedelta) -> int:
        """Make this process the owner of the `queued` turns of processes that died (no
        heartbeat for `stale_after`); how many. They are read back with this process's own,
        oldest first. Conditional on the old owner: of several processes, one gets each."""
        cutoff = self.db.naive(self.db.clock.now() - stale_after)
        turns, workers = Turn.__table__, Worker.__table__

        def work(db: Session) -> int:
            connection = db.connection()
            owners = connection.execute(
                select(turns.c.owner).distinct()
                .select_from(turns.outerjoin(workers, workers.c.id == turns.c.owner))
                .where(turns.c.status == "queued",
                       or_(turns.c.owner.is_(None), workers.c.id.is_(None),
                           workers.c.heartbeat_at < cutoff))).scalars().all()
            adopted = 0
            for owner in owners:
                owned = turns.c.owner.is_(None) if owner is None else turns.c.owner == owner
                adopted += connection.execute(update(turns).where(
                    turns.c.status == "queued", owned).values(owner=self.worker)).rowcount
            return adopted

        return await self.db.run_tx(work)

    async def take(self, limit: int) -> list[TurnRecord]:
        """Up to `limit` of this process's `queued` turns, oldest first, now `pending` (each
        with a `refilled` event). A turn another process took over meanwhile (this one looked
        dead) is left to it: the update is conditional on the owner."""
        now = self.db.clock.now()
        turns_table = Turn.__table__

        def work(db: Session) -> list[TurnRecord]:
            connection = db.connection()
            rows = connection.execute(
                select(turns_table).where(turns_table.c.status == "queued",
                                          turns_table.c.owner == self.worker)
                .order_by(turns_table.c.received_at, turns_table.c.id).limit(limit)).all()
            if not rows:
                return []
            turns = [load(TurnRecord, row) for row in rows]
            ids = [turn.id for turn in turns]
            taken = connection.execute(update(turns_table).where(
                turns_table.c.id.in_(ids), turns_table.c.status == "queued",
                turns_table.c.owner == self.worker).values(status="pending"))
            if taken.rowcount != len(ids):
                mine = set(connection.execute(select(turns_table.c.id).where(
                    turns_table.c.id.in_(ids), turns_table.c.owner == self.worker)).scalars())
                turns = [turn for turn in turns if turn.id in mine]
            if turns:
                connection.execute(insert(TurnEvent.__table__), [
                    {"turn_id": turn.id, "at": now, "name": "refilled",
                     "detail": {"worker": self.worker}} for turn in turns])
            return turns

        return await self.db.run_tx(work)
