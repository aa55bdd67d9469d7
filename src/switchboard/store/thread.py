"""One thread that owns SQLite's one write connection and runs whole transactions, the ones
that record webhook turns first."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
ACK, WORK = 0, 1  # ACK: the transaction that records webhook turns; WORK: everything else

# While acknowledgements keep coming, the rest of the work may use this share of the thread's
# time (seconds of work per second); when none has come for QUIET seconds it runs unmetered.
WORK_SHARE = 0.15
QUIET = 0.005
BURST = 0.05  # the most unmetered work time saved up for the next flood


class DatabaseThread:
    """A single worker thread that runs whole transactions, acknowledgements first.

    SQLite allows one writer at a time; giving every write to one thread means no transaction
    ever waits in SQLite's busy handler (which sleeps). Acknowledgements never wait behind a
    queue of other work, only behind the one transaction already running, and during a flood
    of them the other work is metered to WORK_SHARE of the thread, so it cannot set the pace
    of acknowledgements; it catches up when the flood stops.
    """

    def __init__(self, name: str = "sb-db") -> None:
        self._acks: deque[Any] = deque()
        self._work: deque[Any] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._budget = BURST
        self._refilled = self._last_ack = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _next(self) -> tuple[Any, bool] | None:
        """The next job and whether it is an acknowledgement; None once stopped."""
        with self._ready:
            while True:
                if self._acks:
                    return self._acks.popleft(), True
                if self._work and self._stopping:
                    return self._work.popleft(), False
                if self._work:
                    now = time.monotonic()
                    self._budget = min(BURST, self._budget + (now - self._refilled) * WORK_SHARE)
                    self._refilled = now
                    if self._budget > 0 or now - self._last_ack > QUIET:
                        return self._work.popleft(), False
                    self._ready.wait(min(QUIET, -self._budget / WORK_SHARE))
                elif self._stopping:
                    return None
                else:
                    self._ready.wait()

    def _run(self) -> None:
        while (picked := self._next()) is not None:
            (loop, future, work), ack = picked
            started = time.monotonic()
            try:
                result = work()
            except BaseException as error:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, error)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)
            finished = time.monotonic()
            with self._ready:
                if ack:
                    self._last_ack = finished
                elif self._acks or started - self._last_ack <= QUIET:  # metered in a flood
                    self._budget -= finished - started

    async def run(self, work: Callable[[], T], priority: int = WORK) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._ready:
            (self._acks if priority == ACK else self._work).append((loop, future, work))
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
