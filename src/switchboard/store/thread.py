"""One thread that owns SQLite's one write connection and runs whole transactions, the ones
that record webhook turns first."""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
ACK, WORK = 0, 1  # priorities: lower runs first


class DatabaseThread:
    """A single worker thread with a priority queue of jobs.

    SQLite allows one writer at a time; giving every write to one thread means no transaction
    ever waits in SQLite's busy handler (which sleeps), and acknowledgements never wait behind
    a queue of other work, only behind the one transaction already running.
    """

    def __init__(self, name: str = "sb-db") -> None:
        self._jobs: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            _, _, job = self._jobs.get()
            if job is None:
                return
            loop, future, work = job
            try:
                result = work()
            except BaseException as error:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, error)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    async def run(self, work: Callable[[], T], priority: int = WORK) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((priority, next(self._order), (loop, future, work)))
        return await future

    def stop(self) -> None:
        self._jobs.put((99, next(self._order), None))


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
