"""Counts in windows and pairings, shared by every process on the database.

A counter is one row per key, changed under a row lock (`SELECT … FOR UPDATE` on PostgreSQL;
SQLite has one writer), so two processes counting one sender's messages count each once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlmodel import Session

from channels.guards import CODE_TTL, PairingState, PairingVerdict, new_code, pairing_verdict
from switchboard.models import AuditEntry, GuardCounter, Pairing, Turn, TurnEvent, new_id
from switchboard.store.database import Database
from switchboard.store.records import aware

counters: Any = GuardCounter.__table__
pairings: Any = Pairing.__table__


@dataclass(frozen=True)
class Count:
    """A key's count in its current window, this hit included (unless `blocked`: the key is
    in a cooldown, until `blocked_until`, and the hit was not counted)."""

    count: int
    started_at: datetime
    blocked_until: datetime | None = None
    blocked: bool = False


@dataclass(frozen=True)
class PairingRecord:
    """One sender's pairing on one account, as `pairing list` shows it."""

    account: str
    sender: str
    sender_name: str
    status: str  # pending | expired | waiting | approved | denied
    code: str | None
    created_at: datetime
    expires_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    turn_id: str | None
    reply: dict[str, Any]


def _lock(db: Database, connection: Any, key: str, now: datetime) -> Any:
    """The counter row of `key`, created when missing, locked for this transaction."""
    connection.execute(db.insert(counters).values(key=key, started_at=now, count=0,
                                                  blocked_until=None)
                       .on_conflict_do_nothing(index_elements=["key"]))
    return connection.execute(select(counters).where(counters.c.key == key)
                              .with_for_update()).one()


class CounterStore:
    """`store.counters`: how many times a key was hit in its window."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock

    async def hit(self, key: str, window: timedelta, *, limit: int | None = None,
                  cooldown: timedelta | None = None) -> Count:
        """Count one more in the key's window (a new window once it is over). With `cooldown`,
        going over `limit` blocks the key for that long; hits meanwhile are not counted."""
        now = self.clock.now()

        def work(db: Session) -> Count:
            connection = db.connection()
            row = _lock(self.db, connection, key, now)
            started, count = aware(row.started_at), row.count
            blocked = aware(row.blocked_until) if row.blocked_until is not None else None
            if blocked is not None and now < blocked:
                return Count(count, started, blocked, blocked=True)
            if blocked is not None or now >= started + window:
                started, count, blocked = now, 0, None
            count += 1
            if cooldown is not None and limit is not None and count > limit:
                blocked = now + cooldown
            connection.execute(update(counters).where(counters.c.key == key).values(
                started_at=started, count=count, blocked_until=blocked))
            return Count(count, started, blocked)

        return await self.db.run_tx(work)

    async def peek(self, key: str, window: timedelta) -> Count:
        """The key's count in its current window, without counting."""
        now = self.clock.now()
        async with self.db.tx() as db:
            row = (await db.exec(select(counters).where(counters.c.key == key))).first()
        if row is None or now >= aware(row.started_at) + window:
            return Count(0, now)
        return Count(row.count, aware(row.started_at))


class PairingStore:
    """`store.pairings`: senders paired (or waiting to be) with an account."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock

    async def request(self, account: str, sender: str, sender_name: str, turn_id: str,
                      reply: dict[str, Any]) -> PairingVerdict:
        """Decide a DM under `dm_policy: pairing` and record what it changes (a new code, the
        time the code was re-sent), in one transaction that holds the account's lock, so the
        cap on pending codes holds across processes."""
        now = self.clock.now()

        def work(db: Session) -> PairingVerdict:
            connection = db.connection()
            _lock(self.db, connection, f"pairing:{account}", now)
            row = connection.execute(select(pairings).where(
                pairings.c.account == account, pairings.c.sender == sender)).first()
            state = None if row is None else PairingState(
                row.status, row.code, aware(row.expires_at) if row.expires_at else None,
                aware(row.notified_at) if row.notified_at else None)
            others = connection.execute(select(func.count()).select_from(pairings).where(
                pairings.c.account == account, pairings.c.sender != sender,
                pairings.c.status == "pending",
                pairings.c.expires_at > self.db.naive(now))).scalar_one()
            fresh = new_code()
            while connection.execute(select(pairings.c.sender).where(
                    pairings.c.code == fresh, pairings.c.status == "pending")).first():
                fresh = new_code()  # a code stands for one sender only
            verdict = pairing_verdict(state, others, now, account, sender, fresh)
            told = {"notified_at": now, "turn_id": turn_id, "reply": reply} \
                if verdict.notice else {}
            if verdict.admit or (state is not None and state.status == "denied"):
                return verdict
            if verdict.new:
                values = {"status": "pending", "code": verdict.code, "created_at": now,
                          "expires_at": now + CODE_TTL, **told}
            elif verdict.code is None:  # too many pending: told to try later
                values = {"status": "waiting", "code": None, "expires_at": None, **told}
            else:
                values = told
            if row is None:
                connection.execute(pairings.insert().values(
                    **{"account": account, "sender": sender, "sender_name": sender_name,
                       "created_at": now, "reply": {}, **values}))
            elif values:
                connection.execute(update(pairings).where(
                    pairings.c.account == account, pairings.c.sender == sender
                ).values(sender_name=sender_name or row.sender_name, **values))
            return verdict

        return await self.db.run_tx(work)

    async def approved(self, account: str, sender: str) -> bool:
        async with self.db.tx() as db:
            row = (await db.exec(select(pairings.c.status).where(
                pairings.c.account == account, pairings.c.sender == sender))).first()
        return row is not None and row[0] == "approved"

    async def pending(self, code: str) -> PairingRecord | None:
        """The pending (or expired) pairing with this code."""
        async with self.db.tx() as db:
            row = (await db.exec(select(pairings).where(
                pairings.c.code == code, pairings.c.status == "pending"))).first()
        return self._record(row) if row is not None else None

    async def decide(self, record: PairingRecord, status: str, actor: str
                     ) -> tuple[PairingRecord, str | None] | None:
        """Approve or deny a pending pairing (None: someone decided it meanwhile); the
        decision is in the audit log and on the timeline of the turn that got the code. An
        approval also records the turn that carries "you are in" to the person (its id is
        returned with the record): an operator's doing, so a turn of its own."""
        now = self.clock.now()
        action = "approved" if status == "approved" else "denied"

        def work(db: Session) -> str | None:
            result = db.connection().execute(update(pairings).where(
                pairings.c.account == record.account, pairings.c.sender == record.sender,
                pairings.c.status == "pending", pairings.c.code == record.code,
            ).values(status=status, decided_at=now, decided_by=actor))
            if result.rowcount != 1:
                return None
            db.add(AuditEntry(at=now, actor=actor, action=f"pairing.{action}",
                              target=f"{record.account}/{record.sender}",
                              detail={"code": record.code}))
            if record.turn_id:
                db.add(TurnEvent(turn_id=record.turn_id, at=now, name=f"pairing_{action}",
                                 detail={"by": actor, "code": record.code}))
            if status != "approved" or not record.reply:
                return ""
            notice = Turn(id=new_id("turn"), provider=record.reply["provider"],
                          account=record.account, event_id=new_id("evt"),
                          conversation=record.reply["conversation"], kind="dm",
                          sender=record.sender, sender_name=record.sender_name,
                          received_at=now, status="ignored",
                          route_reason=f"pairing approved by {actor} (code {record.code}); "
                                       "the person is told they are in",
                          extra={"pairing": record.code})
            db.add(notice)
            db.flush()
            db.add(TurnEvent(turn_id=notice.id, at=now, name="pairing_approved",
                             detail={"by": actor, "code": record.code,
                                     "code_turn": record.turn_id}))
            return notice.id

        notice_turn = await self.db.run_tx(work)
        if notice_turn is None:
            return None
        decided = PairingRecord(**{**record.__dict__, "status": status, "decided_at": now,
                                   "decided_by": actor})
        return decided, notice_turn or None

    async def revoke(self, account: str, sender: str, actor: str) -> bool:
        """Forget the sender's pairing (approved, denied or pending): they pair anew."""
        now = self.clock.now()

        def work(db: Session) -> bool:
            result = db.connection().execute(delete(pairings).where(
                pairings.c.account == account, pairings.c.sender == sender))
            if result.rowcount:
                db.add(AuditEntry(at=now, actor=actor, action="pairing.revoked",
                                  target=f"{account}/{sender}", detail={}))
            return bool(result.rowcount)

        return await self.db.run_tx(work)

    async def wrong_code(self, code: str, actor: str, count: int) -> None:
        """Record a code that matched no pending pairing (a typo, or guessing)."""
        async with self.db.tx() as db:
            db.add(AuditEntry(at=self.clock.now(), actor=actor, action="pairing.wrong_code",
                              target=code[:16], detail={"wrong_in_window": count}))

    async def listing(self) -> list[PairingRecord]:
        """Every pairing, pending first, newest first."""
        async with self.db.tx() as db:
            rows = (await db.exec(select(pairings).order_by(
                pairings.c.status != "pending", pairings.c.created_at.desc()))).all()
        return [self._record(row) for row in rows]

    def _record(self, row: Any) -> PairingRecord:
        expires = aware(row.expires_at) if row.expires_at else None
        status = row.status
        if status == "pending" and expires is not None and expires <= self.clock.now():
            status = "expired"
        return PairingRecord(
            account=row.account, sender=row.sender, sender_name=row.sender_name,
            status=status, code=row.code, created_at=aware(row.created_at), expires_at=expires,
            decided_at=aware(row.decided_at) if row.decided_at else None,
            decided_by=row.decided_by, turn_id=row.turn_id, reply=dict(row.reply or {}))
