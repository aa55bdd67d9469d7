"""The durable outbox: replies written with the transcript, claimed and delivered by workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
from sqlmodel import col, select

from channels.messages import OutboundMessage
from switchboard.models import Outbox, Turn, TurnEvent
from switchboard.redact import Redactor
from switchboard.store import fast
from switchboard.store import statements as sql
from switchboard.store.accounts import AccountStore
from switchboard.store.database import Database
from switchboard.store.hooks import emit, emit_messages
from switchboard.store.outbound import OUTBOUND_KEY, sent_in_session
from switchboard.store.records import OutboxEntry, load


@dataclass(frozen=True)
class AgentResult:
    """What the agent handler produced for one turn."""

    reply: str
    activity: tuple[dict[str, Any], ...] = ()
    context: dict[str, Any] | None = None
    duration_ms: int = 0
    model: str | None = None
    interaction: dict[str, Any] | None = None  # what the agent asks people (interactions.py)
    files: tuple[dict[str, Any], ...] = ()  # the agent's files: {name, type, content_base64|url}
    handoff: dict[str, Any] | None = None  # the agent asks for a person: {"reason"} (takeover.py)


class OutboxStore:
    """`store.outbox`: replies recorded with the transcript, leased, delivered or retried."""

    def __init__(self, db: Database, accounts: AccountStore, redact: Redactor) -> None:
        self.db = db
        self.clock = db.clock
        self.accounts = accounts  # each attempt notes the account's health in its transaction
        self.redact = redact

    async def record_reply(self, turn_ids: list[str], session_id: str, user_text: str | None,
                           result: AgentResult, outbound: OutboundMessage,
                           lease: timedelta,
                           notes: Sequence[tuple[str, dict[str, Any]]] = (),
                           also: Callable[[Any], Any] | None = None) -> OutboxEntry:
        """Transcript (user message, activity, reply), turn fields and the outbox row, at once.

        Either all of it is written or none, so a crash leaves the turn waiting for its agent
        or waiting for its delivery, never in between. `turn_ids` are the turns this reply
        answers (several after a pause); the last one carries the outbox row. `notes` are
        timeline events of the last turn gathered while the agent ran (its working indicator).
        `also` writes what else belongs to the reply in the same transaction (an interaction
        it asks).
        """
        now = self.clock.now()
        turn_id = turn_ids[-1]

        def work(db: Any) -> Any:
            entries: list[dict[str, Any]] = []
            if user_text is not None:
                entries.append({"role": "user", "text": user_text, "data": {}})
            entries += [{"role": "activity", "data": item,
                         "text": str(item.get("name") or item.get("type") or "")}
                        for item in result.activity]
            entries.append({"role": "agent", "text": result.reply,
                            "data": {"model": result.model} if result.model else {}})
            messages = [{"session_id": session_id, "at": now, "turn_id": turn_id, **entry}
                        for entry in entries]
            fast.execute(db, sql.ADD_MESSAGES, messages)
            emit_messages(db, messages)
            touch = {"session": session_id, "now": now, "answered": len(turn_ids)}
            if result.context is not None:
                fast.execute(db, sql.TOUCH_SESSION_CONTEXT, {**touch,
                                                               "v_context": result.context})
            else:
                fast.execute(db, sql.TOUCH_SESSION, touch)
            fast.execute(db, sql.REPLIED, [
                {"turn": answered, "v_reply": result.reply, "v_agent_ms": result.duration_ms,
                 "v_session_id": session_id} for answered in turn_ids])
            detail = {"duration_ms": result.duration_ms,
                      **({"model": result.model} if result.model else {}),
                      **({"together_with": turn_ids} if len(turn_ids) > 1 else {})}
            fast.execute(db, sql.ADD_EVENTS, [
                {"turn_id": turn_id, "at": now, "name": name, "detail": note}
                for name, note in notes] + [
                {"turn_id": answered, "at": now, "name": "agent_replied", "detail": detail}
                for answered in turn_ids])
            if also is not None:
                also(db)
            return self._add(db, turn_id, outbound, session_id=session_id,
                             batch=turn_ids[:-1], lease=lease)

        return await self.db.run_tx(work, group=True)

    async def record_notice(self, turn_id: str, outbound: OutboundMessage,
                            keep_status: bool = True, lease: timedelta | None = None,
                            leased: bool = True) -> OutboxEntry:
        """A short message to the person that is not an agent reply (a refusal, a command's
        answer). With `keep_status`, delivering it leaves the turn's status as it is. Not
        `leased`: no process attempts it now (the CLI); any `serve` sweeping the outbox does."""

        def work(db: Any) -> Any:
            db.exec(update(Turn).where(col(Turn.id) == turn_id).values(
                reply_text=outbound.text, delivery_status="pending"))
            return self._add(db, turn_id, outbound, notice=keep_status, lease=lease,
                             leased=leased)

        return await self.db.run_tx(work, group=True)

    def _add(self, db: Any, turn_id: str, outbound: OutboundMessage, *,
             session_id: str | None = None, batch: list[str] | None = None,
             notice: bool = False, lease: timedelta | None = None,
             leased: bool = True) -> OutboxEntry:
        """The outbox row, leased to this process for its first attempt: a crash before that
        attempt leaves it to be retried when the lease runs out."""
        now = self.clock.now()
        values = sql.outbox_row(
            turn_id=turn_id, session_id=session_id, batch=batch or [], notice=notice,
            provider=outbound.provider, account=outbound.account,
            conversation=outbound.conversation, thread=outbound.thread,
            reply_to=outbound.reply_to, text=outbound.text, extra=outbound.extra,
            next_attempt_at=now, created_at=now, attempts=1 if leased else 0,
            claimed_until=now + (lease or timedelta(seconds=30)) if leased else None)
        values["id"] = fast.insert_id(db, sql.ADD_OUTBOX, values)
        return OutboxEntry(**values)

    async def due(self, limit: int = 100) -> list[int]:
        """Rows ready for an attempt: pending or retrying, due, and not leased by a live worker."""
        now = self.db.naive(self.clock.now())
        async with self.db.tx() as db:
            rows = await db.exec(select(Outbox.id).where(
                col(Outbox.status).in_(("pending", "retrying")), Outbox.next_attempt_at <= now,
                or_(col(Outbox.claimed_until).is_(None), Outbox.claimed_until < now),
            ).order_by(col(Outbox.next_attempt_at)).limit(limit))
            return [r for r in rows.all() if r is not None]

    async def claim(self, outbox_id: int, lease: timedelta) -> OutboxEntry | None:
        """Lease one row for one attempt; None when another worker holds it or it is done.

        A conditional UPDATE is the lock: exactly one process sees rowcount 1, on SQLite and
        PostgreSQL alike. A worker that dies leaves the lease to expire, then the row is retried.
        """
        now = self.clock.now()
        naive = self.db.naive
        async with self.db.tx() as db:
            result = await db.exec(update(Outbox).where(
                col(Outbox.id) == outbox_id, col(Outbox.status).in_(("pending", "retrying")),
                Outbox.next_attempt_at <= naive(now),  # not before its backoff is over
                or_(col(Outbox.claimed_until).is_(None), Outbox.claimed_until < naive(now)),
            ).values(claimed_until=now + lease, attempts=Outbox.attempts + 1))
            if result.rowcount != 1:
                return None
            row = await db.get(Outbox, outbox_id)
            return load(OutboxEntry, row) if row is not None else None

    async def delivered(self, row: OutboxEntry, provider_message_id: str,
                        detail: dict[str, Any],
                        notes: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        """The attempt succeeded: the row is done, its turns delivered, the account healthy.
        `notes` are more timeline events of the row's turn (how its live message ended)."""
        now = self.clock.now()

        def work(db: Any) -> Any:
            fast.execute(db, sql.OUTBOX_DELIVERED, {"row": row.id})
            turns = [*row.batch, row.turn_id]
            fast.execute(db, sql.TURNS_DELIVERED if row.notice else sql.TURNS_DELIVERED_ANSWERED,
                               [{"turn": turn, "v_attempts": row.attempts,
                                 "v_message_id": provider_message_id, "v_at": now}
                                for turn in turns])
            self.accounts.note_traffic_in(db, row.account, outbound=True)
            if row.session_id and row.extra.get(OUTBOUND_KEY):  # an agent started it
                sent_in_session(db, row.session_id, now)
            fast.execute(db, sql.ADD_EVENTS, [
                {"turn_id": turn_id, "at": now, "name": "delivered",
                 "detail": {"attempt": row.attempts, "provider_message_id": provider_message_id,
                            **detail}} for turn_id in turns] + [
                {"turn_id": row.turn_id, "at": now, "name": name, "detail": extra}
                for name, extra in notes])
            for turn_id in turns:
                emit(db, "turn.delivered", {**_outbox_data(row, turn_id),
                                            "attempt": row.attempts,
                                            "provider_message_id": provider_message_id})

        return await self.db.run_tx(work, group=True)

    async def failed(self, row: OutboxEntry, error: str, *, retry_at: datetime | None,
                     detail: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Record a failed attempt: retry at `retry_at`, or fail the turn when it is None.
        `extra` replaces the row's: what the next attempt sends, when a part went out (the
        reply before an interaction's prompt); the timeline says so (`sent_part`)."""
        now = self.clock.now()
        final = retry_at is None
        error = self.redact(error)  # a provider's error text may quote its URL, and the token
        if extra is not None:
            detail = {**detail, "sent_part": "reply", "next": "the prompt alone"}

        def work(db: Any) -> Any:
            db.exec(update(Outbox).where(col(Outbox.id) == row.id).values(
                status="failed" if final else "retrying", claimed_until=None,
                next_attempt_at=retry_at or now,
                **({"extra": extra} if extra is not None else {})))
            turn_values: dict[str, Any] = {
                "delivery_status": "failed" if final else "retrying",
                "delivery_attempts": row.attempts, "error": error}
            if final and not row.notice:
                turn_values["status"] = "failed"
            turns = [*row.batch, row.turn_id]
            db.exec(update(Turn).where(col(Turn.id).in_(turns)).values(**turn_values))
            self.accounts.note_traffic_in(db, row.account, error=error)
            for turn_id in turns:
                db.add(TurnEvent(turn_id=turn_id, at=now,
                                 name="delivery_failed" if final else "delivery_retry",
                                 detail={"attempt": row.attempts, "error": error, **detail,
                                         **({"retry_at": retry_at.isoformat()}
                                            if retry_at else {})}))
                if final:
                    emit(db, "turn.failed", {**_outbox_data(row, turn_id),
                                             "attempt": row.attempts, "error": error})

        return await self.db.run_tx(work)

    async def retry(self, turn_id: str, actor: str) -> int | None:
        """Make a failed delivery due again, with its attempts counted afresh (an operator's
        *Retry delivery*); its outbox id, or None when the turn's delivery has not failed."""
        now = self.clock.now()

        def work(db: Any) -> int | None:
            row = db.exec(select(Outbox).where(Outbox.turn_id == turn_id,
                                               Outbox.status == "failed")).first()
            if row is None:
                return None
            moved = db.exec(update(Outbox).where(col(Outbox.id) == row.id,
                                                 Outbox.status == "failed").values(
                status="retrying", attempts=0, next_attempt_at=now, claimed_until=None))
            if moved.rowcount != 1:  # another operator retried it a moment ago
                return None
            turns = [*row.batch, row.turn_id]
            values: dict[str, Any] = {"delivery_status": "retrying"}
            if not row.notice:
                values["status"] = "pending"
            db.exec(update(Turn).where(col(Turn.id).in_(turns)).values(**values))
            for turn in turns:
                db.add(TurnEvent(turn_id=turn, at=now, name="delivery_retried",
                                 detail={"by": actor}))
            return row.id

        return await self.db.run_tx(work)

    async def postpone(self, row: OutboxEntry, until: datetime, detail: dict[str, Any]) -> None:
        """Pacing holds the reply longer than a lease: due again at `until`, the attempt given
        back (a paced message waits; it does not use up its attempts), a `paced` event."""
        now = self.clock.now()

        def work(db: Any) -> Any:
            db.exec(update(Outbox).where(col(Outbox.id) == row.id).values(
                claimed_until=None, next_attempt_at=until, attempts=Outbox.attempts - 1))
            db.add(TurnEvent(turn_id=row.turn_id, at=now, name="paced",
                             detail={**detail, "until": until.isoformat()}))

        return await self.db.run_tx(work)

    async def depth(self) -> int:
        """Replies waiting for delivery (pending or retrying)."""
        async with self.db.tx() as db:
            return (await db.exec(select(func.count()).select_from(Outbox).where(
                col(Outbox.status).in_(("pending", "retrying"))))).one()


def _outbox_data(row: OutboxEntry, turn_id: str) -> dict[str, Any]:
    """What a turn.delivered or turn.failed webhook says of the reply's outbox row."""
    return {"turn_id": turn_id, "session_id": row.session_id, "provider": row.provider,
            "account": row.account, "conversation": row.conversation, "thread": row.thread,
            "text": row.text, "notice": row.notice}
