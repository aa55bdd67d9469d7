"""Sessions and transcripts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from sessions import OPEN_STATES, Limits, StateChange, check_transition, expiry
from sessions.policy import reopen_since
from switchboard.models import Session, SessionMessage, new_id
from switchboard.store import statements as sql
from switchboard.store.base import StoreBase, aware, decode_cursor, encode_cursor, iso

SESSION_FILTERS = ("agent", "state", "source", "tag", "account")


@dataclass(frozen=True)
class Opened:
    """The session a turn joined and how: created, resumed, or reopened within keep_alive."""

    session_id: str
    how: str
    state_before: str | None = None
    state: str = "live"
    refused: str | None = None
    transitions: tuple[StateChange, ...] = ()
    agent: str = ""
    session: dict[str, Any] | None = None


@dataclass(frozen=True)
class ScopeRequest:
    agent: str
    scope_key: str
    binding: str | None
    account: str | None
    provider: str | None
    source: str
    user_id: str
    user_name: str


class SessionQueries(StoreBase):
    async def route_to_session(self, turn_id: str, request: ScopeRequest, policy: Limits,
                               route_reason: str) -> Opened:
        """Record the turn's route and join it to its session, in one transaction.

        A scope whose latest session was transferred goes to the target agent instead."""
        now = self.clock.now()

        def work(db: Any) -> Opened:
            nonlocal request
            events: list[tuple[str, dict[str, Any]]] = [
                ("routed", {"binding": request.binding, "agent": request.agent,
                            "reason": route_reason})]
            transfer = self._transfer_of(db, request.agent, request.scope_key)
            if transfer is not None:
                target, source = transfer
                events.append(("transferred", {"from_session": source, "agent": target}))
                request = replace(request, agent=target)
            opened = self._open_in(db, request, policy)
            values: dict[str, Any] = {"binding": request.binding, "agent": request.agent,
                                      "route_reason": route_reason}
            if not opened.refused:
                values["session_id"] = opened.session_id
                name = {"created": "session_created", "reopened": "session_reopened"}.get(
                    opened.how, "session_resumed")
                events.append((name, {"session_id": opened.session_id,
                                      "scope": request.scope_key}))
            connection = db.connection()
            connection.execute(
                sql.ROUTE_TURN_TO_SESSION if "session_id" in values else sql.ROUTE_TURN,
                {"turn": turn_id, **{f"v_{k}": v for k, v in values.items()}})
            connection.execute(sql.ADD_EVENTS, [
                {"turn_id": turn_id, "at": now, "name": name, "detail": detail}
                for name, detail in events])
            return opened

        return await self.run_tx(work)

    @staticmethod
    def _transfer_of(db: Any, agent: str, scope_key: str) -> tuple[str, str] | None:
        """When this agent's latest session in the scope was transferred: (target, source)."""
        latest = db.connection().execute(
            sql.LATEST_IN_SCOPE, {"agent": agent, "scope": scope_key}).first()
        if latest is not None and latest.state == "ended" and latest.transferred_to:
            return latest.transferred_to, latest.id
        return None

    def _open_in(self, db: Any, request: ScopeRequest, policy: Limits) -> Opened:
        now = self.clock.now()
        moved: list[StateChange] = []
        row = db.execute(sql.OPEN_IN_SCOPE, {"agent": request.agent,
                                             "scope": request.scope_key}).scalars().first()
        if row is not None:
            started, last = aware(row.started_at) or now, aware(row.last_activity_at) or now
            cause = expiry(row.state, started, last, policy, now)
            if cause is None:
                before = row.state
                if row.state == "idle":
                    moved.append(self._transition(db, row, "live", cause="user",
                                                  actor=request.user_id))
                row.last_activity_at = now
                db.add(row)
                return Opened(row.id, "resumed", before, state=row.state,
                              transitions=tuple(moved), agent=request.agent,
                              session=session_dict(row))
            moved.append(self._transition(db, row, "ended", cause=cause, actor="policy"))
        recent = self._recent_ended(db, request, policy, now)
        if recent is not None:
            moved.append(self._transition(db, recent, "live", cause="keep_alive",
                                          actor=request.user_id))
            recent.ended_at = None
            recent.end_cause = None
            recent.last_activity_at = now
            db.add(recent)
            return Opened(recent.id, "reopened", "ended", transitions=tuple(moved),
                          agent=request.agent, session=session_dict(recent))
        limit = policy.max_concurrent_per_user
        if limit and request.user_id:
            open_count = db.exec(select(func.count()).select_from(Session).where(
                Session.agent == request.agent, Session.user_id == request.user_id,
                col(Session.state).in_(OPEN_STATES))).one()
            if open_count >= limit:
                return Opened("", "refused", transitions=tuple(moved), agent=request.agent,
                              refused=(
                    f"user {request.user_id} already has {open_count} open session"
                    f"{'s' if open_count != 1 else ''} with agent {request.agent} "
                    f"(max_concurrent_per_user is {limit})"))
        parent = self._transferred_from(db, request)
        fresh = Session(
            id=new_id("ses"), agent=request.agent, account=request.account,
            provider=request.provider, binding=request.binding, scope_key=request.scope_key,
            state="live", source=request.source, user_id=request.user_id,
            user_name=request.user_name, started_at=now, last_activity_at=now,
            parent_session_id=parent,
        )
        connection = db.connection()
        connection.execute(sql.ADD_SESSION, fresh.model_dump())
        connection.execute(sql.ADD_MESSAGES, {"session_id": fresh.id, "at": now, "role": "system",
                                              "text": "session started", "turn_id": None,
                                              "data": {"state": "live"}})
        return Opened(fresh.id, "created", transitions=tuple(moved), agent=request.agent,
                      session=session_dict(fresh))

    def _recent_ended(self, db: Any, request: ScopeRequest, policy: Limits,
                      now: datetime) -> Session | None:
        since = reopen_since(policy, now)
        if since is None:
            return None
        return db.execute(sql.RECENT_ENDED, {
            "agent": request.agent, "scope": request.scope_key,
            "since": self.naive(since)}).scalars().first()

    def _transferred_from(self, db: Any, request: ScopeRequest) -> str | None:
        return db.connection().execute(sql.TRANSFERRED_FROM, {
            "scope": request.scope_key, "agent": request.agent}).scalar()

    def _transition(self, db: Any, row: Session, target: str, *, cause: str,
                    actor: str) -> StateChange:
        """Move a session along the state table and write the change into its transcript."""
        check_transition(row.state, target)
        now = self.clock.now()
        change = StateChange(row.id, row.state, target, cause, actor)
        row.state = target
        if target == "ended":
            row.ended_at = now
            row.end_cause = cause
        db.add(row)
        self._note_changes(db, [change], now)
        return change

    @staticmethod
    def _note_changes(db: Any, changes: list[StateChange], at: datetime) -> None:
        """The one writer of state changes into transcripts (actions, arrivals and sweeps)."""
        if changes:
            db.connection().execute(sql.ADD_MESSAGES,
                                    [change.transcript_entry(at) for change in changes])

    async def session_row(self, session_id: str) -> Session | None:
        async with self.tx() as db:
            return await db.get(Session, session_id)

    async def transcript(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        async with self.tx() as db:
            query = select(SessionMessage).where(SessionMessage.session_id == session_id)
            if limit:
                query = query.order_by(col(SessionMessage.id).desc()).limit(limit)
                rows = list(reversed((await db.exec(query)).all()))
            else:
                rows = list((await db.exec(query.order_by(col(SessionMessage.id)))).all())
        return [{"id": m.id, "at": iso(m.at), "role": m.role, "text": m.text,
                 "turn_id": m.turn_id, **({"data": m.data} if m.data else {})} for m in rows]

    async def list_sessions(self, filters: dict[str, Any], cursor: str | None = None,
                            limit: int = 50) -> tuple[list[dict[str, Any]], str | None]:
        query = select(Session)
        for key in SESSION_FILTERS:
            if filters.get(key):
                query = query.where(getattr(Session, key) == filters[key])
        if filters.get("user"):
            query = query.where(Session.user_id == filters["user"])
        if filters.get("started_after"):
            query = query.where(Session.started_at >= self.naive(filters["started_after"]))
        if filters.get("started_before"):
            query = query.where(Session.started_at < self.naive(filters["started_before"]))
        archive = filters.get("archive_after")
        if archive and not filters.get("include_archived"):
            # ended sessions older than auto_archive_after leave default listings
            cutoff = self.naive(self.clock.now() - archive)
            query = query.where((Session.state != "ended") | (Session.ended_at >= cutoff))
        if cursor:
            at, ident = decode_cursor(cursor)
            at = self.naive(at)
            query = query.where((Session.started_at < at)
                                | ((Session.started_at == at) & (Session.id < ident)))
        query = query.order_by(col(Session.started_at).desc(), col(Session.id).desc())
        async with self.tx() as db:
            rows = list((await db.exec(query.limit(limit + 1))).all())
        page = rows[:limit]
        more = len(rows) > limit
        nxt = encode_cursor(aware(page[-1].started_at), page[-1].id) if more else None  # type: ignore[arg-type]
        return [session_dict(s) for s in page], nxt

    async def touch_session(self, session_id: str, context: dict[str, Any] | None) -> None:
        values: dict[str, Any] = {"last_activity_at": self.clock.now()}
        if context is not None:
            values["context"] = context
        async with self.tx() as db:
            await db.exec(update(Session).where(Session.id == session_id).values(**values))


def session_dict(row: Session) -> dict[str, Any]:
    return {
        "id": row.id, "agent": row.agent, "state": row.state, "source": row.source,
        "tag": row.tag, "account": row.account, "provider": row.provider,
        "binding": row.binding, "scope_key": row.scope_key,
        "user_id": row.user_id, "user_name": row.user_name,
        "started_at": iso(row.started_at), "last_activity_at": iso(row.last_activity_at),
        "ended_at": iso(row.ended_at), "end_cause": row.end_cause,
        "parent_session_id": row.parent_session_id, "transferred_to": row.transferred_to,
        "model_override": row.model_override,
        "turn_count": row.turn_count, "context": row.context,
    }
