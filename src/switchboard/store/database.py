"""The database underneath the store: engines, short transactions, and SQLite's speed machinery.

Why the machinery exists (measured by the ack benchmark in bench/, see bench/README.md): SQLite has
one writer. Left to itself, every write waits in its busy handler (which sleeps) and every
commit may end in a checkpoint with an fsync, so a flood of webhooks is acknowledged at the
pace of the slowest write. Here:

- one thread (`DatabaseThread`) owns the write connection and runs whole transactions, one hop
  each, the ones that record webhook turns (`ack`) first; while acknowledgements keep coming the
  other work is metered to a share of the thread, so it cannot set their pace;
- the turns' own work transactions (`group`: route, reply, delivery) that are waiting together
  commit together, up to GROUP in one transaction: a commit (and the pages it writes to the
  log) costs about as much as the statements of one of them. One that fails harms no
  neighbour: the group is rolled back and each runs again alone;
- a `Checkpointer` thread copies the write-ahead log into the database file, passively, so the
  fsync is never part of a commit an acknowledgement waits for (`wal_autocheckpoint=0`);
- the async engine keeps one connection (`pool_size=1`): more only wait in the busy handler.

On PostgreSQL none of this applies: transactions go through the async engine's pool. (Running
`run_tx` work in a few threads on a synchronous psycopg engine instead was tried and measured by
the ack benchmark, bench/README.md: the same CPU per answered turn, about 10 ms of the process's
against about 2.5 on SQLite, and fewer acknowledgements, the threads taking the GIL from the
event loop that answers the webhooks. The limit there is the statements' count.)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from switchboard.clock import Clock
from switchboard.db import database_url, driver_url, is_sqlite

T = TypeVar("T")
log = logging.getLogger(__name__)
ACK, WORK = 0, 1  # ACK: the transaction that records webhook turns; WORK: everything else

# While acknowledgements keep coming, the rest of the work may use this share of the thread's
# time (seconds of work per second); when none has come for QUIET seconds it runs unmetered.
WORK_SHARE = 0.15
QUIET = 0.005
BURST = 0.05  # the most unmetered work time saved up for the next flood
GROUP = 32  # the most `group` transactions committed as one


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's job, outside commits
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: the turn indexes stay in memory
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str | None = None) -> AsyncEngine:
    """The one async engine of a process (SWITCHBOARD_DATABASE_URL unless `url` is given)."""
    url = url or database_url()
    if is_sqlite(url):
        engine = create_async_engine(driver_url(url, asynchronous=True), pool_size=1,
                                     max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(driver_url(url, asynchronous=True), pool_size=10,
                                     max_overflow=10, pool_pre_ping=True)
    return engine


def _thread_engine(engine: AsyncEngine) -> Engine | None:
    """On SQLite, a synchronous engine for the database thread."""
    if engine.dialect.name != "sqlite":
        return None
    sync = sa_create_engine(engine.url.set(drivername="sqlite"), pool_size=1, max_overflow=0,
                            connect_args={"check_same_thread": False})
    event.listen(sync, "connect", _sqlite_pragmas)
    return sync


class Database:
    """Short transactions over one engine and one clock, for the store's aggregates."""

    def __init__(self, engine: AsyncEngine, clock: Clock,
                 info: dict[str, Any] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.is_sqlite = engine.dialect.name == "sqlite"
        # handed to every transaction as `db.info` (the webhook subscriptions: store/hooks.py)
        self.info = info or {}
        self._acks_waiting = asyncio.Event()
        self._acks_waiting.set()
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False,
                                            info=self.info)
        self._thread_engine = _thread_engine(engine)
        self._thread = DatabaseThread(self._open) if self._thread_engine is not None else None
        path = engine.url.database if self.is_sqlite else None
        self._checkpointer = Checkpointer(path) if path and path != ":memory:" else None

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        """One short transaction: committed on success, rolled back on error. On SQLite it
        waits while webhook turns wait to be recorded: acknowledgements go first."""
        if self.is_sqlite:
            await self._acks_waiting.wait()
        async with self._sessions() as db, db.begin():
            yield db

    async def run_tx(self, work: Callable[[Session], T], *, ack: bool = False,
                     group: bool = False) -> T:
        """Run `work` (plain synchronous ORM or Core code) as one transaction: on SQLite whole
        in the database thread, in one hop; elsewhere through the async session. The
        transaction that records webhook turns (`ack`) goes first: others wait for it.

        `group`: on SQLite it may commit together with other such transactions waiting at the
        same time, so `work` must have no effect outside `db` (it may run a second time, alone,
        when the group it ran in was rolled back)."""
        thread = self._thread
        if thread is None:
            async with self._sessions() as db, db.begin():
                return await db.run_sync(work)
        if ack:
            self._acks_waiting.clear()
        try:
            return await thread.run(work, ACK if ack else WORK, group=group)
        finally:
            if ack:
                self._acks_waiting.set()

    def _open(self) -> Session:
        """An ORM session on the database thread's connection (SQLite)."""
        return Session(self._thread_engine, expire_on_commit=False, info=self.info)

    def naive(self, value: datetime) -> datetime:
        """Times as bound parameters: SQLite compares strings, so drop the zone there."""
        return value.replace(tzinfo=None) if self.is_sqlite else value

    def insert(self, table: Any) -> Any:
        """An INSERT with this dialect's ON CONFLICT clauses."""
        return (sqlite_insert if self.is_sqlite else pg_insert)(table)

    def close(self) -> None:
        """Stop the threads (after the jobs queued); the caller disposes of the engine."""
        if self._thread_engine is not None:
            self._thread_engine.dispose()
        if self._thread is not None:
            self._thread.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()


class Job:
    """One transaction waiting for the database thread."""

    __slots__ = ("future", "group", "loop", "work")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any],
                 work: Callable[[Session], Any], group: bool) -> None:
        self.loop, self.future, self.work, self.group = loop, future, work, group

    def settle(self, result: Any, error: BaseException | None) -> None:
        try:
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)
        except RuntimeError:  # its loop is closed: nobody waits for it, and the thread goes on
            log.debug("a database job finished after its event loop closed")


class DatabaseThread:
    """A single worker thread that runs whole transactions, acknowledgements first.

    Acknowledgements never wait behind a queue of other work, only behind the one transaction
    already running; during a flood of them the other work is metered to WORK_SHARE of the
    thread, and catches up when the flood stops. `group` jobs waiting next to each other
    commit as one transaction (up to GROUP).
    """

    def __init__(self, open_session: Callable[[], Session], name: str = "sb-db") -> None:
        self._open = open_session
        self._acks: deque[Job] = deque()
        self._work: deque[Job] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._budget = BURST
        self._refilled = self._last_ack = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _next(self) -> tuple[list[Job], bool] | None:
        """The next jobs and whether they are an acknowledgement; None once stopped."""
        with self._ready:
            while True:
                if self._acks:
                    return [self._acks.popleft()], True
                if self._work and (self._stopping or self._may_work()):
                    return self._take_work(), False
                if self._work:
                    self._ready.wait(min(QUIET, -self._budget / WORK_SHARE))
                elif self._stopping:
                    return None
                else:
                    self._ready.wait()

    def _may_work(self) -> bool:
        now = time.monotonic()
        self._budget = min(BURST, self._budget + (now - self._refilled) * WORK_SHARE)
        self._refilled = now
        return self._budget > 0 or now - self._last_ack > QUIET

    def _take_work(self) -> list[Job]:
        """The first work job, and the `group` jobs right behind it when it is one."""
        jobs = [self._work.popleft()]
        while jobs[0].group and self._work and self._work[0].group and len(jobs) < GROUP:
            jobs.append(self._work.popleft())
        return jobs

    def _run(self) -> None:
        while (picked := self._next()) is not None:
            jobs, ack = picked
            started = time.monotonic()
            if len(jobs) == 1 or not self._together(jobs):
                for job in jobs:
                    self._alone(job)
            finished = time.monotonic()
            with self._ready:
                if ack:
                    self._last_ack = finished
                elif self._acks or started - self._last_ack <= QUIET:  # metered in a flood
                    self._budget -= finished - started

    def _alone(self, job: Job) -> None:
        try:
            with self._open() as db, db.begin():
                result = job.work(db)
        except BaseException as error:  # handed to the awaiting coroutine
            job.settle(None, error)
        else:
            job.settle(result, None)

    def _together(self, jobs: list[Job]) -> bool:
        """Run `jobs` as one transaction; False (all rolled back) when one of them fails.
        An acknowledgement arriving meanwhile ends the group early: it waits for one job and
        the commit, not the whole group, and the jobs not run yet go back to the front."""
        results: list[Any] = []
        try:
            with self._open() as db, db.begin():
                for job in jobs:
                    if results and self._acks:
                        break
                    results.append(job.work(db))
        except BaseException:  # each runs again alone, and hears its own error there
            return False
        for job, result in zip(jobs, results, strict=False):
            job.settle(result, None)
        if len(results) < len(jobs):
            with self._ready:
                self._work.extendleft(reversed(jobs[len(results):]))
        return True

    async def run(self, work: Callable[[Session], T], priority: int = WORK, *,
                  group: bool = False) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._ready:
            (self._acks if priority == ACK else self._work).append(
                Job(loop, future, work, group))
            self._ready.notify()
        return await future

    def stop(self) -> None:
        """Finish the jobs queued, then end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file every `interval` seconds, from a
    connection of its own. A passive checkpoint neither waits for nor blocks writers, so the
    fsync it ends with is never part of a commit; the log restarts once it is all copied."""

    def __init__(self, path: str, interval: float = 1.0) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sb-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, timeout=0, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as error:  # busy or gone: the next round tries again
                    log.debug("checkpoint skipped: %s", error)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
