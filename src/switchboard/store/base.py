"""Shared plumbing of the store: the engine, short transactions, times, cursors."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from switchboard.clock import Clock
from switchboard.db import sqlite_thread_engine
from switchboard.store.thread import ACK, WORK, Checkpointer, DatabaseThread

T = TypeVar("T")


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    value = aware(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def encode_cursor(at: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{iso(at)}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError on a cursor we did not make."""
    padded = cursor + "=" * (-len(cursor) % 4)
    at, _, ident = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    if not ident:
        raise ValueError("bad cursor")
    return datetime.fromisoformat(at.replace("Z", "+00:00")), ident


class StoreBase:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.worker_id: str | None = None
        self._turn_queue: list[tuple[Any, asyncio.Future[bool]]] = []
        self._turn_writer: asyncio.Task[None] | None = None
        self._acks_waiting = asyncio.Event()
        self._acks_waiting.set()
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        # On SQLite, transactions on the hot path run whole in a thread of their own, one
        # hop each: the write lock is never held across turns of the event loop.
        self._thread_engine = sqlite_thread_engine(engine)
        self._thread = DatabaseThread() if self._thread_engine is not None else None
        database = engine.url.database if self.is_sqlite else None
        self._checkpointer = (Checkpointer(database)
                              if database and database != ":memory:" else None)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        """One short transaction: committed on success, rolled back on error.

        On SQLite (one connection, one writer) a transaction waits while webhook turns wait
        to be recorded: acknowledgements go first, the rest of a turn's work fits between.
        """
        if self.is_sqlite:
            await self._acks_waiting.wait()
        async with self._sessions() as db, db.begin():
            yield db

    async def run_tx(self, work: Callable[[Session], T], *, ack: bool = False) -> T:
        """Run `work` (plain synchronous ORM code) as one transaction.

        On SQLite it runs whole in a database thread, in one hop; elsewhere through the async
        session. The transaction that records webhook turns (`ack`) goes first: others wait
        for it to finish.
        """
        engine, thread = self._thread_engine, self._thread
        if engine is None or thread is None:
            async with self._sessions() as db, db.begin():
                return await db.run_sync(work)

        def run() -> T:
            with Session(engine, expire_on_commit=False) as db, db.begin():
                return work(db)

        if ack:
            self._acks_waiting.clear()
        try:
            return await thread.run(run, ACK if ack else WORK)
        finally:
            if ack:
                self._acks_waiting.set()

    def close(self) -> None:
        if self._thread_engine is not None:
            self._thread_engine.dispose()
        if self._thread is not None:
            self._thread.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def naive(self, value: datetime) -> datetime:
        """Times as bound parameters: SQLite compares strings, so drop the zone there."""
        return value.replace(tzinfo=None) if self.is_sqlite else value
