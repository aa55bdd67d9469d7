"""What a turn's journey picks up again: turns a dead process acknowledged but never answered,
and turns held while their session was paused, once it is live again."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from channels.rules import Binding
from switchboard.pipeline import Pipeline
from switchboard.store import Store
from switchboard.work import Tasks


class Recovery:
    """Hands unfinished turns back to the pipeline; safe in every process at once (each turn
    is claimed with a conditional update that only one process wins)."""

    def __init__(self, store: Store, pipeline: Pipeline, bindings: Iterable[Binding],
                 tasks: Tasks) -> None:
        self.store = store
        self.pipeline = pipeline
        self.bindings: dict[str, Binding] = {}
        for binding in bindings:  # the first of a name, as matching would find it
            self.bindings.setdefault(binding.name, binding)
        self.tasks = tasks

    async def recover(self, stale_after: timedelta = timedelta(seconds=15)) -> int:
        """Queue turns whose process died before their agent ran (this one's, after a restart,
        or another's), as many as the queue has room for; how many (those the dead process
        left waiting in the database are this process's to read back). Deliveries a dead
        process left half-done are retried by `Delivery.deliver_due` when their lease
        expires."""
        queue = self.pipeline.queue
        room = min(500, queue.room())
        orphans = await self.store.turns.claim_orphans(stale_after, limit=room)
        for turn_id in orphans:
            queue.enqueue(turn_id)
        if len(orphans) < room:  # every pending one is claimed: then the queued, newer ones
            queue.adopted(await self.store.backlog.adopt(stale_after))
        else:
            queue.refill_soon()
        return len(orphans)

    def resume_held(self, session_id: str) -> None:
        """A session was resumed here: answer what it held now, not at the next sweep."""
        self.tasks.spawn(self.release_held(session_id))

    async def release_held(self, session_id: str) -> None:
        """Answer, once, every turn a session held while it was paused."""
        held = await self.store.turns.claim_held(session_id)
        if not held:
            return
        session = await self.store.sessions.get(session_id)
        binding = self.bindings.get(held[-1].binding or "")
        if session is None or binding is None:
            return
        await self.pipeline.answer_held(held, binding, session)

    async def release_due(self) -> None:
        """Held turns of sessions resumed elsewhere (the CLI, another process)."""
        for session_id in await self.store.turns.held_sessions():
            await self.release_held(session_id)
