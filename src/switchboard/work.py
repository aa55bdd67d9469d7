"""The background work of one process: recorded turns queued for their journey, the tasks that
run them (and retries, releases), and one lock per session scope.

Speed: a flood of acknowledged turns must stay cheap to hold until their replies catch up, so
the queue keeps plain `(turn_id, message)` entries (the message without its payload), not a
task or a closure per turn, and at most `workers` runners drain it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from channels.messages import InboundMessage

log = logging.getLogger(__name__)

Journey = Callable[[str, InboundMessage | None], Coroutine[Any, Any, None]]


class Tasks:
    """Tasks of this process that outlive the call that started them; stopped by `drain`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.draining = False  # shutting down: timers start no more work (outbound.py)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        """Let running work finish (shutdown), then cancel what is left."""
        self.draining = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()


async def guard(work: Coroutine[Any, Any, None]) -> None:
    """Run `work`, logging what it raises: the turn stays recorded, and recovery (or the
    outbox sweep) picks it up."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("turn work failed")


class TurnQueue:
    """Recorded turns waiting for `journey`. At most `workers` turns are worked at once; the
    rest wait as plain entries in a queue, not as tasks."""

    def __init__(self, journey: Journey, workers: int, tasks: Tasks) -> None:
        self._journey = journey
        self._workers = workers
        self._tasks = tasks
        self._queue: deque[tuple[str, InboundMessage | None]] = deque()
        self._runners = 0

    def enqueue(self, turn_id: str, message: InboundMessage | None = None) -> None:
        """Queue a recorded turn; without `message` the journey reads it from the store."""
        self._queue.append((turn_id, message))
        if self._runners < self._workers:
            self._runners += 1
            self._tasks.spawn(self._run())

    async def _run(self) -> None:
        try:
            while self._queue:
                await guard(self._journey(*self._queue.popleft()))
        finally:
            self._runners -= 1

    def clear(self) -> None:
        """Forget what is still queued (shutdown): those turns stay recorded as this
        process's, and recovery takes them over."""
        self._queue.clear()


class Place:
    """A place in one line of `Line`: wait for it (`async with`), leave it when done. `item`
    is what the holder brought along (a coalescing turn); `taken` says an earlier place took
    it over."""

    def __init__(self, line: Line, key: str, item: Any) -> None:
        self.line = line
        self.key = key
        self.item = item
        self.taken = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def __aenter__(self) -> Place:
        try:
            await self.ready
        except asyncio.CancelledError:
            self.leave()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        self.leave()

    def leave(self) -> None:
        self.line.leave(self)


class Line:
    """First come, first served per key: a place is taken synchronously (so in the order the
    callers got there, before any of them awaits anything) and each waits for the one ahead.
    Unlike a lock acquired after some awaits, nothing can overtake."""

    def __init__(self) -> None:
        self._lines: dict[str, deque[Place]] = {}

    def take(self, key: str, item: Any = None) -> Place:
        line = self._lines.setdefault(key, deque())
        place = Place(self, key, item)
        if not line:
            place.ready.set_result(None)
        line.append(place)
        return place

    def leave(self, place: Place) -> None:
        line = self._lines.get(place.key)
        if line is None or place not in line:
            return
        head = line[0] is place
        line.remove(place)
        if not line:
            del self._lines[place.key]
        elif head and not line[0].ready.done():
            line[0].ready.set_result(None)

    def take_over(self, place: Place, accept: Callable[[Any], bool]) -> list[Any]:
        """The items of the places waiting behind `place`, in order, as long as `accept`
        takes them; those places are marked taken (their holders find the work done)."""
        taken = []
        for behind in list(self._lines.get(place.key, ()))[1:]:
            if behind.taken or not accept(behind.item):
                break
            behind.taken = True
            taken.append(behind.item)
        return taken


class ScopeLocks(Line):
    """One line per session scope (`agent:scope_key`): turns of one conversation are answered
    one after another, in order, while other conversations go on."""

    def __call__(self, agent: str, scope_key: str, item: Any = None) -> Place:
        return self.take(f"{agent}:{scope_key}", item)
