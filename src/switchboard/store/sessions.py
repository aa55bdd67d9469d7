"""Sessions and transcripts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from sessions import OPEN_STATES, check_transition
from switchboard.config import SessionPolicy
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
    transitions: tuple[dict[str, Any], ...] = ()
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


def _expired(row: Session, policy: SessionPolicy, now: datetime) -> str | None:
    """Why an open session is over by policy at `now`, checked on arrival as well as by sweeps."""
    started, last = aware(row.started_at), aware(row.last_activity_at)
    if policy.max_duration and started and now - started >= policy.max_duration:
        return "max_duration"
    # idle after one idle_timeout without activity, ended after a second one
    if (policy.idle_timeout and last and row.state in ("live", "idle")
            and now - last >= 2 * policy.idle_timeout):
        return "idle_timeout"
    return None


class SessionQueries(StoreBase):
    async def route_to_session(self, turn_id: str, request: ScopeRequest, policy: SessionPolicy,
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

    def _open_in(self, db: Any, request: ScopeRequest, policy: SessionPolicy) -> Opened:
        now = self.clock.now()
        moved: list[dict[str, Any]] = []
        row = db.execute(sql.OPEN_IN_SCOPE, {"agent": request.agent,
                                             "scope": request.scope_key}).scalars().first()
        if row is not None:
            cause = _expired(row, policy, now)
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

    def _recent_ended(self, db: Any, request: ScopeRequest, policy: SessionPolicy,
                      now: datetime) -> Session | None:
        if not policy.keep_alive:
            return None
        return db.execute(sql.RECENT_ENDED, {
            "agent": request.agent, "scope": request.scope_key,
            "since": self.naive(now - policy.keep_alive)}).scalars().first()

    def _transferred_from(self, db: Any, request: ScopeRequest) -> str | None:
        return db.connection().execute(sql.TRANSFERRED_FROM, {
            "scope": request.scope_key, "agent": request.agent}).scalar()

    def _transition(self, db: Any, row: Session, target: str, *, cause: str,
                    actor: str) -> dict[str, Any]:
        """Move a session along the state table and write the change into its transcript."""
        check_transition(row.state, target)
        now = self.clock.now()
        before, row.state = row.state, target
        if target == "ended":
            row.ended_at = now
            row.end_cause = cause
        db.add(row)
        db.add(SessionMessage(session_id=row.id, at=now, role="system",
                              text=f"session {before} → {target} ({cause})",
                              data={"from": before, "to": target, "cause": cause,
                                    "actor": actor}))
        return {"session_id": row.id, "from": before, "to": target, "cause": cause,
                "actor": actor}

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
