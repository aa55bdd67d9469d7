"""The session state machine, written once as a table, and the record of one move along it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sessions.errors import TransitionRefused

State = Literal["live", "idle", "paused", "waiting", "ended"]
STATES: tuple[State, ...] = ("live", "idle", "paused", "waiting", "ended")

# from-state -> the states it may move to. `waiting`: the agent asked people something (an
# interaction) and waits for the answer; it goes live again when the answer or the expiry comes.
TRANSITIONS: dict[str, frozenset[str]] = {
    "live": frozenset({"idle", "paused", "waiting", "ended"}),
    "idle": frozenset({"live", "paused", "waiting", "ended"}),
    "paused": frozenset({"live", "ended"}),
    "waiting": frozenset({"live", "paused", "ended"}),
    "ended": frozenset({"live"}),  # reopened within keep_alive
}

OPEN_STATES: tuple[State, ...] = ("live", "idle", "paused", "waiting")


def check_transition(current: str, target: str) -> None:
    """Raise TransitionRefused, in words, unless `current -> target` is in the table."""
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or "nothing"
        raise TransitionRefused(
            f"a session that is {current} cannot become {target}; from {current} it can "
            f"become {allowed}"
        )


@dataclass(frozen=True)
class StateChange:
    """One move of one session: what the transcript records and the live event announces."""

    session_id: str
    before: str
    target: str
    cause: str  # operator, user, transferred, keep_alive, idle_timeout, max_duration, interaction
    actor: str  # who: an operator's name, the person in the chat, `policy`, `cli`

    def event(self) -> dict[str, Any]:
        """The data of the `session.state_changed` live event."""
        return {"session_id": self.session_id, "from": self.before, "to": self.target,
                "cause": self.cause, "actor": self.actor}

    def transcript_entry(self, at: datetime) -> dict[str, Any]:
        """The system line the session's transcript keeps for this move (every column)."""
        return {"session_id": self.session_id, "at": at, "role": "system",
                "text": f"session {self.before} → {self.target} ({self.cause})",
                "turn_id": None, "data": {"from": self.before, "to": self.target,
                                          "cause": self.cause, "actor": self.actor}}


def scope_key(scope: str, *, account: str, conversation: str, thread: str | None,
              sender: str) -> str:
    """Which conversation scope a message belongs to, for the binding's `session_scope`."""
    if scope == "sender":
        return f"{account}/sender/{sender}"
    if scope == "thread":
        return f"{account}/{conversation}/thread/{thread or '-'}"
    return f"{account}/{conversation}"
