"""The agent asks for a person: `handler: http` answers `{"handoff": {"reason", "reply"?}}`.

The reply is recorded and delivered as any reply; in the same transaction the session is paused
with the agent's reason (the turn's timeline says it), so the person's next messages wait for
people; after it commits, the `session.handoff_requested` live event is published with
`{"session_id", "agent", "reason"}`. The console lists such sessions under *Waiting for
people*; an operator takes one over and hands it back (takeover.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sessions import StateChange
from sessions.events import EventHub
from switchboard.store import AgentResult, Store

HANDOFF_EVENT = "session.handoff_requested"

Writer = Callable[[Any], Any]


@dataclass
class Handoff:
    """One agent's request for a person, written with its reply (`write`), then announced."""

    store: Store
    session_id: str
    turn_id: str
    agent: str
    reason: str
    moved: list[StateChange] = field(default_factory=list)

    def __call__(self, db: Any) -> None:
        """Inside the reply's transaction: pause the session for people. (It may run twice: a
        transaction committed with others runs again alone when one of them fails.)"""
        change = self.store.takeovers.handoff(db, self.session_id, self.turn_id, self.reason,
                                              self.agent)
        self.moved = [change] if change is not None else []

    def event(self) -> dict[str, Any]:
        """The data of `session.handoff_requested`: plain, so it can be forwarded as it is."""
        return {"session_id": self.session_id, "agent": self.agent, "reason": self.reason}

    def announce(self, events: EventHub) -> None:
        """After the reply's transaction committed."""
        for change in self.moved:
            events.publish("session.state_changed", change.event())
        events.publish(HANDOFF_EVENT, self.event())


def handoff_of(store: Store, result: AgentResult, session_id: str, turn_id: str,
               agent: str) -> Handoff | None:
    """The handoff the agent's answer asks for, if any."""
    if not result.handoff:
        return None
    return Handoff(store, session_id, turn_id, agent, str(result.handoff["reason"]))


def both(*writers: Writer | None) -> Writer | None:
    """Several writers of one transaction as one (None when there is none)."""
    present = [w for w in writers if w is not None]
    if len(present) <= 1:
        return present[0] if present else None

    def write(db: Any) -> None:
        for writer in present:
            writer(db)

    return write
