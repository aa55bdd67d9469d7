"""Sessions paused for people: an operator's takeover, the replies they send as the bot, the
hand-back to the agent, and the agent's own request for a person (a handoff).

Each action is one transaction: the session's row is locked (PostgreSQL) while its state, its
marker and its transcript change, so two operators acting at once see each other's result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from channels.live import LIVE_KEY
from channels.messages import OutboundMessage
from sessions import StateChange
from switchboard.errors import ActionRefused, SessionNotFound
from switchboard.models import Outbox, Session, SessionMessage, Turn, TurnEvent, new_id
from switchboard.store import statements as sql
from switchboard.store.database import Database
from switchboard.store.hooks import emit, emit_messages
from switchboard.store.outbox import OutboxStore
from switchboard.store.records import (
    OutboxEntry,
    SessionRecord,
    TurnRecord,
    iso,
    load,
)
from switchboard.store.session_moves import transition

OPERATOR_KIND = "operator"
"""The `kind` of the turn that carries an operator's reply (it has no inbound message)."""


@dataclass(frozen=True)
class HandedBack:
    """A hand-back: the state change, and the held turns given to the agent (empty when they
    were not replayed; those turns were closed instead)."""

    change: StateChange
    replayed: tuple[str, ...]
    closed: tuple[str, ...]


class TakeoverStore:
    """`store.takeovers`: the writes of takeover.py, each in one transaction."""

    def __init__(self, db: Database, outbox: OutboxStore) -> None:
        self.db = db
        self.clock = db.clock
        self.outbox = outbox

    def _row(self, db: Any, session_id: str) -> Session:
        row = db.get(Session, session_id, with_for_update=not self.db.is_sqlite)
        if row is None:
            raise SessionNotFound(f"no session {session_id}")
        return row

    async def take_over(self, session_id: str, operator: str) -> StateChange | None:
        """Pause the agent for the session (a paused one just changes hands); the change of
        state, or None when it was paused already."""
        now = self.clock.now()

        def work(db: Any) -> StateChange | None:
            row = self._row(db, session_id)
            if row.state == "ended":
                raise ActionRefused(f"session {session_id} is ended; only an open session can "
                                    "be taken over")
            if row.taken_over_by:
                raise ActionRefused(f"session {session_id} is already taken over by "
                                    f"{row.taken_over_by}")
            moved = None
            cause = f"taken over by {operator}"
            if row.state != "paused":
                moved = transition(db, row, "paused", cause=cause, actor=operator, now=now)
            else:
                entry = {"session_id": session_id, "at": now, "role": "system",
                         "text": f"session {cause}",
                         "data": {"takeover": operator, "actor": operator}}
                db.add(SessionMessage(**entry))
                emit_messages(db, [entry])
            row.taken_over_by = operator
            db.add(row)
            return moved

        return await self.db.run_tx(work)

    async def hand_back(self, session_id: str, operator: str, replay: bool) -> HandedBack:
        """The agent answers again. `replay`: the turns held meanwhile stay held, for the agent
        to answer at once; otherwise they are closed (the person was answered by people)."""
        now = self.clock.now()

        def work(db: Any) -> HandedBack:
            row = self._row(db, session_id)
            if row.state != "paused" or not (row.taken_over_by or row.handoff_reason):
                raise ActionRefused(
                    f"session {session_id} is {row.state} and not taken over: only a session "
                    "taken over (POST …/takeover) or handed to people by its agent can be "
                    "handed back")
            held = list(db.exec(select(Turn).where(
                Turn.session_id == session_id, Turn.status == "held",
            ).order_by(col(Turn.received_at), col(Turn.id))).all())
            by = row.taken_over_by or operator
            closed: list[str] = []
            if replay and held:
                _mark_replay(db, held, self._missed(db, session_id, held[0].received_at), by)
            elif held:
                closed = [t.id for t in held]
                reason = f"not given to the agent: {by} handled the conversation"
                db.exec(update(Turn).where(col(Turn.id).in_(closed), Turn.status == "held")
                        .values(status="ignored", route_reason=reason))
                db.connection().execute(sql.ADD_EVENTS, [
                    {"turn_id": t, "at": now, "name": "not_replayed",
                     "detail": {"reason": reason, "handed_back_by": operator}} for t in closed])
            moved = transition(db, row, "live", cause=f"handed back by {operator}",
                               actor=operator, now=now)
            row.last_activity_at = now
            return HandedBack(moved, tuple(t.id for t in held) if replay else (),
                              tuple(closed))

        return await self.db.run_tx(work)

    def _missed(self, db: Any, session_id: str, since: datetime) -> list[dict[str, Any]]:
        rows = db.exec(select(SessionMessage).where(
            SessionMessage.session_id == session_id,
            col(SessionMessage.role).in_(("user", OPERATOR_KIND)),
            SessionMessage.at >= self.db.naive(since),
        ).order_by(col(SessionMessage.id))).all()
        return [{"role": m.role, "text": m.text, "at": iso(m.at), "turn_id": m.turn_id,
                 **({"operator": (m.data or {}).get("operator")}
                    if m.role == OPERATOR_KIND else {})} for m in rows]

    async def latest_turn(self, session_id: str) -> TurnRecord | None:
        """The newest message the person sent in the session: an operator's reply goes where
        the agent's reply to it would."""
        async with self.db.tx() as db:
            row = (await db.exec(select(Turn).where(
                Turn.session_id == session_id, Turn.kind != OPERATOR_KIND,
                Turn.status != "duplicate",
            ).order_by(col(Turn.received_at).desc(), col(Turn.id).desc()).limit(1))).first()
            return load(TurnRecord, row) if row is not None else None

    async def last_reply_shape(self, session_id: str) -> OutboundMessage | None:
        """Where the agent's latest reply in the session went (conversation, thread, the
        adapter's extra such as a mail's subject): for a reply written where no adapter runs
        (the CLI)."""
        async with self.db.tx() as db:
            row = (await db.exec(select(Outbox).where(
                Outbox.session_id == session_id, col(Outbox.notice).is_(False),
            ).order_by(col(Outbox.id).desc()).limit(1))).first()
        if row is None:
            return None
        extra = {k: v for k, v in (row.extra or {}).items() if k not in ("files", LIVE_KEY)}
        return OutboundMessage(provider=row.provider, account=row.account,
                               conversation=row.conversation, text="", thread=row.thread,
                               reply_to=row.reply_to, extra=extra)

    async def record_reply(self, session: SessionRecord, operator: str,
                           outbound: OutboundMessage, lease: timedelta | None,
                           leased: bool = True) -> OutboxEntry:
        """An operator's message as the bot: its turn (kind `operator`), the transcript entry
        (role `operator`, with the name) and the outbox row, at once."""
        now = self.clock.now()
        turn_id = new_id("turn")
        reason = f"sent as the bot by operator {operator}"

        def work(db: Any) -> OutboxEntry:
            row = self._row(db, session.id)
            if row.state == "ended":
                raise ActionRefused(f"session {session.id} is ended; a reply needs an open "
                                    "session (the person's next message starts a new one)")
            db.add(Turn(id=turn_id, provider=outbound.provider, account=outbound.account,
                        event_id=new_id("op"), conversation=outbound.conversation,
                        kind=OPERATOR_KIND, thread=outbound.thread, sender=operator,
                        sender_name=operator, text=outbound.text, received_at=now,
                        status="pending", route_reason=reason, binding=row.binding,
                        agent=row.agent, session_id=row.id, reply_text=outbound.text,
                        delivery_status="pending", extra={"operator": operator}))
            db.add(SessionMessage(session_id=row.id, at=now, role=OPERATOR_KIND,
                                  text=outbound.text, turn_id=turn_id,
                                  data={"operator": operator}))
            emit_messages(db, [{"session_id": row.id, "role": OPERATOR_KIND, "at": now,
                                "text": outbound.text, "turn_id": turn_id,
                                "data": {"operator": operator}}])
            db.add(TurnEvent(turn_id=turn_id, at=now, name="operator_reply",
                             detail={"operator": operator, "session_id": row.id,
                                     "reason": reason}))
            row.last_activity_at = now
            db.add(row)
            db.flush()
            return self.outbox._add(db, turn_id, outbound, session_id=row.id, lease=lease,
                                    leased=leased)

        return await self.db.run_tx(work)

    def handoff(self, db: Any, session_id: str, turn_id: str, reason: str,
                agent: str) -> StateChange | None:
        """Inside the transaction recording the agent's reply: pause the session for people,
        with the agent's reason, on the turn's timeline too."""
        now = self.clock.now()
        row = self._row(db, session_id)
        if row.state == "ended":  # ended while the agent ran: nobody is waiting
            return None
        moved = None
        if row.state != "paused":
            moved = transition(db, row, "paused", cause=f"the agent asked for a person: "
                               f"{reason}", actor=agent, now=now)
        row.handoff_reason, row.handoff_at = reason, now
        db.add(row)
        db.add(TurnEvent(turn_id=turn_id, at=now, name="handoff_requested",
                         detail={"reason": reason, "session_id": session_id}))
        emit(db, "session.handoff_requested",
             {"session_id": session_id, "agent": agent, "reason": reason}, now)
        return moved

    async def waiting(self, agents: Iterable[str] | None = None) -> list[SessionRecord]:
        """Sessions their agent handed to people, still paused, oldest request first."""
        query = select(Session).where(Session.state == "paused",
                                      col(Session.handoff_reason).is_not(None))
        if agents is not None:
            query = query.where(col(Session.agent).in_(list(agents)))
        async with self.db.tx() as db:
            rows = (await db.exec(query.order_by(col(Session.handoff_at)).limit(500))).all()
            return [load(SessionRecord, row) for row in rows]


def _mark_replay(db: Any, held: list[Turn], missed: list[dict[str, Any]], by: str) -> None:
    """The last held turn carries what the agent missed: its text is every held message
    (as coalesced turns are), its `handback` the whole exchange with the operator."""
    last = held[-1]
    texts = [(t.extra or {}).get("agent_text") or t.text for t in held]
    extra = dict(last.extra or {})
    extra["handback"] = {"by": by, "missed": missed}
    if len(held) > 1:
        extra["agent_text"] = "\n\n".join(texts)
    last.extra = extra
    db.add(last)
