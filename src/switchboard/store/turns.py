"""Turns and their timelines: recorded on the acknowledged path, then updated step by step."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from channels.adapter import Recorded
from channels.messages import InboundMessage
from switchboard.models import Session as SessionRow
from switchboard.models import SessionMessage, Turn, TurnEvent, Worker, new_id
from switchboard.store import fast
from switchboard.store import statements as sql
from switchboard.store.database import Database
from switchboard.store.hooks import emit, emit_messages, emit_turns_received, routes_of, turn_data
from switchboard.store.records import (
    Page,
    TimelineEvent,
    TurnRecord,
    TurnStory,
    decode_cursor,
    encode_cursor,
    load,
)
from switchboard.store.search import page_rows
from switchboard.store.session_moves import paused_reason

log = logging.getLogger(__name__)

SOLO_BUDGET = 5.0  # seconds: how long a failed group's turns may take, written one at a time
WAITING = ("pending", "queued")  # acknowledged, not answered yet (queued: not even started)


class TurnStore:
    """`store.turns`: every turn, from its recording to its delivery."""

    def __init__(self, db: Database, worker: str | None) -> None:
        self.db = db
        self.clock = db.clock
        self.worker = worker  # the process that works on the turns it records (see Worker)
        self._group: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._group_writer: asyncio.Task[None] | None = None
        self._add_turns = db.insert(Turn.__table__).on_conflict_do_nothing()  # built once

    async def record(self, message: InboundMessage, payload: dict[str, Any],
                     extra: Mapping[str, Any] | None = None, queued: bool = False) -> Recorded:
        """Insert the turn, or, when the event or message is already recorded, a duplicate of it.
        `queued`: the turn waits in the database for room in this process's queue (work.py).

        The partial unique indexes on (account, event_id) and (account, dedupe_key) decide,
        so two processes racing on one retry still record a single original.
        """
        now = self.clock.now()
        extra = extra or {}
        row = _turn_row(message, payload, extra, now)
        row["owner"] = self.worker
        if queued:
            row["status"] = "queued"
        if await self._commit_in_group(row):
            return Recorded(row["id"])
        async with self.db.tx() as db:
            original = (await db.exec(select(Turn).where(
                Turn.account == message.account, Turn.status != "duplicate",
                or_(Turn.event_id == message.event_id,
                    and_(col(Turn.dedupe_key).is_not(None),
                         Turn.dedupe_key == message.dedupe_key)),
            ))).first()
            if original is None:  # lost a race with a delete; record it plainly next time
                raise RuntimeError("duplicate turn without an original")
            duplicate = Turn(**{**_turn_row(message, payload, extra, now),
                                "status": "duplicate", "duplicate_of": original.id,
                                "dedupe_key": None,
                                "route_reason": _duplicate_reason(message, original)})
            db.add(duplicate)
            db.add(TurnEvent(turn_id=duplicate.id, at=now, name="duplicate",
                             detail={"original": original.id}))
            db.add(TurnEvent(turn_id=original.id, at=now, name="duplicate_received",
                             detail={"duplicate": duplicate.id, "event_id": message.event_id,
                                     **{k: v for k, v in extra.items()
                                        if k.startswith("retry")}}))
        return Recorded(duplicate.id, duplicate_of=original.id)

    async def _commit_in_group(self, row: dict[str, Any]) -> bool:
        """Insert the turn and its `received` event in a transaction shared with whatever other
        turns arrive meanwhile (group commit): each caller returns once the commit holding its
        turn is durable, and a burst of webhooks pays for one commit instead of one each.
        False when a unique index refused the turn (a duplicate)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._group.append((row, done))
        if self._group_writer is None or self._group_writer.done():
            self._group_writer = asyncio.create_task(self._write_groups())
        return await done

    async def _write_groups(self) -> None:
        while self._group:
            group, self._group = self._group[:500], self._group[500:]
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
        turns = Turn.__table__
        ids = [row["id"] for row in rows]
        sqlite = self.db.is_sqlite

        def write(db: Session) -> set[str]:
            changed = fast.execute(db, self._add_turns, rows)
            if sqlite and changed == len(rows):  # (sqlite3 sums executemany's changes)
                inserted = set(ids)  # none was a duplicate: no need to ask which went in
            else:
                inserted = set(db.connection().execute(
                    select(turns.c.id).where(turns.c.id.in_(ids))).scalars())
            received = [{"turn_id": row["id"], "at": row["received_at"], "name": "received",
                         "detail": {"event_id": row["event_id"]}}
                        for row in rows if row["id"] in inserted]
            if received:
                fast.execute(db, sql.ADD_EVENTS, received)
                emit_turns_received(db, (row for row in rows if row["id"] in inserted))
            return inserted

        return await self.db.run_tx(write, ack=True)

    async def update(self, turn_id: str, event: str | None = None,
                     detail: dict[str, Any] | None = None, **fields: Any) -> None:
        """Change turn fields and append the timeline event that explains the change."""
        now = self.clock.now()

        def work(db: Session) -> None:
            if fields:
                db.exec(update(Turn).where(col(Turn.id) == turn_id).values(**fields))
            if event:
                db.add(TurnEvent(turn_id=turn_id, at=now, name=event, detail=detail or {}))
            if fields.get("status") == "failed" and routes_of(db) is not None:
                turn = db.get(Turn, turn_id)
                if turn is not None:
                    emit(db, "turn.failed", {**turn_data(turn.model_dump()),
                                             "session_id": turn.session_id,
                                             "error": fields.get("error")})

        await self.db.run_tx(work, group=True)

    async def note(self, turn_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Append timeline events to a turn, in order, in one transaction."""
        now = self.clock.now()

        def work(db: Session) -> None:
            for name, detail in events:
                db.add(TurnEvent(turn_id=turn_id, at=now, name=name, detail=detail))

        await self.db.run_tx(work, group=True)

    async def get(self, turn_id: str) -> TurnRecord | None:
        async with self.db.tx() as db:
            row = await db.get(Turn, turn_id)
            return load(TurnRecord, row) if row is not None else None

    async def undelivered(self, turn_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Of these turns, those whose reply is not (yet) delivered: `{"status": failed,
        pending or retrying, "error": the provider's words}`, for transcripts to mark."""
        if not turn_ids:
            return {}
        query = select(Turn.id, Turn.status, Turn.delivery_status, Turn.error).where(
            col(Turn.id).in_(set(turn_ids)))
        async with self.db.tx() as db:
            rows = (await db.exec(query)).all()
        out: dict[str, dict[str, Any]] = {}
        for turn_id, status, delivery, error in rows:
            state = "failed" if status == "failed" else delivery or "pending"
            if status != "delivered" and state != "delivered":
                out[turn_id] = {"status": state, **({"error": error} if error else {})}
        return out

    async def story(self, turn_id: str) -> TurnStory | None:
        """The turn and its whole timeline, oldest event first."""
        async with self.db.tx() as db:
            turn = await db.get(Turn, turn_id)
            if turn is None:
                return None
            events = (await db.exec(select(TurnEvent).where(TurnEvent.turn_id == turn_id)
                                    .order_by(col(TurnEvent.id)))).all()
        return TurnStory(load(TurnRecord, turn),
                         tuple(load(TimelineEvent, event) for event in events))

    async def live_started(self, turn_id: str) -> dict[str, Any] | None:
        """What the turn's live message was when it started (`stream.started`), so a process
        taking the turn over goes on with that message instead of starting another."""
        async with self.db.tx() as db:
            detail = (await db.exec(
                select(TurnEvent.detail).where(TurnEvent.turn_id == turn_id,
                                               TurnEvent.name == "stream.started")
                .order_by(col(TurnEvent.id).desc()).limit(1))).first()
        if not isinstance(detail, dict) or not detail.get("message_id"):
            return None
        return {"mode": detail.get("mode"), "id": detail.get("message_id")}

    async def bindings_replied_in_thread(self, account: str, conversation: str,
                                         thread: str) -> frozenset[str]:
        """Bindings that already answered in this thread (for `follow_threads`)."""
        async with self.db.tx() as db:
            rows = await db.exec(select(Turn.binding).distinct().where(
                Turn.account == account, Turn.conversation == conversation,
                or_(Turn.thread == thread, Turn.message_id == thread),
                col(Turn.binding).is_not(None), col(Turn.reply_text).is_not(None),
            ))
            return frozenset(b for b in rows.all() if b)

    async def claim_orphans(self, stale_after: timedelta, limit: int = 500) -> list[str]:
        """Take over turns acknowledged but never answered whose process died (no heartbeat
        for `stale_after`), oldest first, at most `limit` (those it left `queued` are adopted
        by `store.backlog`). Each is claimed with a conditional update, so of several
        processes recovering at once exactly one gets it."""
        if limit <= 0:
            return []
        cutoff = self.db.naive(self.clock.now() - stale_after)
        async with self.db.tx() as db:
            rows = (await db.exec(
                select(Turn.id, Turn.owner).join(Worker, col(Worker.id) == Turn.owner,
                                                 isouter=True)
                .where(Turn.status == "pending", col(Turn.reply_text).is_(None),
                       col(Turn.delivery_status).is_(None),
                       or_(col(Turn.owner).is_(None), col(Worker.id).is_(None),
                           Worker.heartbeat_at < cutoff))
                .order_by(col(Turn.received_at), col(Turn.id)).limit(limit))).all()
        claimed = []
        for turn_id, owner in rows:
            async with self.db.tx() as db:
                owned = col(Turn.owner).is_(None) if owner is None else Turn.owner == owner
                result = await db.exec(
                    update(Turn).where(Turn.id == turn_id, owned, Turn.status == "pending")
                    .values(owner=self.worker))
                if result.rowcount == 1:
                    db.add(TurnEvent(turn_id=turn_id, at=self.clock.now(), name="recovered",
                                     detail={"from_worker": owner, "worker": self.worker}))
                    claimed.append(turn_id)
        return claimed

    async def page(self, filters: Mapping[str, Any], cursor: str | None = None,
                   limit: int = 50, search: str | None = None) -> Page[TurnRecord]:
        """Newest first, filtered, one page and the cursor of the next (None at the end).

        Duplicates are listed only when asked for with status=duplicate: a retried event is
        one turn, with its retries on its timeline. `search` is an exact turn, session or
        event id, or words of the text (`store/search.py`). Listed turns have no payload.
        """
        after = None
        if cursor:
            at, ident = decode_cursor(cursor)
            after = (self.db.naive(at), ident)
        async with self.db.tx() as db:
            rows = await page_rows(db, sqlite=self.db.is_sqlite, filters=filters,
                                   after=after, limit=limit + 1,
                                   search=(search or "").strip() or None)
        page = [_listed(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(page[-1].received_at, page[-1].id)
        return Page(page, next_cursor)

    # --- order across processes, and turns answered together ------------------------------

    async def wait_for_earlier(self, turn_id: str, account: str, conversation: str,
                               timeout: float, poll: float = 0.05) -> None:
        """Wait (up to `timeout` seconds) until no earlier turn of the conversation that
        another process works on is still unanswered, so a later message never overtakes an
        earlier one across processes. Within a process the lines of `work.py` keep the order;
        SQLite serves one process, so there it returns at once."""
        if self.db.is_sqlite:
            return
        deadline = time.monotonic() + timeout

        def earlier(db: Any) -> bool:
            received = db.exec(select(Turn.received_at).where(Turn.id == turn_id)).first()
            if received is None:
                return False
            return db.exec(select(Turn.id).where(
                Turn.account == account, Turn.conversation == conversation,
                col(Turn.status).in_(WAITING), col(Turn.reply_text).is_(None),
                or_(col(Turn.owner).is_(None), Turn.owner != self.worker),
                Turn.received_at > received - timedelta(minutes=10),
                or_(Turn.received_at < received,
                    and_(Turn.received_at == received, Turn.id < turn_id)),
            ).limit(1)).first() is not None

        # one run_tx (both statements in one hop through the session): on PostgreSQL every turn asks
        while await self.db.run_tx(earlier) and time.monotonic() < deadline:
            await asyncio.sleep(poll)

    async def coalesce(self, session_id: str, turns: list[tuple[str, str]]) -> None:
        """Turns that waited for a busy session, answered in one run (`coalesce: true`): each
        user message goes into the transcript, and each turn's timeline says with which."""
        ids = [turn_id for turn_id, _ in turns]
        async with self.db.tx() as db:
            for turn_id, text in turns:
                db.add(SessionMessage(session_id=session_id, at=self.clock.now(), role="user",
                                      text=text, turn_id=turn_id, data={"coalesced": True}))
                emit_messages(db, [{"session_id": session_id, "role": "user", "text": text,
                                    "turn_id": turn_id, "data": {"coalesced": True}}])
                db.add(TurnEvent(turn_id=turn_id, at=self.clock.now(), name="coalesced",
                                 detail={"together_with": ids, "session_id": session_id}))

    # --- turns held while their session is paused ----------------------------------------

    async def hold(self, turn_id: str, session_id: str, text: str) -> None:
        """Keep a turn that arrived while its session is paused: in the transcript where it
        happened, answered after resume."""
        async with self.db.tx() as db:
            await db.exec(update(Turn).where(col(Turn.id) == turn_id).values(status="held"))
            db.add(SessionMessage(session_id=session_id, at=self.clock.now(), role="user",
                                  text=text, turn_id=turn_id, data={"held": True}))
            emit_messages(db, [{"session_id": session_id, "role": "user", "text": text,
                                "turn_id": turn_id, "data": {"held": True}}])
            reason = paused_reason(await db.get(SessionRow, session_id))
            db.add(TurnEvent(turn_id=turn_id, at=self.clock.now(), name="held",
                             detail={"session_id": session_id, "reason": reason}))

    async def claim_held(self, session_id: str) -> list[TurnRecord]:
        """Take the held turns of a session that is no longer paused, oldest first; of
        several processes claiming at once, each turn goes to exactly one."""
        async with self.db.tx() as db:
            rows = (await db.exec(select(Turn).where(
                Turn.session_id == session_id, Turn.status == "held",
            ).order_by(col(Turn.received_at), col(Turn.id)))).all()
            held = [load(TurnRecord, row) for row in rows]
        claimed = []
        for turn in held:
            async with self.db.tx() as db:
                result = await db.exec(update(Turn).where(
                    col(Turn.id) == turn.id, Turn.status == "held").values(status="pending"))
                if result.rowcount == 1:
                    claimed.append(turn)
        return claimed

    async def held_sessions(self) -> list[str]:
        """Sessions no longer paused that still hold turns (a resume another process saw).

        Asked every sweep (once a second), so it reads the held turns through the status
        index, not DISTINCT in SQL: with DISTINCT, SQLite walked all of `turns` along the
        session index (2-3 s at a million turns, the read connection held meanwhile)."""
        async with self.db.tx() as db:
            rows = await db.exec(select(Turn.session_id).join(
                SessionRow, col(SessionRow.id) == Turn.session_id).where(
                Turn.status == "held", SessionRow.state != "paused"))
            return list(dict.fromkeys(r for r in rows.all() if r))


def _turn_row(message: InboundMessage, payload: dict[str, Any], extra: Mapping[str, Any],
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


def _listed(row: Any) -> TurnRecord:
    """A listed turn: every field but the provider's payload, which listings do not read."""
    return load(TurnRecord, _WithoutPayload(row))


class _WithoutPayload:
    __slots__ = ("row",)

    def __init__(self, row: Any) -> None:
        self.row = row

    def __getattr__(self, name: str) -> Any:
        return {} if name == "payload" else getattr(self.row, name)


def _duplicate_reason(message: InboundMessage, original: Turn) -> str:
    if original.event_id == message.event_id:
        return f"event {message.event_id} was already received as {original.id} (a retry)"
    return (f"message {message.message_id} in {message.conversation} was already received as "
            f"{original.id} (the same message delivered as another event)")


def _words(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0][:200]
