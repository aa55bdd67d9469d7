"""Account health, rejected webhook requests, generated operator tokens and cursors."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select

from switchboard.models import AccountHealth, Cursor, OperatorToken, RejectedCount, Turn
from switchboard.redact import Redactor
from switchboard.rejections import Key, RejectionCounter
from switchboard.store.base import StoreBase, iso

_HEALTH_UPSERTS: dict[tuple[bool, tuple[str, ...]], Any] = {}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountQueries(StoreBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rejections = RejectionCounter()
        self.redact = Redactor()  # the runtime gives the store its config's redactor

    def _insert(self, table: Any) -> Any:
        return (sqlite_insert if self.is_sqlite else pg_insert)(table)

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
        batch = self.rejections.take()
        if not batch:
            return batch
        now = self.clock.now()
        table: Any = RejectedCount.__table__
        stmt = self._insert(table).values([
            {"account": account, "reason": reason, "count": count, "last_at": now}
            for (account, reason), count in sorted(batch.items())])
        stmt = stmt.on_conflict_do_update(
            index_elements=["account", "reason"],
            set_={"count": table.c.count + stmt.excluded["count"],
                  "last_at": stmt.excluded["last_at"]})
        try:
            async with self.tx() as db:
                await db.exec(stmt)
        except BaseException:  # cancelled or failed: nothing is lost, the next flush has them
            self.rejections.restore(batch)
            raise
        self.rejections.written(batch)
        return batch

    def note_traffic_in(self, db: Any, account: str, *, inbound: bool = False,
                        outbound: bool = False, error: str | None = None) -> None:
        """Account health, written inside the caller's transaction."""
        now = self.clock.now()
        values: dict[str, Any] = {}
        if inbound:
            values["last_inbound_at"] = now
        if outbound:
            values["last_outbound_at"] = now
        if error is not None:
            values.update(last_error=error, last_error_at=now)
        db.connection().execute(self._health_upsert(tuple(values)), {
            "v_account": account, **{f"v_{name}": value for name, value in values.items()}})

    def _health_upsert(self, columns: tuple[str, ...]) -> Any:
        """The account-health upsert setting `columns`, built once per dialect and column set
        (it runs with every delivery)."""
        key = (self.is_sqlite, columns)
        if (stmt := _HEALTH_UPSERTS.get(key)) is None:
            table: Any = AccountHealth.__table__
            stmt = self._insert(table).values(
                account=bindparam("v_account"),
                **{name: bindparam(f"v_{name}", type_=table.c[name].type) for name in columns})
            stmt = _HEALTH_UPSERTS[key] = stmt.on_conflict_do_update(
                index_elements=["account"], set_={name: stmt.excluded[name] for name in columns})
        return stmt

    async def account_health(self) -> dict[str, dict[str, Any]]:
        async with self.tx() as db:
            health = (await db.exec(select(AccountHealth))).all()
            rejected = (await db.exec(select(RejectedCount))).all()
            # the newest turn is the last inbound: no write per turn on the acknowledged path
            inbound = (await db.exec(select(Turn.account, func.max(Turn.received_at))
                                     .group_by(Turn.account))).all()
        out: dict[str, dict[str, Any]] = {}

        def entry(account: str) -> dict[str, Any]:
            return out.setdefault(account, {"last_inbound_at": None, "last_outbound_at": None,
                                            "last_error": None, "last_error_at": None,
                                            "rejected": {}})

        for h in health:
            entry(h.account).update(last_outbound_at=iso(h.last_outbound_at),
                                    last_error=h.last_error, last_error_at=iso(h.last_error_at))
        for account, newest in inbound:
            entry(account)["last_inbound_at"] = iso(newest)
        counts = {(r.account, r.reason): r.count for r in rejected}
        for key, count in self.rejections.pending().items():  # current, not a second behind
            counts[key] = counts.get(key, 0) + count
        for (account, reason), count in sorted(counts.items()):
            entry(account)["rejected"][reason] = count
        return out

    async def generated_tokens(self) -> list[OperatorToken]:
        async with self.tx() as db:
            return list((await db.exec(select(OperatorToken))).all())

    async def add_generated_token(self, name: str, role: str, token: str) -> None:
        async with self.tx() as db:
            db.add(OperatorToken(name=name, role=role, token_hash=token_hash(token),
                                 created_at=self.clock.now()))

    async def get_cursor(self, account: str, name: str) -> str | None:
        async with self.tx() as db:
            row = await db.get(Cursor, (account, name))
            return row.value if row else None

    async def set_cursor(self, account: str, name: str, value: str) -> None:
        stmt = self._insert(Cursor).values(account=account, name=name, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=["account", "name"],
                                          set_={"value": value})
        async with self.tx() as db:
            await db.exec(stmt)
