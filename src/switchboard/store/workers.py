"""The `serve` processes sharing the database: each says it is alive, so what a dead one left
unanswered can be taken over (`TurnStore.claim_orphans`)."""

from __future__ import annotations

from sqlalchemy import delete, update

from switchboard.models import Worker
from switchboard.store.database import Database


class WorkerStore:
    """`store.workers`: this process's row in the workers table."""

    def __init__(self, db: Database, worker: str | None) -> None:
        self.db = db
        self.worker = worker

    async def register(self) -> None:
        now = self.db.clock.now()
        async with self.db.tx() as db:
            db.add(Worker(id=self.worker, started_at=now, heartbeat_at=now))

    async def heartbeat(self) -> None:
        async with self.db.tx() as db:
            await db.exec(update(Worker).where(Worker.id == self.worker).values(
                heartbeat_at=self.db.clock.now()))

    async def retire(self) -> None:
        async with self.db.tx() as db:
            await db.exec(delete(Worker).where(Worker.id == self.worker))
