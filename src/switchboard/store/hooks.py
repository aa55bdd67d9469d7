"""Outbound webhook deliveries: written by `emit` inside the transaction of what caused them,
claimed per attempt, and every attempt kept with the receiver's answer.

`emit(db, event, data)` is the one way an event becomes deliveries. It reads the subscriptions
from the transaction's `info` (set by `Database`), so any store code holding a transaction can
call it; with no webhook subscribed to the event it returns before touching the database (the
acknowledgement path calls it for every turn).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import col, select

from switchboard.clock import Clock
from switchboard.hooks import RECEIVED_AS, WebhookConfig, subscriptions
from switchboard.models import HookAttempt, HookDelivery, new_id
from switchboard.store.database import Database
from switchboard.store.records import aware, decode_cursor, encode_cursor, iso

INFO_KEY = "hooks"
HOOK_FILTERS = ("event", "state")
STATES = ("pending", "retrying", "delivered", "dead")


class HookRoutes:
    """Which URLs each event goes to, for this process; replaced on a config reload."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.by_event: dict[str, tuple[str, ...]] = {}

    def configure(self, webhooks: Iterable[WebhookConfig]) -> None:
        self.by_event = subscriptions(webhooks)

    def wants(self, event: str) -> bool:
        return event in self.by_event


def routes_of(db: Any) -> HookRoutes | None:
    routes = db.info.get(INFO_KEY)
    return routes if routes is not None and routes.by_event else None


def emit(db: Any, event: str, data: Mapping[str, Any], at: datetime | None = None) -> None:
    """Add one pending delivery of `event` per webhook subscribed to it, in the caller's
    transaction (`db`: a sync or async ORM session): it is delivered if and only if what
    caused it is committed; `at` is when it happened (default: now). A no-op when nothing
    subscribes to the event."""
    routes = db.info.get(INFO_KEY)
    if routes is None or event not in routes.by_event:
        return
    now = routes.clock.now()
    db.add_all([HookDelivery(id=new_id("hook"), url=url, event=event, data=dict(data),
                             state="pending", attempts=0, created_at=at or now,
                             next_attempt_at=now)
                for url in routes.by_event[event]])


def emit_turns_received(db: Any, rows: Iterable[Mapping[str, Any]]) -> None:
    """turn.received (and email.received for mail) of newly recorded turn rows."""
    routes = routes_of(db)
    if routes is None:
        return
    for row in rows:
        data = turn_data(row)
        emit(db, "turn.received", data, row["received_at"])
        also = RECEIVED_AS.get(row["provider"])
        if also and routes.wants(also):
            emit(db, also, {**data, "subject": (row.get("extra") or {}).get("subject")},
                 row["received_at"])


def emit_messages(db: Any, entries: Iterable[Mapping[str, Any]]) -> None:
    """session.message.created of transcript entries (dicts with session_id, role, text, …)."""
    routes = routes_of(db)
    if routes is None or not routes.wants("session.message.created"):
        return
    for entry in entries:
        emit(db, "session.message.created", {
            "session_id": entry["session_id"], "role": entry.get("role"),
            "text": entry.get("text"), "turn_id": entry.get("turn_id"),
            "data": entry.get("data") or {}}, entry.get("at"))


def turn_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a turn event says about the turn (a turns row as a mapping)."""
    return {"turn_id": row["id"], "provider": row["provider"], "account": row["account"],
            "conversation": row["conversation"], "thread": row.get("thread"),
            "message_id": row.get("message_id"), "kind": row.get("kind"),
            "sender": row.get("sender"), "sender_name": row.get("sender_name"),
            "text": row.get("text"), "received_at": iso(row.get("received_at"))}


def session_data(row: Any) -> dict[str, Any]:
    """What a session event says about the session (an ORM row)."""
    return {"session_id": row.id, "agent": row.agent, "account": row.account,
            "provider": row.provider, "binding": row.binding, "scope": row.scope_key,
            "state": row.state, "source": row.source, "user_id": row.user_id,
            "user_name": row.user_name, "started_at": iso(row.started_at)}


@dataclass(frozen=True, slots=True)
class HookAttemptRecord:
    at: datetime
    status: int | None
    body: str | None
    error: str | None
    ms: int


@dataclass(frozen=True, slots=True)
class HookRecord:
    """One delivery of one event to one webhook, with its attempts (oldest first)."""

    id: str
    url: str
    event: str
    data: dict[str, Any]
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    tries: tuple[HookAttemptRecord, ...] = ()


def _record(row: Any, tries: tuple[HookAttemptRecord, ...] = ()) -> HookRecord:
    return HookRecord(row.id, row.url, row.event, dict(row.data or {}), row.state, row.attempts,
                      aware(row.created_at) or row.created_at, aware(row.next_attempt_at),
                      aware(row.delivered_at), tries)


class HookStore:
    """`store.hooks`: deliveries due, claimed per attempt, their outcomes and listings."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock

    async def claim_due(self, limit: int, lease: timedelta) -> list[HookRecord]:
        """Take up to `limit` deliveries that are due, each leased to this process for one
        attempt. One conditional UPDATE (`FOR UPDATE SKIP LOCKED` on PostgreSQL): of several
        processes claiming at once each delivery goes to exactly one."""
        if limit <= 0:
            return []
        now = self.clock.now()
        naive_now = self.db.naive(now)
        table: Any = HookDelivery.__table__
        due = (select(table.c.id)
               .where(col(table.c.state).in_(("pending", "retrying")),
                      table.c.next_attempt_at <= naive_now,
                      or_(table.c.claimed_until.is_(None), table.c.claimed_until < naive_now))
               .order_by(table.c.next_attempt_at).limit(limit))
        if not self.db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        claim = (update(table).where(table.c.id.in_(due.scalar_subquery()))
                 .values(claimed_until=now + lease, attempts=table.c.attempts + 1)
                 .returning(*table.c))

        def work(db: Any) -> list[HookRecord]:
            return [_record(row) for row in db.connection().execute(claim)]

        return await self.db.run_tx(work)

    async def attempted(self, delivery: HookRecord, *, status: int | None, body: str | None,
                        error: str | None, ms: int, state: str,
                        retry_at: datetime | None = None) -> None:
        """Keep the attempt and the receiver's answer; the delivery is then `delivered`,
        `retrying` (due again at `retry_at`) or `dead`."""
        now = self.clock.now()
        values: dict[str, Any] = {"state": state, "claimed_until": None}
        if state == "delivered":
            values["delivered_at"] = now
        if retry_at is not None:
            values["next_attempt_at"] = retry_at

        def work(db: Any) -> None:
            db.add(HookAttempt(delivery_id=delivery.id, at=now, status=status, body=body,
                               error=error, ms=ms))
            db.exec(update(HookDelivery).where(col(HookDelivery.id) == delivery.id)
                    .values(**values))

        await self.db.run_tx(work)

    async def redeliver(self, delivery_id: str) -> HookRecord | None:
        """Make a delivery due now, its attempts counted afresh (the old ones stay listed);
        None when there is no such delivery."""
        now = self.clock.now()

        def work(db: Any) -> HookRecord | None:
            moved = db.exec(update(HookDelivery).where(col(HookDelivery.id) == delivery_id)
                            .values(state="pending", attempts=0, next_attempt_at=now,
                                    claimed_until=None))
            if moved.rowcount != 1:
                return None
            row = db.get(HookDelivery, delivery_id)
            return _record(row) if row is not None else None

        return await self.db.run_tx(work)

    async def get(self, delivery_id: str) -> HookRecord | None:
        page = await self._with_attempts(select(HookDelivery).where(
            col(HookDelivery.id) == delivery_id))
        return page[0] if page else None

    async def page(self, filters: Mapping[str, Any], cursor: str | None = None,
                   limit: int = 50) -> tuple[list[HookRecord], str | None]:
        """Newest first, filtered by event and state, with every attempt of each."""
        query = select(HookDelivery)
        for key in HOOK_FILTERS:
            if filters.get(key):
                query = query.where(getattr(HookDelivery, key) == filters[key])
        if cursor:
            at, ident = decode_cursor(cursor)
            at = self.db.naive(at)
            query = query.where(or_(HookDelivery.created_at < at,
                                    and_(HookDelivery.created_at == at,
                                         HookDelivery.id < ident)))
        query = query.order_by(col(HookDelivery.created_at).desc(),
                               col(HookDelivery.id).desc()).limit(limit + 1)
        rows = await self._with_attempts(query)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
        return rows, next_cursor

    async def _with_attempts(self, query: Any) -> list[HookRecord]:
        async with self.db.tx() as db:
            rows = list((await db.exec(query)).all())
            ids = [row.id for row in rows]
            tries: dict[str, list[HookAttemptRecord]] = {i: [] for i in ids}
            if ids:
                for attempt in (await db.exec(select(HookAttempt).where(
                        col(HookAttempt.delivery_id).in_(ids)).order_by(
                        col(HookAttempt.id)))).all():
                    tries[attempt.delivery_id].append(HookAttemptRecord(
                        aware(attempt.at) or attempt.at, attempt.status, attempt.body,
                        attempt.error, attempt.ms))
        return [_record(row, tuple(tries[row.id])) for row in rows]


__all__ = ["STATES", "HookAttemptRecord", "HookRecord", "HookRoutes", "HookStore", "emit",
           "emit_messages", "emit_turns_received", "turn_data"]
