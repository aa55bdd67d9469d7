"""What one transaction does to sessions: join a turn's scope (resume, reopen, open, or refuse),
move a session along the state table, and write each state change into its transcript.

These run inside a transaction the caller holds (`db` is its ORM session, plain synchronous
code: on SQLite the whole transaction is one hop to the database thread).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from sessions import OPEN_STATES, Cutoff, Limits, StateChange, check_transition, expiry
from sessions.policy import reopen_since
from switchboard.models import Session, new_id
from switchboard.store import fast
from switchboard.store import statements as sql
from switchboard.store.hooks import emit, emit_messages, session_data
from switchboard.store.records import SessionRecord, aware, load

Naive = Callable[[datetime], datetime]


@dataclass(frozen=True)
class ScopeRequest:
    """A routed turn asking for the session of its scope."""

    agent: str
    scope_key: str
    binding: str | None
    account: str | None
    provider: str | None
    source: str
    user_id: str
    user_name: str


@dataclass(frozen=True)
class Opened:
    """The session a turn joined and how: created, resumed, reopened within keep_alive, or
    refused (over max_concurrent_per_user, `refused` says why)."""

    session_id: str
    how: str
    state_before: str | None = None
    state: str = "live"
    refused: str | None = None
    transitions: tuple[StateChange, ...] = ()
    agent: str = ""
    session: SessionRecord | None = None


def latest_in_scope(db: Any, agent: str, scope_key: str) -> Any:
    """This agent's latest session in the scope (id, state, transferred_to), or None."""
    return fast.first(db, sql.LATEST_IN_SCOPE, {"agent": agent, "scope": scope_key})


def transferred(latest: Any) -> tuple[str, str] | None:
    """(target, source) when `latest` (of `latest_in_scope`) was transferred."""
    if latest is not None and latest.state == "ended" and latest.transferred_to:
        return latest.transferred_to, latest.id
    return None


def transfer_of(db: Any, agent: str, scope_key: str) -> tuple[str, str] | None:
    """When this agent's latest session in the scope was transferred: (target, source)."""
    return transferred(latest_in_scope(db, agent, scope_key))


def open_in(db: Any, request: ScopeRequest, policy: Limits, now: datetime,
            naive: Naive, *, new_scope: bool = False) -> Opened:
    """Resume the scope's open session (ending it first when the policy says it expired),
    reopen one ended within keep_alive, refuse over the limit, or open a new one.
    `new_scope`: the agent is known to have no session in the scope (`latest_in_scope` said so in
    this transaction), so there is none to resume or reopen."""
    moved: list[StateChange] = []
    row = None if new_scope else db.execute(sql.OPEN_IN_SCOPE, {
        "agent": request.agent, "scope": request.scope_key}).scalars().first()
    if row is not None:
        started, last = aware(row.started_at) or now, aware(row.last_activity_at) or now
        cause = expiry(row.state, started, last, policy, now)
        if cause is None:
            before = row.state
            if row.state == "idle":
                moved.append(transition(db, row, "live", cause="user", actor=request.user_id,
                                        now=now))
            row.last_activity_at = now
            db.add(row)
            return Opened(row.id, "resumed", before, state=row.state, transitions=tuple(moved),
                          agent=request.agent, session=load(SessionRecord, row))
        moved.append(transition(db, row, "ended", cause=cause, actor="policy", now=now))
    recent = None if new_scope else _recent_ended(db, request, policy, now, naive)
    if recent is not None:
        moved.append(transition(db, recent, "live", cause="keep_alive", actor=request.user_id,
                                now=now))
        recent.ended_at = None
        recent.end_cause = None
        recent.last_activity_at = now
        db.add(recent)
        return Opened(recent.id, "reopened", "ended", transitions=tuple(moved),
                      agent=request.agent, session=load(SessionRecord, recent))
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
    source = fast.first(db, sql.TRANSFERRED_FROM, {"scope": request.scope_key,
                                                  "agent": request.agent})
    parent = source.id if source is not None else None
    # every column, as a plain row: a model instance (validated) costs more than the insert
    values = {**sql.SESSION_DEFAULTS, "id": new_id("ses"), "agent": request.agent,
              "account": request.account, "provider": request.provider,
              "binding": request.binding, "scope_key": request.scope_key, "state": "live",
              "source": request.source, "user_id": request.user_id,
              "user_name": request.user_name, "started_at": now, "last_activity_at": now,
              "parent_session_id": parent, "context": {}}
    fresh = SimpleNamespace(**values)
    fast.execute(db, sql.ADD_SESSION, values)
    started = {"session_id": fresh.id, "at": now, "role": "system", "text": "session started",
               "turn_id": None, "data": {"state": "live"}}
    fast.execute(db, sql.ADD_MESSAGES, started)
    emit(db, "session.created", session_data(fresh), now)
    emit_messages(db, [started])
    return Opened(fresh.id, "created", transitions=tuple(moved), agent=request.agent,
                  session=load(SessionRecord, fresh))


def _recent_ended(db: Any, request: ScopeRequest, policy: Limits, now: datetime,
                  naive: Naive) -> Session | None:
    since = reopen_since(policy, now)
    if since is None:
        return None
    return db.execute(sql.RECENT_ENDED, {
        "agent": request.agent, "scope": request.scope_key,
        "since": naive(since)}).scalars().first()


def transition(db: Any, row: Session, target: str, *, cause: str, actor: str,
               now: datetime) -> StateChange:
    """Move a session along the state table and write the change into its transcript."""
    check_transition(row.state, target)
    change = StateChange(row.id, row.state, target, cause, actor)
    row.state = target
    if target != "paused":  # no longer paused for people: the takeover or handoff is over
        row.taken_over_by = row.handoff_reason = row.handoff_at = None
    if target == "ended":
        row.ended_at = now
        row.end_cause = cause
    db.add(row)
    note_changes(db, [change], now)
    return change


def sweep_rule(db: Any, agent: str, cutoff: Cutoff, now: datetime,
               naive: Naive) -> list[StateChange]:
    """One policy rule as one `UPDATE … WHERE state = :before AND <cutoff> RETURNING id`: of
    several processes sweeping at once, each session moves in exactly one."""
    rule = cutoff.rule
    values: dict[str, Any] = {"state": rule.target}
    if rule.target != "paused":
        values.update(taken_over_by=None, handoff_reason=None, handoff_at=None)
    if rule.target == "ended":
        values.update(ended_at=now, end_cause=rule.cause)
    result = db.connection().execute(
        update(sql.sessions)
        .where(sql.sessions.c.agent == agent, sql.sessions.c.state == rule.before,
               sql.sessions.c[rule.since] <= naive(cutoff.at))
        .values(**values).returning(sql.sessions.c.id))
    changes = [StateChange(session_id, rule.before, rule.target, rule.cause, "policy")
               for session_id in result.scalars()]
    note_changes(db, changes, now)
    return changes


def note_changes(db: Any, changes: list[StateChange], at: datetime) -> None:
    """The one writer of state changes into transcripts (actions, arrivals and sweeps)."""
    if changes:
        entries = [change.transcript_entry(at) for change in changes]
        fast.execute(db, sql.ADD_MESSAGES, entries)
        for change in changes:
            emit(db, "session.state_changed", {
                "session_id": change.session_id, "from": change.before, "to": change.target,
                "cause": change.cause, "actor": change.actor}, at)
        emit_messages(db, entries)


def paused_reason(row: Session | None) -> str:
    """Why a paused session holds the turns it gets, in words (its timeline says it)."""
    if row is not None and row.taken_over_by:
        return f"agent paused: taken over by {row.taken_over_by}"
    if row is not None and row.handoff_reason:
        return f"agent paused: it asked for a person ({row.handoff_reason})"
    return "the session is paused"
