"""Account health (last traffic, last error, rejected webhook requests) and account cursors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import bindparam, func
from sqlmodel import select

from switchboard.models import AccountHealth as HealthRow
from switchboard.models import Cursor, RejectedCount, Turn
from switchboard.rejections import Key, RejectionCounter
from switchboard.store import fast
from switchboard.store.database import Database
from switchboard.store.records import AccountHealth, aware

_HEALTH_UPSERTS: dict[tuple[bool, tuple[str, ...]], Any] = {}
# A delivery's `last_outbound_at` is written at most this often per account and process: every
# delivery would otherwise update the account's one row, and on PostgreSQL concurrent deliveries
# (of one process's connection pool, or of several processes) wait for each other's commit on
# its row lock.
OUTBOUND_EVERY = 1.0


class AccountStore:
    """`store.accounts`: what operators see of each account's traffic and trouble."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock
        self.rejections = RejectionCounter()
        # held from reading the counts to writing them, and by `health` while it reads both:
        # otherwise a read between the write's commit and `written` missed the batch
        self._counting = asyncio.Lock()
        self._outbound_noted: dict[str, float] = {}  # account -> monotonic time of the last write

    def count_rejected(self, account: str, reason: str) -> None:
        """Count a request that never became a turn (bad signature, stale, too big, ...): in
        memory, microseconds; `flush_rejected` writes the counts."""
        self.rejections.note(account, reason)

    async def note_rejected(self, account: str, reason: str) -> None:
        """`count_rejected` for callers that await it (the SMTP side)."""
        self.rejections.note(account, reason)

    async def flush_rejected(self) -> dict[Key, int]:
        """Add the counts not yet written to the database (additively: several processes
        sharing one database add up); returns what was written."""
        async with self._counting:
            return await self._flush_rejected()

    async def _flush_rejected(self) -> dict[Key, int]:
        batch = self.rejections.take()
        if not batch:
            return batch
        now = self.clock.now()
        table: Any = RejectedCount.__table__
        stmt = self.db.insert(table).values([
            {"account": account, "reason": reason, "count": count, "last_at": now}
            for (account, reason), count in sorted(batch.items())])
        stmt = stmt.on_conflict_do_update(
            index_elements=["account", "reason"],
            set_={"count": table.c.count + stmt.excluded["count"],
                  "last_at": stmt.excluded["last_at"]})
        try:
            async with self.db.tx() as db:
                await db.exec(stmt)
        except BaseException:  # cancelled or failed: nothing is lost, the next flush has them
            self.rejections.restore(batch)
            raise
        self.rejections.written(batch)
        return batch

    def note_traffic_in(self, db: Any, account: str, *, inbound: bool = False,
                        outbound: bool = False, error: str | None = None) -> None:
        """Account health, written inside the caller's transaction. A success alone
        (`outbound`) is written at most every OUTBOUND_EVERY seconds per account, so the last
        outbound time may be that much behind."""
        if outbound and not inbound and error is None:
            tick = time.monotonic()
            if tick - self._outbound_noted.get(account, -OUTBOUND_EVERY) < OUTBOUND_EVERY:
                return
            self._outbound_noted[account] = tick
        elif error is not None:
            self._outbound_noted.pop(account, None)  # the next success is written at once
        now = self.clock.now()
        values: dict[str, Any] = {}
        if inbound:
            values["last_inbound_at"] = now
        if outbound:
            values["last_outbound_at"] = now
        if error is not None:
            values.update(last_error=error, last_error_at=now)
        fast.execute(db, self._health_upsert(tuple(values)), {
            "v_account": account, **{f"v_{name}": value for name, value in values.items()}})

    def _health_upsert(self, columns: tuple[str, ...]) -> Any:
        """The account-health upsert setting `columns`, built once per dialect and column set
        (it runs with every delivery)."""
        key = (self.db.is_sqlite, columns)
        if (stmt := _HEALTH_UPSERTS.get(key)) is None:
            table: Any = HealthRow.__table__
            stmt = self.db.insert(table).values(
                account=bindparam("v_account"),
                **{name: bindparam(f"v_{name}", type_=table.c[name].type) for name in columns})
            stmt = _HEALTH_UPSERTS[key] = stmt.on_conflict_do_update(
                index_elements=["account"], set_={name: stmt.excluded[name] for name in columns})
        return stmt

    async def health(self) -> dict[str, AccountHealth]:
        """Each account the database has heard of, by name."""
        async with self._counting:
            async with self.db.tx() as db:
                health = {h.account: h for h in (await db.exec(select(HealthRow))).all()}
                rejected = (await db.exec(select(RejectedCount))).all()
                # the newest turn is the last inbound: no write per turn on the acknowledged
                # path
                inbound = dict((await db.exec(select(Turn.account, func.max(Turn.received_at))
                                              .group_by(Turn.account))).all())
            pending = self.rejections.pending()  # current, not a second behind
        counts = {(r.account, r.reason): r.count for r in rejected}
        for key, count in pending.items():
            counts[key] = counts.get(key, 0) + count
        by_account: dict[str, dict[str, int]] = {}
        for (account, reason), count in sorted(counts.items()):
            by_account.setdefault(account, {})[reason] = count
        out: dict[str, AccountHealth] = {}
        for account in sorted({*health, *inbound, *by_account}):
            row = health.get(account)
            out[account] = AccountHealth(
                account=account, last_inbound_at=aware(inbound.get(account)),
                last_outbound_at=aware(row.last_outbound_at) if row else None,
                last_error=row.last_error if row else None,
                last_error_at=aware(row.last_error_at) if row else None,
                rejected=by_account.get(account, {}))
        return out


class CursorStore:
    """`store.cursors`: small named positions of an account that must survive restarts (a
    long-polling offset)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, account: str, name: str) -> str | None:
        async with self.db.tx() as db:
            row = await db.get(Cursor, (account, name))
            return row.value if row else None

    async def set(self, account: str, name: str, value: str) -> None:
        stmt = self.db.insert(Cursor).values(account=account, name=name, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=["account", "name"],
                                          set_={"value": value})
        async with self.db.tx() as db:
            await db.exec(stmt)
