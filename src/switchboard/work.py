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


Refill = Callable[[int], Coroutine[Any, Any, list[tuple[str, InboundMessage]]]]
REFILL_BATCH = 500  # turns read back from the database per query


class TurnQueue:
    """Recorded turns waiting for `journey`. At most `workers` turns are worked at once; the
    rest wait as plain entries in a queue, not as tasks.

    Memory: with a `limit`, a received turn that finds the queue full is recorded as `queued`
    and waits only in the database (`arrive`, `arrived`); once one does, every later one does
    too until `refill` (this process's `queued` turns, oldest first, at most n) has caught up,
    so no turn overtakes one that waits there. Below `limit // 2` the queue refills in
    batches, one query each."""

    def __init__(self, journey: Journey, workers: int, tasks: Tasks, limit: int | None = None,
                 refill: Refill | None = None) -> None:
        self._journey = journey
        self._workers = workers
        self._tasks = tasks
        self._queue: deque[tuple[str, InboundMessage | None]] = deque()
        self._runners = 0
        self.limit = limit if refill is not None else None
        self._refill = refill
        self._reserved = 0  # received turns being recorded that go to memory
        self._recording = 0  # received turns being recorded as `queued`
        self.backlog = 0  # this process's `queued` turns recorded and not yet read back
        self._recorded = 0  # how many `queued` turns were recorded, ever (see `_read_back`)
        self._refilling = False
        self.refilled = 0  # how many turns were read back, ever

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def waiting(self) -> int:
        """Turns of this process waiting in the database (recorded as `queued`)."""
        return max(0, self.backlog)

    def enqueue(self, turn_id: str, message: InboundMessage | None = None) -> None:
        """Queue a recorded turn; without `message` the journey reads it from the store."""
        self._queue.append((turn_id, message))
        if self._runners < self._workers:
            self._runners += 1
            self._tasks.spawn(self._run())

    def room(self) -> int:
        """How many more turns memory takes (recovery claims no more than that)."""
        if self.limit is None:
            return REFILL_BATCH
        if self.backlog > 0 or self._recording:
            return 0
        return max(0, self.limit - len(self._queue) - self._reserved)

    def arrive(self) -> bool:
        """A received turn is about to be recorded: True when it is to wait in the database
        (recorded as `queued`), False when it comes to memory. Tell `arrived` how it went."""
        if self.limit is None:
            return False
        if self.backlog > 0 or self._recording \
                or len(self._queue) + self._reserved >= self.limit:
            self._recording += 1
            return True
        self._reserved += 1
        return False

    def arrived(self, spilled: bool, turn_id: str | None = None,
                message: InboundMessage | None = None) -> None:
        """The turn `arrive` was asked about is recorded (`turn_id`), or not (None: a
        duplicate, or the commit failed)."""
        if not spilled:
            if self.limit is not None:
                self._reserved -= 1
            if turn_id is not None:
                self.enqueue(turn_id, message)
            return
        self._recording -= 1
        if turn_id is not None:
            self.backlog += 1
            self._recorded += 1
        self.refill_soon()

    def adopted(self, count: int) -> None:
        """`count` more turns wait in the database for this process (a dead one's)."""
        self.backlog += count
        self._recorded += count
        self.refill_soon()

    def refill_soon(self) -> None:
        """Read turns back from the database when memory has room for a batch. Not while a
        turn bound for memory is still being recorded: it arrived before the ones waiting."""
        if self._refill is None or self._refilling or self.backlog <= 0 or self._reserved:
            return
        assert self.limit is not None
        if len(self._queue) > self.limit // 2:
            return
        self._refilling = True
        self._tasks.spawn(self._read_back())

    async def _read_back(self) -> None:
        assert self._refill is not None and self.limit is not None
        try:
            while self.backlog > 0 and len(self._queue) <= self.limit // 2:
                wanted = min(REFILL_BATCH, self.limit - len(self._queue))
                quiet, recorded = not self._recording, self._recorded
                batch = await self._refill(wanted)
                if self._refill is None:  # shut down meanwhile: recovery takes them (pending)
                    return
                self.refilled += len(batch)
                if quiet and recorded == self._recorded and len(batch) < wanted:
                    self.backlog = 0  # none was being recorded meanwhile: all are back
                else:
                    self.backlog -= len(batch)  # below 0 for a moment: read back before
                    # `arrived` counted it
                for turn_id, message in batch:
                    self.enqueue(turn_id, message)
                if not batch:
                    break
        finally:
            self._refilling = False

    async def _run(self) -> None:
        try:
            while self._queue:
                entry = self._queue.popleft()
                if self.backlog > 0:
                    self.refill_soon()
                await guard(self._journey(*entry))
        finally:
            self._runners -= 1

    def clear(self) -> None:
        """Forget what is still queued (shutdown): those turns stay recorded as this
        process's, and recovery takes them over."""
        self._queue.clear()
        self._refill = None


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
