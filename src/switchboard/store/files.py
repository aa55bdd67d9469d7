"""`store.files`: the metadata of every file of a turn, the timeline of what happened to each,
and the delivery leases of the agent's files (as the outbox leases replies)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlmodel import col, select

from switchboard.models import Cursor, StoredFile, TurnEvent, new_id
from switchboard.store.database import Database
from switchboard.store.records import load

SECRET_ACCOUNT, SECRET_NAME = "switchboard", "files_url_secret"


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file of a turn as kept: in (a person sent it) or out (the agent made it)."""

    id: str
    turn_id: str
    session_id: str | None
    provider: str
    account: str
    direction: str
    position: int
    name: str
    type: str
    size: int | None
    sha256: str | None
    status: str
    reason: str | None
    ref: dict[str, Any]
    attempts: int
    next_attempt_at: datetime | None
    claimed_until: datetime | None
    provider_file_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class NewFile:
    """A file to record: where it belongs, what it is, and how far it got."""

    turn_id: str
    provider: str
    account: str
    direction: str
    position: int
    name: str
    type: str
    size: int | None
    status: str
    sha256: str | None = None
    reason: str | None = None
    ref: dict[str, Any] | None = None
    session_id: str | None = None


class FileRows:
    """`store.files`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock

    async def add(self, files: list[NewFile], event: str | None = None,
                  hold: timedelta | None = None) -> list[FileRecord]:
        """Record files (with one timeline event per file named `event`). The agent's files
        are due for the sweep only after `hold`: their first attempt is the journey's, after
        the reply's (`claim(first=True)`); a process dying before it leaves them to others."""
        now = self.clock.now()
        due = now + (hold or timedelta(0))

        def work(db: Any) -> list[FileRecord]:
            rows = []
            for new in files:
                row = StoredFile(id=new_id("file"), turn_id=new.turn_id,
                                 session_id=new.session_id, provider=new.provider,
                                 account=new.account, direction=new.direction,
                                 position=new.position, name=new.name, type=new.type,
                                 size=new.size, sha256=new.sha256, status=new.status,
                                 reason=new.reason, ref=new.ref or {}, attempts=0,
                                 next_attempt_at=due if new.direction == "out" else None,
                                 created_at=now)
                db.add(row)
                rows.append(row)
                if event:
                    db.add(TurnEvent(turn_id=new.turn_id, at=now, name=event,
                                     detail=_detail(row)))
            db.flush()
            return [load(FileRecord, row) for row in rows]

        return await self.db.run_tx(work)

    async def settled(self, file_id: str, *, status: str, sha256: str | None = None,
                      size: int | None = None, reason: str | None = None,
                      attempts: int = 0, event: str) -> None:
        """An inbound file fetched (`stored`), skipped or given up (`failed`), on its turn's
        timeline."""
        now = self.clock.now()

        def work(db: Any) -> None:
            row = db.get(StoredFile, file_id)
            if row is None:
                return
            row.status, row.reason, row.attempts = status, reason, attempts
            if sha256 is not None:
                row.sha256, row.size = sha256, size
            db.add(TurnEvent(turn_id=row.turn_id, at=now, name=event, detail=_detail(row)))

        await self.db.run_tx(work)

    async def note(self, turn_id: str, name: str, detail: dict[str, Any]) -> None:
        """One more step of a file on its turn's timeline (a retried fetch)."""
        now = self.clock.now()

        def work(db: Any) -> None:
            db.add(TurnEvent(turn_id=turn_id, at=now, name=name, detail=detail))

        await self.db.run_tx(work)

    async def get(self, file_id: str) -> FileRecord | None:
        async with self.db.tx() as db:
            row = await db.get(StoredFile, file_id)
            return load(FileRecord, row) if row is not None else None

    async def of_turns(self, turn_ids: list[str]) -> list[FileRecord]:
        async with self.db.tx() as db:
            rows = await db.exec(select(StoredFile).where(col(StoredFile.turn_id).in_(turn_ids))
                                 .order_by(col(StoredFile.created_at), col(StoredFile.position)))
            return [load(FileRecord, row) for row in rows.all()]

    async def of_session(self, session_id: str) -> list[FileRecord]:
        async with self.db.tx() as db:
            rows = await db.exec(select(StoredFile).where(StoredFile.session_id == session_id)
                                 .order_by(col(StoredFile.created_at), col(StoredFile.position)))
            return [load(FileRecord, row) for row in rows.all()]

    async def set_session(self, turn_ids: list[str], session_id: str) -> None:
        """The inbound files of turns now routed to a session belong to it."""
        async with self.db.tx() as db:
            await db.exec(update(StoredFile).where(col(StoredFile.turn_id).in_(turn_ids))
                          .values(session_id=session_id))

    async def drop_unsent(self, turn_id: str) -> set[str]:
        """Forget the agent's files an earlier run kept for this turn but never got to record
        its reply with (a crash in between: the agent answers again); their blobs if unshared."""
        return await self._forget((StoredFile.turn_id == turn_id)  # type: ignore[arg-type]
                                  & (StoredFile.direction == "out")  # type: ignore[arg-type]
                                  & (col(StoredFile.attempts) == 0))

    # --- delivery of the agent's files -----------------------------------------------------

    async def due(self, limit: int = 100) -> list[str]:
        """Outbound files ready for an attempt: pending or retrying, due, not leased."""
        now = self.db.naive(self.clock.now())
        async with self.db.tx() as db:
            rows = await db.exec(select(StoredFile.id).where(
                StoredFile.direction == "out",
                col(StoredFile.status).in_(("pending", "retrying")),
                col(StoredFile.next_attempt_at) <= now,
                or_(col(StoredFile.claimed_until).is_(None), col(StoredFile.claimed_until) < now),
            ).order_by(col(StoredFile.next_attempt_at)).limit(limit))
            return list(rows.all())

    async def claim(self, file_id: str, lease: timedelta, *,
                    first: bool = False) -> FileRecord | None:
        """Lease one outbound file for one attempt (a conditional UPDATE is the lock);
        `first`: the journey's first attempt, which need not wait for the sweep's hold."""
        now = self.clock.now()
        naive = self.db.naive
        due = col(StoredFile.next_attempt_at) <= naive(now)
        if first:
            due = or_(due, col(StoredFile.attempts) == 0)
        async with self.db.tx() as db:
            result = await db.exec(update(StoredFile).where(
                col(StoredFile.id) == file_id, col(StoredFile.status).in_(("pending", "retrying")),
                due,
                or_(col(StoredFile.claimed_until).is_(None),
                    col(StoredFile.claimed_until) < naive(now)),
            ).values(claimed_until=now + lease, attempts=StoredFile.attempts + 1))
            if result.rowcount != 1:
                return None
            row = await db.get(StoredFile, file_id)
            return load(FileRecord, row) if row is not None else None

    async def delivered(self, file: FileRecord, provider_file_id: str,
                        detail: dict[str, Any]) -> None:
        await self._attempted(file, "delivered", None, provider_file_id, "file_delivered",
                              detail)

    async def delivery_failed(self, file: FileRecord, error: str,
                              retry_at: datetime | None) -> None:
        status = "failed" if retry_at is None else "retrying"
        name = "file_delivery_failed" if retry_at is None else "file_delivery_retry"
        extra = {"retry_at": retry_at.isoformat()} if retry_at else {}
        await self._attempted(file, status, error, None, name, extra, retry_at)

    async def _attempted(self, file: FileRecord, status: str, error: str | None,
                         provider_file_id: str | None, event: str, detail: dict[str, Any],
                         retry_at: datetime | None = None) -> None:
        now = self.clock.now()

        def work(db: Any) -> None:
            row = db.get(StoredFile, file.id)
            if row is None:
                return
            row.status, row.reason, row.claimed_until = status, error, None
            row.provider_file_id = provider_file_id or row.provider_file_id
            row.next_attempt_at = retry_at or now
            db.add(TurnEvent(turn_id=row.turn_id, at=now, name=event, detail={
                **_detail(row), "attempt": file.attempts,
                **({"provider_file_id": provider_file_id} if provider_file_id else {}),
                **({"error": error} if error else {}), **detail}))

        await self.db.run_tx(work)

    # --- retention -------------------------------------------------------------------------

    async def forget_session(self, session_id: str) -> set[str]:
        """Delete the rows of a session's files; the blobs nothing references any more."""
        return await self._forget(StoredFile.session_id == session_id)  # type: ignore[arg-type]

    async def forget_older(self, before: datetime) -> set[str]:
        """Delete rows older than `before` (the `files.retention` sweep); unreferenced blobs."""
        return await self._forget(col(StoredFile.created_at) < self.db.naive(before))

    async def _forget(self, where: Any) -> set[str]:
        async with self.db.tx() as db:
            shas = {sha for sha in (await db.exec(select(StoredFile.sha256).where(where))).all()
                    if sha}
            await db.exec(delete(StoredFile).where(where))
            if not shas:
                return set()
            still = (await db.exec(select(StoredFile.sha256).where(
                col(StoredFile.sha256).in_(shas)))).all()
            return shas - set(still)

    async def referenced(self, sha256: str) -> bool:
        async with self.db.tx() as db:
            return (await db.exec(select(func.count()).select_from(StoredFile).where(
                StoredFile.sha256 == sha256))).one() > 0

    async def bytes_stored(self) -> int:
        """Bytes of the distinct blobs the rows reference."""
        async with self.db.tx() as db:
            inner = select(StoredFile.sha256, func.max(StoredFile.size).label("size")).where(
                col(StoredFile.sha256).is_not(None)).group_by(StoredFile.sha256).subquery()
            return int((await db.exec(select(func.coalesce(func.sum(inner.c.size), 0)))).one())

    # --- the signing secret ------------------------------------------------------------------

    async def url_secret(self, fresh: str) -> str:
        """The secret that signs download links, the same for every process on the database:
        `fresh` is kept when none is yet."""
        stmt = self.db.insert(Cursor).values(account=SECRET_ACCOUNT, name=SECRET_NAME,
                                             value=fresh).on_conflict_do_nothing()
        async with self.db.tx() as db:
            await db.exec(stmt)
            row = await db.get(Cursor, (SECRET_ACCOUNT, SECRET_NAME))
            return row.value if row is not None else fresh


def _detail(row: StoredFile) -> dict[str, Any]:
    detail: dict[str, Any] = {"file_id": row.id, "name": row.name, "type": row.type,
                              "size": row.size, "direction": row.direction}
    if row.reason:
        detail["reason"] = row.reason
    if row.sha256:
        detail["sha256"] = row.sha256
    return detail


__all__ = ["FileRecord", "FileRows", "NewFile"]
