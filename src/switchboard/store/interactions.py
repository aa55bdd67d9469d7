"""`store.interactions`: agents' requests to people, every answer attempt, and the turn that
hands the answer (or the expiry) back to the agent.

The first answer wins by a conditional `UPDATE … WHERE state = 'pending'` (and a unique index
on the accepted attempt): of two clicks at once, on any number of processes, exactly one
changes the row; the other is recorded as refused. The answer's turn is written in the same
transaction, so a crash never loses an accepted answer: the turn is recovered like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import col, select

from sessions import StateChange
from switchboard.errors import NotFound
from switchboard.models import (
    Interaction,
    InteractionAttempt,
    Session,
    SessionMessage,
    Turn,
    TurnEvent,
    new_id,
)
from switchboard.store.database import Database
from switchboard.store.hooks import emit, emit_messages
from switchboard.store.records import aware, load
from switchboard.store.session_moves import transition


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    id: str
    session_id: str
    agent: str
    turn_id: str
    kind: str
    prompt: str
    options: list[dict[str, Any]]
    responders: list[str]
    state: str
    provider: str
    account: str
    conversation: str
    thread: str | None
    created_at: datetime
    expires_at: datetime | None
    closed_at: datetime | None
    answer: dict[str, Any] | None
    answer_turn_id: str | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    interaction_id: str
    at: datetime
    via: str
    by_provider: str | None
    by_id: str
    by_name: str
    option: str | None
    text: str | None
    accepted: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One answer attempt as the store records it (`by_provider` None: an operator)."""

    via: str
    by_provider: str | None
    by_id: str
    by_name: str
    option: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Decided:
    """What an answer or an expiry did: the interaction as it is now, whether this call decided
    it, why not (refused), the turn handing it to the agent, and the session's moves."""

    interaction: InteractionRecord
    accepted: bool
    reason: str | None = None
    turn_id: str | None = None
    transitions: tuple[StateChange, ...] = ()


Judge = Callable[[InteractionRecord, Attempt], str | None]
"""Why an attempt may not answer a pending interaction (not a responder, no such option)."""


class InteractionStore:
    def __init__(self, db: Database, worker: str | None) -> None:
        self.db = db
        self.clock = db.clock
        self.worker = worker

    # --- asking ------------------------------------------------------------------------------

    def open_in(self, db: Any, values: dict[str, Any], now: datetime) -> list[StateChange]:
        """Inside the transaction recording the agent's reply: the interaction's row, its line
        in the transcript, and the session waiting (unless it is already)."""
        db.add(Interaction(**values, state="pending", created_at=now))
        session = db.get(Session, values["session_id"])
        moved: list[StateChange] = []
        if session is not None and session.state in ("live", "idle"):
            moved.append(transition(db, session, "waiting", cause="interaction",
                                    actor=values["agent"], now=now))
        db.add(TurnEvent(turn_id=values["turn_id"], at=now, name="interaction_requested",
                         detail={"interaction_id": values["id"], "kind": values["kind"],
                                 "prompt": values["prompt"],
                                 "responders": values["responders"]}))
        entry = {"session_id": values["session_id"], "at": now, "role": "interaction",
                 "text": values["prompt"], "turn_id": values["turn_id"],
                 "data": {"interaction_id": values["id"], "kind": values["kind"],
                          "options": values["options"], "responders": values["responders"]}}
        db.add(SessionMessage(**entry))
        emit(db, "interaction.requested", {
            "interaction_id": values["id"], "session_id": values["session_id"],
            "agent": values["agent"], "turn_id": values["turn_id"], "kind": values["kind"],
            "prompt": values["prompt"], "options": values["options"],
            "responders": values["responders"], "expires_at": _iso(values["expires_at"])
            if values.get("expires_at") else None}, now)
        emit_messages(db, [entry])
        return moved

    # --- answering ---------------------------------------------------------------------------

    async def answer(self, interaction_id: str, attempt: Attempt, judge: Judge,
                     answer: Callable[[InteractionRecord, datetime], dict[str, Any]],
                     label: Callable[[InteractionRecord, dict[str, Any]], str],
                     turn_id: str | None = None) -> Decided:
        """Record the attempt; when `judge` lets it and the interaction is still pending, it
        decides it: `answer(record, now)` is what the agent gets, on a new turn of the session
        (or on `turn_id`, the message that answered it)."""
        now = self.clock.now()

        def work(db: Any) -> Decided:
            row = db.get(Interaction, interaction_id, with_for_update=not self.db.is_sqlite)
            if row is None:
                raise NotFound(f"no interaction {interaction_id}")
            record = load(InteractionRecord, row)
            reason = "not pending" if record.state != "pending" else judge(record, attempt)
            if reason is None:
                view = answer(record, now)
                decided = self._decide(db, row, "answered", view, now,
                                       text=label(record, view), sender=attempt,
                                       existing=turn_id)
                if decided is not None:
                    self._attempt(db, interaction_id, attempt, now, True, None)
                    return decided
                db.refresh(row)
                record, reason = load(InteractionRecord, row), "not pending"
            self._attempt(db, interaction_id, attempt, now, False, reason)
            return Decided(record, False, reason)

        return await self.db.run_tx(work)

    async def expire_due(self, view: Callable[[InteractionRecord, datetime], dict[str, Any]]
                         ) -> list[Decided]:
        """Expire every pending interaction whose `expires_at` has come: the agent gets the
        expiry as the next turn of its session."""
        now = self.clock.now()
        async with self.db.tx() as db:
            due = list((await db.exec(select(Interaction.id).where(
                Interaction.state == "pending", col(Interaction.expires_at).is_not(None),
                col(Interaction.expires_at) <= self.db.naive(now)))).all())
        done = []
        for interaction_id in due:
            def work(db: Any, interaction_id: str = interaction_id) -> Decided | None:
                row = db.get(Interaction, interaction_id)
                if row is None or row.state != "pending":
                    return None
                record = load(InteractionRecord, row)
                return self._decide(db, row, "expired", view(record, now), now,
                                    text="expired without an answer", sender=None)
            decided = await self.db.run_tx(work)
            if decided is not None:
                done.append(decided)
        return done

    async def expire_ended(self) -> list[InteractionRecord]:
        """Pending interactions of sessions that ended: expired, with no turn (nobody waits)."""
        now = self.clock.now()
        # EXISTS, looked up per pending interaction by the session's key: `IN (SELECT … ended)`
        # made SQLite list every ended session first (0.3 s at 200,000 sessions, every sweep).
        ended = select(Session.id).where(col(Session.id) == Interaction.session_id,
                                         Session.state == "ended").exists()
        async with self.db.tx() as db:
            rows = list((await db.exec(select(Interaction).where(
                Interaction.state == "pending", ended))).all())
            out = []
            for row in rows:
                result = await db.exec(update(Interaction).where(
                    col(Interaction.id) == row.id, Interaction.state == "pending").values(
                    state="expired", closed_at=now,
                    answer={"id": row.id, "kind": row.kind, "expired": True,
                            "at": _iso(now), "cause": "session ended"}))
                if result.rowcount == 1:
                    await db.refresh(row)
                    out.append(load(InteractionRecord, row))
                    emit(db, "interaction.expired", {
                        "interaction_id": row.id, "session_id": row.session_id,
                        "agent": row.agent, "kind": row.kind, "answer": row.answer}, now)
            return out

    def _decide(self, db: Any, row: Interaction, state: str, view: dict[str, Any],
                now: datetime, *, text: str, sender: Attempt | None,
                existing: str | None = None) -> Decided | None:
        """Close the interaction (None when another answer or expiry came first), write the
        turn that hands `view` to the agent (or mark `existing`, the message that answered
        it), and let the session go live again."""
        turn_id = existing or new_id("turn")
        result = db.execute(update(Interaction).where(
            col(Interaction.id) == row.id, Interaction.state == "pending").values(
            state=state, answer=view, closed_at=now, answer_turn_id=turn_id))
        if result.rowcount != 1:
            return None
        if existing is not None:
            answering = db.get(Turn, existing)
            if answering is not None:
                answering.extra = {**(answering.extra or {}), "interaction": view,
                                   "interaction_session": row.session_id}
                db.add(answering)
        else:
            self._answer_turn(db, row, state, turn_id, view, now, sender)
        db.add(TurnEvent(turn_id=turn_id, at=now, name=f"interaction_{state}",
                         detail={"interaction_id": row.id, "session_id": row.session_id}))
        moved: list[StateChange] = []
        session = db.get(Session, row.session_id)
        others = db.execute(select(Interaction.id).where(
            Interaction.session_id == row.session_id, Interaction.state == "pending",
            Interaction.id != row.id)).first()
        if session is not None and session.state == "waiting" and others is None:
            actor = (sender.by_name or sender.by_id) if sender else "policy"
            moved.append(transition(db, session, "live", cause="interaction", actor=actor,
                                    now=now))
            session.last_activity_at = now
        entry = {"session_id": row.session_id, "at": now, "role": "interaction", "text": text,
                 "turn_id": turn_id, "data": {"interaction_id": row.id, "state": state,
                                              "answer": view}}
        db.add(SessionMessage(**entry))
        emit(db, f"interaction.{state}", {"interaction_id": row.id, "session_id": row.session_id,
                                          "agent": row.agent, "kind": row.kind,
                                          "answer": view, "turn_id": turn_id}, now)
        emit_messages(db, [entry])
        db.flush()
        db.refresh(row)
        return Decided(load(InteractionRecord, row), True, None, turn_id, tuple(moved))

    def _answer_turn(self, db: Any, row: Interaction, state: str, turn_id: str,
                     view: dict[str, Any], now: datetime, sender: Attempt | None) -> None:
        """The turn that carries an answer (or an expiry) to the agent, where the prompt was."""
        origin = db.get(Turn, row.turn_id)
        extra = {k: v for k, v in (origin.extra if origin is not None else {}).items()
                 if k not in ("command", "ignore_reason", "retry_num", "retry_reason")}
        extra.update(interaction=view, interaction_session=row.session_id)
        reason = f"the {state} interaction {row.id} goes back to its session"
        db.add(Turn(
            id=turn_id, provider=row.provider, account=row.account,
            event_id=f"{row.id}:{state}", dedupe_key=None, conversation=row.conversation,
            kind=origin.kind if origin is not None else "dm",
            thread=origin.thread if origin is not None else row.thread,
            message_id=origin.message_id if origin is not None else "",
            sender=sender.by_id if sender else "", sender_name=sender.by_name if sender else "",
            text=_turn_text(row, view), received_at=now, status="pending",
            route_reason=reason, agent=row.agent, session_id=row.session_id,
            owner=self.worker, payload={}, extra=extra))

    @staticmethod
    def _attempt(db: Any, interaction_id: str, attempt: Attempt, now: datetime,
                 accepted: bool, reason: str | None) -> None:
        db.add(InteractionAttempt(interaction_id=interaction_id, at=now, via=attempt.via,
                                  by_provider=attempt.by_provider, by_id=attempt.by_id,
                                  by_name=attempt.by_name, option=attempt.option,
                                  text=attempt.text, accepted=accepted, reason=reason))

    async def unheard(self) -> list[str]:
        """Turns carrying an answer (or an expiry) whose agent failed to take it: they are
        tried again until it does (an agent down for a while still hears the answer)."""
        async with self.db.tx() as db:
            rows = await db.exec(select(Turn.id).join(
                Interaction, col(Interaction.answer_turn_id) == Turn.id).where(
                Turn.status == "failed", col(Turn.delivery_status).is_(None),
                col(Interaction.state).in_(("answered", "expired"))).limit(100))
            return list(rows.all())

    async def hand_again(self, turn_id: str) -> bool:
        """Make a failed answer turn pending again for this process (once, of all processes)."""
        now = self.clock.now()
        async with self.db.tx() as db:
            result = await db.exec(update(Turn).where(
                col(Turn.id) == turn_id, Turn.status == "failed",
                col(Turn.delivery_status).is_(None)).values(
                status="pending", error=None, owner=self.worker))
            if result.rowcount != 1:
                return False
            db.add(TurnEvent(turn_id=turn_id, at=now, name="retried", detail={
                "reason": "the agent has not taken the interaction's answer yet"}))
            return True

    # --- after a decision made elsewhere ----------------------------------------------------

    async def claim_settle(self, interaction_id: str) -> bool:
        """Take on showing the decision at the provider: True for exactly one caller, of any
        number of processes that learn of it (a conditional update)."""
        now = self.clock.now()
        async with self.db.tx() as db:
            result = await db.exec(update(Interaction).where(
                col(Interaction.id) == interaction_id, col(Interaction.state) != "pending",
                col(Interaction.settled_at).is_(None)).values(settled_at=now))
            return bool(result.rowcount == 1)

    async def take_answer_turn(self, turn_id: str) -> bool:
        """Take up an answer's turn nobody works on (written by the CLI) for this process:
        True for exactly one of the processes following the shared events."""
        now = self.clock.now()
        async with self.db.tx() as db:
            result = await db.exec(update(Turn).where(
                col(Turn.id) == turn_id, Turn.status == "pending",
                col(Turn.owner).is_(None), col(Turn.reply_text).is_(None)).values(
                owner=self.worker))
            if result.rowcount != 1:
                return False
            db.add(TurnEvent(turn_id=turn_id, at=now, name="recovered", detail={
                "from_worker": None, "worker": self.worker,
                "reason": "an answer given elsewhere (the CLI)"}))
            return True

    # --- reading -----------------------------------------------------------------------------

    async def get(self, interaction_id: str) -> InteractionRecord | None:
        async with self.db.tx() as db:
            row = await db.get(Interaction, interaction_id)
            return load(InteractionRecord, row) if row is not None else None

    async def attempts(self, interaction_id: str) -> list[AttemptRecord]:
        async with self.db.tx() as db:
            rows = (await db.exec(select(InteractionAttempt).where(
                InteractionAttempt.interaction_id == interaction_id).order_by(
                col(InteractionAttempt.id)))).all()
            return [load(AttemptRecord, row) for row in rows]

    async def prompt_message_id(self, record: InteractionRecord) -> str | None:
        """The prompt's message at its provider: the delivered message of the asking turn."""
        async with self.db.tx() as db:
            turn = await db.get(Turn, record.turn_id)
            return turn.provider_message_id if turn is not None else None

    async def of_turn(self, turn_id: str) -> list[InteractionRecord]:
        """The interactions a turn asked (its reply carried the prompt) or answered, oldest
        first."""
        async with self.db.tx() as db:
            rows = (await db.exec(select(Interaction).where(or_(
                Interaction.turn_id == turn_id, Interaction.answer_turn_id == turn_id))
                .order_by(col(Interaction.created_at)))).all()
            return [load(InteractionRecord, row) for row in rows]

    async def listing(self, *, state: str | None = None, agents: list[str] | None = None,
                      session_id: str | None = None, limit: int = 200
                      ) -> list[InteractionRecord]:
        """Pending ones oldest first (who waits longest comes first); the others newest first."""
        query = select(Interaction)
        if state:
            query = query.where(Interaction.state == state)
        if agents is not None:
            query = query.where(col(Interaction.agent).in_(agents))
        if session_id:
            query = query.where(Interaction.session_id == session_id)
        order = col(Interaction.created_at)
        query = query.order_by(order if state == "pending" else order.desc()).limit(limit)
        async with self.db.tx() as db:
            return [load(InteractionRecord, row) for row in (await db.exec(query)).all()]


def _iso(at: datetime) -> str:
    value = aware(at)
    assert value is not None
    return value.isoformat().replace("+00:00", "Z")


def _turn_text(row: Interaction, view: dict[str, Any]) -> str:
    """The answer turn's text as the transcript and the agent's `turn.text` show it."""
    if view.get("expired"):
        return f"(the interaction {row.id} expired without an answer)"
    if view.get("text") is not None:
        return str(view["text"])
    option = next((o for o in row.options or [] if o.get("id") == view.get("option")), None)
    return str(option["label"]) if option else str(view.get("option") or "")


__all__ = ["Attempt", "AttemptRecord", "Decided", "InteractionRecord", "InteractionStore"]
