"""Outbound turns: a message an agent starts, recorded with its session and its outbox row in
one transaction, and cancelled (until it is sent) with one conditional update."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import col, select

from channels.messages import OutboundMessage
from sessions import Limits, StateChange
from switchboard.errors import ActionRefused, NoSuchTurn
from switchboard.models import Outbox, Session, SessionMessage, Turn, TurnEvent, new_id
from switchboard.store import fast
from switchboard.store import statements as sql
from switchboard.store.database import Database
from switchboard.store.hooks import emit_messages
from switchboard.store.records import OutboxEntry
from switchboard.store.session_moves import ScopeRequest, open_in, transfer_of, transition

OUTBOUND = "outbound"  # the `kind` of an outbound turn
OUTBOUND_KEY = "outbound"  # in its outbox row's `extra`: delivering it is `sent_in_session`


@dataclass(frozen=True)
class OutboundRequest:
    """An outbound message routed: the session scope its reply will have, what to deliver,
    when, and who asked."""

    scope: ScopeRequest
    route_reason: str
    out: OutboundMessage
    to: dict[str, Any]
    actor: str
    send_at: datetime | None = None  # None: now
    fresh: bool = False  # `session: new`: end the scope's open session first


@dataclass(frozen=True)
class Recorded:
    turn_id: str
    session_id: str
    how: str  # created, resumed, reopened
    outbox: OutboxEntry
    leased: bool  # leased to this process for an attempt now (not scheduled)
    transitions: tuple[StateChange, ...] = ()


class OutboundStore:
    """`store.outbound`: outbound turns, recorded and cancelled."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock

    async def record(self, request: OutboundRequest, policy: Limits,
                     lease: timedelta) -> Recorded:
        """The turn, its route and session (opened or continued, as the reply's would be), the
        transcript entry and the outbox row due at `send_at`, all or nothing.
        `ActionRefused` when the session limit refuses a new session."""
        now = self.clock.now()
        due = max(request.send_at or now, now)
        leased = due <= now

        def work(db: Any) -> Recorded:
            scope = request.scope
            turn_id = new_id("turn")
            events: list[tuple[str, dict[str, Any]]] = [
                ("outbound", {"by": request.actor, "to": request.to}),
                ("routed", {"binding": scope.binding, "agent": scope.agent,
                            "reason": request.route_reason})]
            transfer = transfer_of(db, scope.agent, scope.scope_key)
            if transfer is not None:
                events.append(("transferred", {"from_session": transfer[1],
                                               "agent": transfer[0]}))
                scope = replace(scope, agent=transfer[0])
            moved: list[StateChange] = []
            if request.fresh:
                current = db.execute(sql.OPEN_IN_SCOPE, {"agent": scope.agent,
                                                         "scope": scope.scope_key}
                                     ).scalars().first()
                if current is not None:
                    moved.append(transition(db, current, "ended", cause="operator",
                                            actor=request.actor, now=now))
            opened = open_in(db, scope, policy, now, self.db.naive)
            if opened.refused:
                raise ActionRefused(f"no session can be opened: {opened.refused}")
            name = {"created": "session_created", "reopened": "session_reopened"}.get(
                opened.how, "session_resumed")
            events.append((name, {"session_id": opened.session_id, "scope": scope.scope_key}))
            events.append(("scheduled", {"send_at": due.isoformat(), "by": request.actor}))
            out = request.out
            turn = Turn(id=turn_id, provider=out.provider, account=out.account,
                        event_id=f"outbound:{turn_id}", conversation=out.conversation,
                        kind=OUTBOUND, thread=out.thread, text=out.text, received_at=now,
                        status="pending", route_reason=request.route_reason,
                        binding=scope.binding, agent=scope.agent,
                        session_id=opened.session_id, reply_text=out.text,
                        delivery_status="pending" if leased else "scheduled",
                        payload={"to": request.to, "text": out.text,
                                 "send_at": due.isoformat()},
                        extra={"to": request.to, "send_at": due.isoformat(),
                               "by": request.actor, "for_agent": scope.agent})
            connection = db.connection()
            connection.execute(sql.turns.insert(), turn.model_dump())
            connection.execute(sql.ADD_EVENTS, [
                {"turn_id": turn_id, "at": now, "name": n, "detail": d} for n, d in events])
            entry = {"session_id": opened.session_id, "at": now, "role": "agent",
                     "text": out.text, "turn_id": turn_id,
                     "data": {"outbound": True, "by": request.actor}}
            connection.execute(sql.ADD_MESSAGES, entry)
            emit_messages(db, [entry])
            connection.execute(sql.TOUCH_SESSION, {"session": opened.session_id, "now": now,
                                                   "answered": 1})
            values = sql.outbox_row(
                turn_id=turn_id, session_id=opened.session_id, provider=out.provider,
                account=out.account, conversation=out.conversation, thread=out.thread,
                reply_to=out.reply_to, text=out.text, extra={**out.extra, OUTBOUND_KEY: True},
                next_attempt_at=due,
                created_at=now, attempts=1 if leased else 0,
                claimed_until=now + lease if leased else None)
            values["id"] = fast.insert_id(db, sql.ADD_OUTBOX, values)
            return Recorded(turn_id, opened.session_id, opened.how, OutboxEntry(**values),
                            leased, (*moved, *opened.transitions))

        return await self.db.run_tx(work)

    async def cancel(self, turn_id: str, actor: str) -> None:
        """Cancel an outbound message that has not been sent: its outbox row will never be
        attempted, its transcript entry goes. `ActionRefused` once it is sent (or being sent
        this moment, or failed, or cancelled already); `NoSuchTurn` for an unknown id."""
        now = self.clock.now()

        def work(db: Any) -> None:
            turn = db.get(Turn, turn_id)
            if turn is None:
                raise NoSuchTurn(f"no turn {turn_id}")
            if turn.kind != OUTBOUND:
                raise ActionRefused(f"turn {turn_id} is not an outbound message; only those "
                                    "can be cancelled")
            naive = self.db.naive(now)
            result = db.exec(update(Outbox).where(
                col(Outbox.turn_id) == turn_id, col(Outbox.status).in_(("pending", "retrying")),
                or_(col(Outbox.claimed_until).is_(None), Outbox.claimed_until < naive),
            ).values(status="cancelled", claimed_until=None))
            if result.rowcount != 1:
                row = db.exec(select(Outbox).where(Outbox.turn_id == turn_id)).first()
                raise ActionRefused(_not_cancelled(turn_id, row.status if row else "", turn))
            db.exec(update(Turn).where(col(Turn.id) == turn_id).values(
                status="cancelled", delivery_status="cancelled"))
            db.exec(delete(SessionMessage).where(col(SessionMessage.turn_id) == turn_id,
                                                 SessionMessage.role == "agent"))
            db.add(TurnEvent(turn_id=turn_id, at=now, name="cancelled", detail={"by": actor}))

        await self.db.run_tx(work)


def sent_in_session(db: Any, session_id: str, now: datetime) -> None:
    """An outbound message was sent (inside the transaction recording it): its session's
    clock starts now, as if it had just been asked for. A scheduled message's session may have
    idled or ended meanwhile: it is live again (`cause: outbound`), unless the scope has
    another open session by now (the reply goes there, as any message would)."""
    row = db.get(Session, session_id)
    if row is None:
        return
    if row.state == "ended":
        other = db.execute(sql.OPEN_IN_SCOPE, {"agent": row.agent,
                                               "scope": row.scope_key}).scalars().first()
        if other is not None or row.transferred_to:
            return
        transition(db, row, "live", cause="outbound", actor="outbound", now=now)
        row.ended_at = None
        row.end_cause = None
    elif row.state == "idle":
        transition(db, row, "live", cause="outbound", actor="outbound", now=now)
    row.last_activity_at = now
    db.add(row)


def _not_cancelled(turn_id: str, status: str, turn: Turn) -> str:
    if status == "delivered":
        return f"turn {turn_id} was already sent; a sent message cannot be cancelled"
    if status == "cancelled":
        return f"turn {turn_id} is cancelled already"
    if status == "failed":
        return f"turn {turn_id} was not sent: its delivery failed ({turn.error})"
    return f"turn {turn_id} is being sent right now; it can no longer be cancelled"


__all__ = ["OUTBOUND", "OUTBOUND_KEY", "OutboundRequest", "OutboundStore", "Recorded",
           "sent_in_session"]
