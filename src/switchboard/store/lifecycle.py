"""Session lifecycle in the database: sweeps, operator and user actions, held turns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select

from sessions import (
    OPEN_STATES,
    ActionRefused,
    Cutoff,
    Limits,
    SessionNotFound,
    StateChange,
    sweep_cutoffs,
)
from switchboard.models import AuditEntry, Session, SessionMessage, Turn, TurnEvent
from switchboard.store import statements as sql
from switchboard.store.sessions import SessionQueries

__all__ = ["ActionRefused", "LifecycleQueries", "SessionNotFound"]


class LifecycleQueries(SessionQueries):
    async def sweep_policy(self, agent: str, policy: Limits) -> list[StateChange]:
        """Apply the policy's rules (idle_timeout, max_duration) to one agent's open sessions.

        Each rule is one `UPDATE ... WHERE state = :before AND <cutoff> RETURNING id`, so the
        database decides: when several processes sweep at once, each session moves (and is
        reported, and gets its transcript entry) in exactly one of them.
        """
        now = self.clock.now()
        done: list[StateChange] = []
        for cutoff in sweep_cutoffs(policy, now):
            done += await self.run_tx(
                lambda db, cutoff=cutoff: self._sweep_rule(db, agent, cutoff, now))
        return done

    def _sweep_rule(self, db: Any, agent: str, cutoff: Cutoff, now: datetime
                    ) -> list[StateChange]:
        rule = cutoff.rule
        values: dict[str, Any] = {"state": rule.target}
        if rule.target == "ended":
            values.update(ended_at=now, end_cause=rule.cause)
        result = db.connection().execute(
            update(sql.sessions)
            .where(sql.sessions.c.agent == agent, sql.sessions.c.state == rule.before,
                   sql.sessions.c[rule.since] <= self.naive(cutoff.at))
            .values(**values).returning(sql.sessions.c.id))
        changes = [StateChange(session_id, rule.before, rule.target, rule.cause, "policy")
                   for session_id in result.scalars()]
        self._note_changes(db, changes, now)
        return changes

    async def change_state(self, session_id: str, target: str, *, cause: str, actor: str,
                           transfer_to: str | None = None) -> StateChange | None:
        """An operator's or user's action; None when the session is already there (end twice)."""

        def work(db: Any) -> StateChange | None:
            row = db.get(Session, session_id, with_for_update=not self.is_sqlite)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            if row.state == target == "ended":
                return None
            moved = self._transition(db, row, target, cause=cause, actor=actor)
            if transfer_to:
                row.transferred_to = transfer_to
            if target == "live":
                row.last_activity_at = self.clock.now()
            return moved

        return await self.run_tx(work)

    async def transfer_target(self, agent: str, scope_key: str) -> tuple[str, str] | None:
        """When this agent's latest session in the scope was transferred: (target, source)."""
        return await self.run_tx(lambda db: self._transfer_of(db, agent, scope_key))

    async def set_model_override(self, session_id: str, model: str | None, actor: str) -> None:
        async with self.tx() as db:
            row = await db.get(Session, session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            row.model_override = model
            db.add(row)
            now = self.clock.now()
            db.add(SessionMessage(session_id=session_id, at=now, role="system",
                                  text=f"model set to {model or 'the default route'} by {actor}",
                                  data={"model": model, "actor": actor}))
            db.add(AuditEntry(at=now, actor=actor, action="set_model", target=session_id,
                              detail={"model": model}))

    async def delete_session(self, session_id: str, actor: str) -> None:
        """Remove an ended session and its transcript; the audit log keeps who and when."""
        async with self.tx() as db:
            row = await db.get(Session, session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            if row.state != "ended":
                raise ActionRefused(f"session {session_id} is {row.state}; only ended sessions "
                                    "can be deleted (end it first)")
            await db.exec(delete(SessionMessage).where(SessionMessage.session_id == session_id))
            await db.delete(row)
            db.add(AuditEntry(at=self.clock.now(), actor=actor, action="delete",
                              target=session_id, detail={"agent": row.agent,
                                                         "user_id": row.user_id}))

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        from switchboard.store.base import iso

        async with self.tx() as db:
            rows = (await db.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc())
                                  .limit(limit))).all()
        return [{"at": iso(r.at), "actor": r.actor, "action": r.action, "target": r.target,
                 "detail": r.detail} for r in rows]

    async def hold_turn(self, turn_id: str, session_id: str, text: str) -> None:
        """Keep a turn that arrived while its session is paused: in the transcript where it
        happened, answered after resume."""
        async with self.tx() as db:
            await db.exec(update(Turn).where(Turn.id == turn_id).values(status="held"))
            db.add(SessionMessage(session_id=session_id, at=self.clock.now(), role="user",
                                  text=text, turn_id=turn_id, data={"held": True}))
            db.add(TurnEvent(turn_id=turn_id, at=self.clock.now(), name="held",
                             detail={"session_id": session_id,
                                     "reason": "the session is paused"}))

    async def claim_held(self, session_id: str) -> list[Turn]:
        """Take the held turns of a session that is no longer paused, oldest first."""
        async with self.tx() as db:
            rows = (await db.exec(select(Turn).where(
                Turn.session_id == session_id, Turn.status == "held",
            ).order_by(col(Turn.received_at), col(Turn.id)))).all()
        claimed = []
        for row in rows:
            async with self.tx() as db:
                result = await db.exec(update(Turn).where(
                    Turn.id == row.id, Turn.status == "held").values(status="pending"))
                if result.rowcount == 1:
                    claimed.append(row)
        return claimed

    async def sessions_with_held_turns(self) -> list[str]:
        async with self.tx() as db:
            rows = await db.exec(select(Turn.session_id).distinct().join(
                Session, col(Session.id) == Turn.session_id).where(
                Turn.status == "held", Session.state != "paused"))
            return [r for r in rows.all() if r]

    async def find_open(self, agent: str, scope_key: str, *, user: str | None = None,
                        prefix: bool = False) -> Session | None:
        """The newest open session of the agent in the scope (or under a scope prefix)."""
        scope = col(Session.scope_key).startswith(scope_key) if prefix \
            else Session.scope_key == scope_key
        query = select(Session).where(Session.agent == agent, scope,
                                      col(Session.state).in_(OPEN_STATES))
        if user:
            query = query.where(Session.user_id == user)
        async with self.tx() as db:
            return (await db.exec(query.order_by(col(Session.last_activity_at).desc()))).first()

    async def create_api_session(self, agent: str, tag: str, user_id: str,
                                 user_name: str) -> Session:
        """A session without a provider, to try an agent before binding it."""
        now = self.clock.now()
        async with self.tx() as db:
            row = Session(id=_new_session_id(), agent=agent, scope_key="", state="live",
                          source="api", tag=tag, user_id=user_id, user_name=user_name,
                          started_at=now, last_activity_at=now)
            row.scope_key = f"api/{row.id}"
            db.add(row)
            db.add(SessionMessage(session_id=row.id, at=now, role="system",
                                  text="session started", data={"state": "live"}))
            return row


def _new_session_id() -> str:
    from switchboard.models import new_id

    return new_id("ses")
