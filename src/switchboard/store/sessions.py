"""Sessions and transcripts: joining a turn to its session, actions, sweeps, listings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import delete, func, literal_column, update
from sqlmodel import col, select

from sessions import OPEN_STATES, Limits, StateChange, sweep_cutoffs
from switchboard.errors import ActionRefused, SessionNotFound
from switchboard.models import AuditEntry, Session, SessionMessage, new_id
from switchboard.store import fast
from switchboard.store import statements as sql
from switchboard.store.database import Database
from switchboard.store.hooks import emit, emit_messages, session_data
from switchboard.store.records import (
    Page,
    SessionRecord,
    TranscriptEntry,
    decode_cursor,
    encode_cursor,
    load,
)
from switchboard.store.session_moves import (
    Opened,
    ScopeRequest,
    latest_in_scope,
    open_in,
    sweep_rule,
    transfer_of,
    transferred,
    transition,
)

SESSION_FILTERS = ("agent", "state", "source", "tag", "account")


FEW = 2000  # an agent or a state with fewer sessions is read through its index, then sorted


async def _equal(db: Any, key: str, value: Any) -> tuple[Any, bool]:
    """`key = value`, and whether it is a few sessions to read through its index and sort.

    For an agent or a state with FEW sessions or more (most are ended) it is
    `key || '' = value`: kept off its index (agent, … / state, …), the listing walks
    ix_sessions_started newest first and stops after a page instead of sorting them all. With
    fewer, the page is read through that index and sorted (`page` keeps SQLite off the walk)."""
    column = getattr(Session, key)
    if key in ("agent", "state"):
        inner = select(Session.id).where(column == value).limit(FEW).subquery()
        if (await db.exec(select(func.count()).select_from(inner))).one() >= FEW:
            return col(column).concat(literal_column("''")) == value, False
        return column == value, True
    return column == value, False


def _started(sqlite: bool, few: bool) -> Any:
    """The column a listing is ordered and its cursor ranged by. SQLite's statistics hold only
    an average per state or agent (a fifth of the sessions), so for one with a handful it walks
    ix_sessions_started all the way (80 ms of 200,000 sessions for the one live session); unary
    `+` keeps it off that index, onto the filter's."""
    if sqlite and few:
        return literal_column("+sessions.started_at", type_=col(Session.started_at).type)
    return col(Session.started_at)


class SessionStore:
    """`store.sessions`: every session, its transcript, and the moves of its state."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock

    async def route(self, turn_id: str, request: ScopeRequest, policy: Limits,
                    route_reason: str) -> Opened:
        """Record the turn's route and join it to its session, in one transaction.

        A scope whose latest session was transferred goes to the target agent instead."""
        now = self.clock.now()

        def work(db: Any) -> Opened:  # no side effects: it may run twice (run_tx's `group`)
            asked = request
            events: list[tuple[str, dict[str, Any]]] = [
                ("routed", {"binding": asked.binding, "agent": asked.agent,
                            "reason": route_reason})]
            latest = latest_in_scope(db, asked.agent, asked.scope_key)
            transfer = transferred(latest)
            if transfer is not None:
                target, source = transfer
                events.append(("transferred", {"from_session": source, "agent": target}))
                asked = replace(asked, agent=target)
            opened = open_in(db, asked, policy, now, self.db.naive,
                             new_scope=latest is None)
            values: dict[str, Any] = {"binding": asked.binding, "agent": asked.agent,
                                      "route_reason": route_reason}
            if not opened.refused:
                values["session_id"] = opened.session_id
                name = {"created": "session_created", "reopened": "session_reopened"}.get(
                    opened.how, "session_resumed")
                events.append((name, {"session_id": opened.session_id,
                                      "scope": asked.scope_key}))
            fast.execute(
                db, sql.ROUTE_TURN_TO_SESSION if "session_id" in values else sql.ROUTE_TURN,
                {"turn": turn_id, **{f"v_{k}": v for k, v in values.items()}})
            fast.execute(db, sql.ADD_EVENTS, [
                {"turn_id": turn_id, "at": now, "name": name, "detail": detail}
                for name, detail in events])
            return opened

        return await self.db.run_tx(work, group=True)

    async def get(self, session_id: str) -> SessionRecord | None:
        async with self.db.tx() as db:
            row = await db.get(Session, session_id)
            return load(SessionRecord, row) if row is not None else None

    async def transcript(self, session_id: str, limit: int | None = None
                         ) -> list[TranscriptEntry]:
        """The whole transcript, oldest first; with `limit`, its last `limit` entries."""
        async with self.db.tx() as db:
            query = select(SessionMessage).where(SessionMessage.session_id == session_id)
            if limit:
                query = query.order_by(col(SessionMessage.id).desc()).limit(limit)
                rows = list(reversed((await db.exec(query)).all()))
            else:
                rows = list((await db.exec(query.order_by(col(SessionMessage.id)))).all())
            return [load(TranscriptEntry, row) for row in rows]

    async def page(self, filters: dict[str, Any], cursor: str | None = None,
                   limit: int = 50) -> Page[SessionRecord]:
        """Newest first, filtered; ended sessions past `archive_after` only when asked."""
        naive = self.db.naive
        query = select(Session)
        if filters.get("user"):
            query = query.where(Session.user_id == filters["user"])
        if filters.get("agents") is not None:  # an operator limited to these agents
            query = query.where(col(Session.agent).in_(filters["agents"]))
        archive = filters.get("archive_after")
        if archive and not filters.get("include_archived"):
            cutoff = naive(self.clock.now() - archive)
            query = query.where((Session.state != "ended") | (Session.ended_at >= cutoff))
        async with self.db.tx() as db:
            few = False
            for key in SESSION_FILTERS:
                if filters.get(key):
                    term, selective = await _equal(db, key, filters[key])
                    query, few = query.where(term), few or selective
            started = _started(self.db.is_sqlite, few)
            if filters.get("started_after"):
                query = query.where(started >= naive(filters["started_after"]))
            if filters.get("started_before"):
                query = query.where(started < naive(filters["started_before"]))
            if cursor:
                at, ident = decode_cursor(cursor)
                at = naive(at)
                # a range of started_at, which ix_sessions_started serves (an OR alone is a scan)
                query = query.where(started <= at, (started < at) | (col(Session.id) < ident))
            query = query.order_by(started.desc(), col(Session.id).desc())
            rows = list((await db.exec(query.limit(limit + 1))).all())
        page = [load(SessionRecord, row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(page, encode_cursor(page[-1].started_at, page[-1].id) if more else None)

    async def touch(self, session_id: str, context: dict[str, Any] | None) -> None:
        values: dict[str, Any] = {"last_activity_at": self.clock.now()}
        if context is not None:
            values["context"] = context
        async with self.db.tx() as db:
            await db.exec(update(Session).where(col(Session.id) == session_id).values(**values))

    async def sweep(self, agent: str, policy: Limits) -> list[StateChange]:
        """Apply the policy's rules (idle_timeout, max_duration) to one agent's open sessions;
        each rule is one conditional update, so processes sweeping at once never collide."""
        now = self.clock.now()
        done: list[StateChange] = []
        for cutoff in sweep_cutoffs(policy, now):
            done += await self.db.run_tx(
                lambda db, cutoff=cutoff: sweep_rule(db, agent, cutoff, now, self.db.naive))
        return done

    async def change_state(self, session_id: str, target: str, *, cause: str, actor: str,
                           transfer_to: str | None = None) -> StateChange | None:
        """An operator's or user's action; None when the session is already there (end twice)."""

        def work(db: Any) -> StateChange | None:
            row = db.get(Session, session_id, with_for_update=not self.db.is_sqlite)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            if row.state == target == "ended":
                return None
            now = self.clock.now()
            moved = transition(db, row, target, cause=cause, actor=actor, now=now)
            if transfer_to:
                row.transferred_to = transfer_to
            if target == "live":
                row.last_activity_at = now
            return moved

        return await self.db.run_tx(work)

    async def transfer_target(self, agent: str, scope_key: str) -> tuple[str, str] | None:
        """When this agent's latest session in the scope was transferred: (target, source)."""
        return await self.db.run_tx(lambda db: transfer_of(db, agent, scope_key))

    async def set_model(self, session_id: str, model: str | None, actor: str) -> None:
        """Override the session's model route (None: back to the default), in the audit log."""
        async with self.db.tx() as db:
            row = await db.get(Session, session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            row.model_override = model
            db.add(row)
            now = self.clock.now()
            entry = {"session_id": session_id, "at": now, "role": "system",
                     "text": f"model set to {model or 'the default route'} by {actor}",
                     "data": {"model": model, "actor": actor}}
            db.add(SessionMessage(**entry))
            emit_messages(db, [entry])
            db.add(AuditEntry(at=now, actor=actor, action="set_model", target=session_id,
                              detail={"model": model}))

    async def delete(self, session_id: str, actor: str) -> None:
        """Remove an ended session and its transcript; the audit log keeps who and when."""
        async with self.db.tx() as db:
            row = await db.get(Session, session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            if row.state != "ended":
                raise ActionRefused(f"session {session_id} is {row.state}; only ended sessions "
                                    "can be deleted (end it first)")
            await db.exec(delete(SessionMessage).where(
                col(SessionMessage.session_id) == session_id))
            await db.delete(row)
            db.add(AuditEntry(at=self.clock.now(), actor=actor, action="delete",
                              target=session_id, detail={"agent": row.agent,
                                                         "user_id": row.user_id}))

    async def find_open(self, agent: str, scope_key: str, *, user: str | None = None,
                        prefix: bool = False) -> SessionRecord | None:
        """The newest open session of the agent in the scope (or under a scope prefix)."""
        scope = col(Session.scope_key).startswith(scope_key) if prefix \
            else Session.scope_key == scope_key
        query = select(Session).where(Session.agent == agent, scope,
                                      col(Session.state).in_(OPEN_STATES))
        if user:
            query = query.where(Session.user_id == user)
        async with self.db.tx() as db:
            row = (await db.exec(query.order_by(col(Session.last_activity_at).desc()))).first()
            return load(SessionRecord, row) if row is not None else None

    async def open_for_api(self, agent: str, tag: str, user_id: str,
                           user_name: str) -> SessionRecord:
        """A session without a provider, to try an agent before binding it."""
        now = self.clock.now()
        async with self.db.tx() as db:
            row = Session(id=new_id("ses"), agent=agent, scope_key="", state="live",
                          source="api", tag=tag, user_id=user_id, user_name=user_name,
                          started_at=now, last_activity_at=now)
            row.scope_key = f"api/{row.id}"
            db.add(row)
            started = {"session_id": row.id, "at": now, "role": "system",
                       "text": "session started", "data": {"state": "live"}}
            db.add(SessionMessage(**started))
            emit(db, "session.created", session_data(row), now)
            emit_messages(db, [started])
            return load(SessionRecord, row)
