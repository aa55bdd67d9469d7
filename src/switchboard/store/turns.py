"""Turns and their timelines."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from channels.messages import InboundMessage
from switchboard.models import Turn, TurnEvent, Worker, new_id
from switchboard.store.base import StoreBase, aware, decode_cursor, encode_cursor, iso

log = logging.getLogger(__name__)

SOLO_BUDGET = 5.0  # seconds: how long a failed group's turns may take, written one at a time
TURN_FILTERS = ("status", "provider", "account", "agent", "session_id", "binding", "conversation")


@dataclass(frozen=True)
class Recorded:
    """What recording an inbound message gave: the turn, and the original when it repeats one."""

    turn_id: str
    duplicate_of: str | None = None


class TurnQueries(StoreBase):
    async def record_turn(self, message: InboundMessage, payload: dict[str, Any],
                          extra: dict[str, Any] | None = None) -> Recorded:
        """Insert the turn, or, when the event or message is already recorded, a duplicate of it.

        The partial unique indexes on (account, event_id) and (account, dedupe_key) decide,
        so two processes racing on one retry still record a single original.
        """
        now = self.clock.now()
        row = _turn_row(message, payload, extra or {}, now)
        row["owner"] = self.worker_id
        if await self._commit_in_group(row):
            return Recorded(row["id"])
        async with self.tx() as db:
            original = (await db.exec(select(Turn).where(
                Turn.account == message.account, Turn.status != "duplicate",
                or_(Turn.event_id == message.event_id,
                    and_(col(Turn.dedupe_key).is_not(None),
                         Turn.dedupe_key == message.dedupe_key)),
            ))).first()
            if original is None:  # lost a race with a delete; record it plainly next time
                raise RuntimeError("duplicate turn without an original")
            duplicate = Turn(**{**_turn_row(message, payload, extra or {}, now),
                                "status": "duplicate", "duplicate_of": original.id,
                                "dedupe_key": None,
                                "route_reason": _duplicate_reason(message, original)})
            db.add(duplicate)
            db.add(TurnEvent(turn_id=duplicate.id, at=now, name="duplicate",
                             detail={"original": original.id}))
            db.add(TurnEvent(turn_id=original.id, at=now, name="duplicate_received",
                             detail={"duplicate": duplicate.id, "event_id": message.event_id,
                                     **{k: v for k, v in (extra or {}).items()
                                        if k.startswith("retry")}}))
        return Recorded(duplicate.id, duplicate_of=original.id)

    async def _commit_in_group(self, row: dict[str, Any]) -> bool:
        """Insert the turn and its `received` event in a transaction shared with whatever other
        turns arrive meanwhile (group commit): each caller returns once the commit holding its
        turn is durable, and a burst of webhooks pays for one commit instead of one each.
        False when a unique index refused the turn (a duplicate)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._turn_queue.append((row, done))
        if self._turn_writer is None or self._turn_writer.done():
            self._turn_writer = asyncio.create_task(self._write_turn_groups())
        return await done

    async def _write_turn_groups(self) -> None:
        while self._turn_queue:
            group, self._turn_queue = self._turn_queue[:500], self._turn_queue[500:]
            try:
                inserted = await self._insert_turns([row for row, _ in group])
            except Exception as error:
                await self._write_one_by_one(group, error)
                continue
            for row, done in group:
                if not done.done():
                    done.set_result(row["id"] in inserted)

    async def _write_one_by_one(self, group: list[tuple[dict[str, Any], asyncio.Future[bool]]],
                                error: Exception) -> None:
        """A group commit failed: write its turns one at a time, so a turn the database
        refuses fails alone instead of failing its neighbours. When the database itself is
        down this only costs time, so past SOLO_BUDGET the rest fail with the last error."""
        if len(group) > 1:
            log.warning("a group commit of %d turns failed (%s); writing them one at a time",
                        len(group), _words(error))
        deadline = time.monotonic() + SOLO_BUDGET
        for row, done in group:
            if done.done():
                continue
            if len(group) > 1 and time.monotonic() < deadline:
                try:
                    inserted = await self._insert_turns([row])
                except Exception as solo_error:  # this caller hears it; it is not acknowledged
                    error = solo_error
                else:
                    done.set_result(row["id"] in inserted)
                    continue
            done.set_exception(error)

    async def _insert_turns(self, rows: list[dict[str, Any]]) -> set[str]:
        """Plain rows through SQLAlchemy Core: the hottest write there is, and ORM objects
        would cost more than the insert itself."""
        insert = sqlite_insert if self.is_sqlite else pg_insert
        turns, events = Turn.__table__, TurnEvent.__table__
        ids = [row["id"] for row in rows]

        def write(db: Session) -> set[str]:
            connection = db.connection()
            connection.execute(insert(turns).on_conflict_do_nothing(), rows)
            inserted = set(connection.execute(
                select(turns.c.id).where(turns.c.id.in_(ids))).scalars())
            received = [{"turn_id": row["id"], "at": row["received_at"], "name": "received",
                         "detail": {"event_id": row["event_id"]}}
                        for row in rows if row["id"] in inserted]
            if received:
                connection.execute(sa_insert(events), received)
            return inserted

        return await self.run_tx(write, ack=True)

    async def update_turn(self, turn_id: str, event: str | None = None,
                          detail: dict[str, Any] | None = None, **fields: Any) -> None:
        """Change turn fields and append the timeline event that explains the change."""
        now = self.clock.now()

        def work(db: Session) -> None:
            if fields:
                db.exec(update(Turn).where(col(Turn.id) == turn_id).values(**fields))
            if event:
                db.add(TurnEvent(turn_id=turn_id, at=now, name=event, detail=detail or {}))

        await self.run_tx(work)

    async def get_turn_row(self, turn_id: str) -> Turn | None:
        async with self.tx() as db:
            return await db.get(Turn, turn_id)

    async def bindings_replied_in_thread(self, account: str, conversation: str,
                                         thread: str) -> frozenset[str]:
        """Bindings that already answered in this thread (for `follow_threads`)."""
        async with self.tx() as db:
            rows = await db.exec(select(Turn.binding).distinct().where(
                Turn.account == account, Turn.conversation == conversation,
                or_(Turn.thread == thread, Turn.message_id == thread),
                col(Turn.binding).is_not(None), col(Turn.reply_text).is_not(None),
            ))
            return frozenset(b for b in rows.all() if b)

    async def register_worker(self, worker_id: str) -> None:
        now = self.clock.now()
        self.worker_id = worker_id
        async with self.tx() as db:
            db.add(Worker(id=worker_id, started_at=now, heartbeat_at=now))

    async def heartbeat(self) -> None:
        async with self.tx() as db:
            await db.exec(update(Worker).where(Worker.id == self.worker_id).values(
                heartbeat_at=self.clock.now()))

    async def retire_worker(self) -> None:
        async with self.tx() as db:
            await db.exec(delete(Worker).where(Worker.id == self.worker_id))

    async def orphaned_turns(self, stale_after: timedelta) -> list[str]:
        """Take over turns acknowledged but never answered whose process died (no heartbeat
        for `stale_after`), oldest first. Each is claimed with a conditional update, so of
        several processes recovering at once exactly one gets it."""
        cutoff = self.naive(self.clock.now() - stale_after)
        async with self.tx() as db:
            rows = (await db.exec(
                select(Turn.id, Turn.owner).join(Worker, col(Worker.id) == Turn.owner,
                                                 isouter=True)
                .where(Turn.status == "pending", col(Turn.reply_text).is_(None),
                       col(Turn.delivery_status).is_(None),
                       or_(col(Turn.owner).is_(None), col(Worker.id).is_(None),
                           Worker.heartbeat_at < cutoff))
                .order_by(col(Turn.received_at), col(Turn.id)).limit(500))).all()
        claimed = []
        for turn_id, owner in rows:
            async with self.tx() as db:
                owned = col(Turn.owner).is_(None) if owner is None else Turn.owner == owner
                result = await db.exec(update(Turn).where(Turn.id == turn_id, owned)
                                       .values(owner=self.worker_id))
                if result.rowcount == 1:
                    db.add(TurnEvent(turn_id=turn_id, at=self.clock.now(), name="recovered",
                                     detail={"from_worker": owner, "worker": self.worker_id}))
                    claimed.append(turn_id)
        return claimed

    async def list_turns(self, filters: dict[str, str | None], cursor: str | None = None,
                         limit: int = 50, search: str | None = None
                         ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, filtered, one page and the cursor of the next (None at the end).

        Duplicates are listed only when asked for with status=duplicate: a retried event is
        one turn, with its retries on its timeline.
        """
        query = select(Turn)
        for key in TURN_FILTERS:
            if filters.get(key):
                query = query.where(getattr(Turn, key) == filters[key])
        if filters.get("status") != "duplicate":
            query = query.where(Turn.status != "duplicate")
        if search:
            query = query.where(or_(Turn.id == search, Turn.session_id == search,
                                    Turn.event_id == search))
        if cursor:
            at, ident = decode_cursor(cursor)
            at = self.naive(at)
            query = query.where(or_(Turn.received_at < at,
                                    and_(Turn.received_at == at, Turn.id < ident)))
        query = query.order_by(col(Turn.received_at).desc(), col(Turn.id).desc()).limit(limit + 1)
        async with self.tx() as db:
            rows = list((await db.exec(query)).all())
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(aware(page[-1].received_at), page[-1].id)  # type: ignore[arg-type]
        return [turn_dict(t) for t in page], next_cursor

    async def get_turn(self, turn_id: str) -> dict[str, Any] | None:
        async with self.tx() as db:
            turn = await db.get(Turn, turn_id)
            if turn is None:
                return None
            events = (await db.exec(select(TurnEvent).where(TurnEvent.turn_id == turn_id)
                                    .order_by(col(TurnEvent.id)))).all()
        out = turn_dict(turn)
        out["events"] = [{"at": iso(e.at), "name": e.name, **({"detail": e.detail}
                                                               if e.detail else {})}
                         for e in events]
        out["payload"] = turn.payload
        return out


def _turn_row(message: InboundMessage, payload: dict[str, Any], extra: dict[str, Any],
              now: datetime) -> dict[str, Any]:
    """The turns row of a newly received message: every column, so a batch inserts as one."""
    return {
        "id": new_id("turn"), "provider": message.provider, "account": message.account,
        "event_id": message.event_id, "dedupe_key": message.dedupe_key,
        "conversation": message.conversation, "kind": message.kind, "thread": message.thread,
        "message_id": message.message_id, "sender": message.sender,
        "sender_name": message.sender_name, "text": message.text, "received_at": now,
        "status": "pending", "route_reason": None, "binding": None, "agent": None,
        "session_id": None, "reply_text": None, "delivery_status": None,
        "delivery_attempts": 0, "provider_message_id": None, "error": None,
        "duplicate_of": None, "owner": None, "agent_ms": None, "payload": payload,
        "extra": {**message.extra, **extra, "mentioned": message.mentioned,
                  "starts_thread": message.starts_thread, "for_agent": message.for_agent,
                  **({"ignore_reason": message.ignore_reason} if message.ignore_reason else {})},
    }


def _duplicate_reason(message: InboundMessage, original: Turn) -> str:
    if original.event_id == message.event_id:
        return f"event {message.event_id} was already received as {original.id} (a retry)"
    return (f"message {message.message_id} in {message.conversation} was already received as "
            f"{original.id} (the same message delivered as another event)")


def turn_dict(turn: Turn) -> dict[str, Any]:
    """A turn as the API and `--json` show it."""
    return {
        "id": turn.id, "provider": turn.provider, "account": turn.account,
        "event_id": turn.event_id, "conversation": turn.conversation, "kind": turn.kind,
        "thread": turn.thread, "message_id": turn.message_id, "sender": turn.sender,
        "sender_name": turn.sender_name, "text": turn.text,
        "received_at": iso(turn.received_at), "status": turn.status,
        "route_reason": turn.route_reason, "binding": turn.binding, "agent": turn.agent,
        "session_id": turn.session_id, "reply_text": turn.reply_text,
        "delivery_status": turn.delivery_status, "delivery_attempts": turn.delivery_attempts,
        "provider_message_id": turn.provider_message_id, "error": turn.error,
        "duplicate_of": turn.duplicate_of, "agent_ms": turn.agent_ms,
    }


def _words(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0][:200]
