"""The statements a turn runs on its way to delivery, built once.

Building a SQLAlchemy statement and its cache key costs several times what SQLite needs to run
it; every turn runs a dozen of these, so they are built here, once, with bound parameters, and
executed on the transaction's connection (Core, no unit of work). Parameters that set a
column are named `v_<column>` (SQLAlchemy reserves the column's own name)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update

from sessions import OPEN_STATES
from sessions.policy import REOPENABLE_CAUSE
from switchboard.models import Outbox, Session, SessionMessage, Turn, TurnEvent

turns: Any = Turn.__table__
turn_events: Any = TurnEvent.__table__
sessions: Any = Session.__table__
messages: Any = SessionMessage.__table__
outbox: Any = Outbox.__table__

ADD_EVENTS = insert(turn_events)
ADD_MESSAGES = insert(messages)
ADD_OUTBOX = insert(outbox)  # its id: fast.insert_id
ADD_SESSION = insert(sessions)

ROUTE_TURN = update(turns).where(turns.c.id == bindparam("turn")).values(
    binding=bindparam("v_binding"), agent=bindparam("v_agent"),
    route_reason=bindparam("v_route_reason"))
ROUTE_TURN_TO_SESSION = ROUTE_TURN.values(session_id=bindparam("v_session_id"))

TOUCH_SESSION = update(sessions).where(sessions.c.id == bindparam("session")).values(
    last_activity_at=bindparam("now", type_=sessions.c.last_activity_at.type),
    turn_count=sessions.c.turn_count + bindparam("answered"))
TOUCH_SESSION_CONTEXT = TOUCH_SESSION.values(
    context=bindparam("v_context", type_=sessions.c.context.type))

# one parameter set per turn (executemany): an expanding IN is compiled again for each call
REPLIED = update(turns).where(turns.c.id == bindparam("turn")).values(
    reply_text=bindparam("v_reply"), agent_ms=bindparam("v_agent_ms"), delivery_status="pending",
    session_id=bindparam("v_session_id"))

OUTBOX_DELIVERED = update(outbox).where(outbox.c.id == bindparam("row")).values(
    status="delivered", claimed_until=None)
_DELIVERED = {"delivery_status": "delivered", "delivery_attempts": bindparam("v_attempts"),
              "provider_message_id": bindparam("v_message_id"), "error": None,
              "delivered_at": bindparam("v_at")}
TURNS_DELIVERED = update(turns).where(turns.c.id == bindparam("turn")).values(**_DELIVERED)
TURNS_DELIVERED_ANSWERED = TURNS_DELIVERED.values(status="delivered")

LATEST_IN_SCOPE = select(sessions.c.id, sessions.c.state, sessions.c.transferred_to).where(
    sessions.c.agent == bindparam("agent"), sessions.c.scope_key == bindparam("scope"),
).order_by(sessions.c.started_at.desc()).limit(1)
OPEN_IN_SCOPE = select(Session).where(
    Session.agent == bindparam("agent"), Session.scope_key == bindparam("scope"),  # type: ignore[arg-type]
    Session.state.in_(OPEN_STATES),  # type: ignore[attr-defined]
).order_by(Session.started_at.desc())  # type: ignore[attr-defined]
RECENT_ENDED = select(Session).where(
    Session.agent == bindparam("agent"), Session.scope_key == bindparam("scope"),  # type: ignore[arg-type]
    Session.state == "ended", Session.end_cause == REOPENABLE_CAUSE,  # type: ignore[arg-type]
    Session.ended_at >= bindparam("since"),  # type: ignore[operator]
).order_by(Session.ended_at.desc())  # type: ignore[union-attr]
TRANSFERRED_FROM = select(sessions.c.id).where(
    sessions.c.scope_key == bindparam("scope"), sessions.c.transferred_to == bindparam("agent"),
).order_by(sessions.c.ended_at.desc()).limit(1)


# a new session row's columns before its own values (Core inserts fill no model defaults)
SESSION_DEFAULTS: dict[str, Any] = {
    **{column.name: None for column in sessions.c}, "state": "live", "source": "api",
    "user_id": "", "user_name": "", "turn_count": 0}


def outbox_row(**values: Any) -> dict[str, Any]:
    """Every column of an outbox row (Core inserts fill no model defaults)."""
    return {"session_id": None, "batch": [], "notice": False, "thread": None, "reply_to": None,
            "extra": {}, "status": "pending", "attempts": 0, "claimed_until": None, **values}
