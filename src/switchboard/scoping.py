"""What an operator limited to some agents (`agents: [...]`) may see and act on: the turns,
sessions, inboxes and live events of those agents only. Asking for another agent's is
refused (403, `OutOfScope`); listings leave the others out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchboard.errors import SessionNotFound
from switchboard.operators import Operator
from switchboard.store import FileRecord, SessionRecord, Store


def scoped_filters(who: Operator, filters: dict[str, Any]) -> dict[str, Any]:
    """The listing's filters, narrowed to the operator's agents."""
    if who.agents is None:
        return filters
    if filters.get("agent"):
        who.check(filters["agent"], f"agent {filters['agent']}")
        return filters
    return {**filters, "agents": sorted(who.agents)}


async def own_session(store: Store, who: Operator, session_id: str) -> SessionRecord:
    """The session, when it is one of the operator's agents'."""
    session = await store.sessions.get(session_id)
    if session is None:
        raise SessionNotFound(f"no session {session_id}")
    who.check(session.agent, f"session {session_id} (agent {session.agent})")
    return session


async def own_file(store: Store, who: Operator, file: FileRecord) -> None:
    """OutOfScope unless the file's turn was answered by one of the operator's agents."""
    if who.agents is None:
        return
    turn = await store.turns.get(file.turn_id)
    who.check(turn.agent if turn else None, f"file {file.id} (turn {file.turn_id})")


class EventScope:
    """Which live events an operator limited to agents sees: those naming one of their agents,
    or a session or turn of one (looked up once each, then remembered)."""

    REMEMBERED = 10_000  # ids remembered before starting over (a stream may run for days)

    def __init__(self, store: Store, who: Operator) -> None:
        self.store = store
        self.who = who
        self._agent_of: dict[str, str | None] = {}

    async def shows(self, data: Mapping[str, Any]) -> bool:
        if self.who.agents is None:
            return True
        if len(self._agent_of) > self.REMEMBERED:
            self._agent_of.clear()
        if data.get("agent"):
            return self.who.sees(data["agent"])
        for key, find in (("session_id", self._session_agent), ("turn_id", self._turn_agent)):
            if data.get(key):
                return self.who.sees(await find(str(data[key])))
        return False

    async def _session_agent(self, session_id: str) -> str | None:
        if session_id not in self._agent_of:
            session = await self.store.sessions.get(session_id)
            self._agent_of[session_id] = session.agent if session else None
        return self._agent_of[session_id]

    async def _turn_agent(self, turn_id: str) -> str | None:
        agent = self._agent_of.get(turn_id)
        if agent is None:  # not routed yet when first seen: ask again
            turn = await self.store.turns.get(turn_id)
            agent = self._agent_of[turn_id] = turn.agent if turn else None
        return agent


__all__ = ["EventScope", "own_file", "own_session", "scoped_filters"]
