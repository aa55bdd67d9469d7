"""The session state machine, written once as a table."""

from __future__ import annotations

from typing import Literal

from channels.messages import SwitchboardError

State = Literal["live", "idle", "paused", "ended"]
STATES: tuple[State, ...] = ("live", "idle", "paused", "ended")

# from-state -> the states it may move to.
TRANSITIONS: dict[str, frozenset[str]] = {
    "live": frozenset({"idle", "paused", "ended"}),
    "idle": frozenset({"live", "paused", "ended"}),
    "paused": frozenset({"live", "ended"}),
    "ended": frozenset({"live"}),  # reopened within keep_alive
}

OPEN_STATES: tuple[State, ...] = ("live", "idle", "paused")


class TransitionRefused(SwitchboardError):
    """A state change the table does not allow."""


def check_transition(current: str, target: str) -> None:
    """Raise TransitionRefused, in words, unless `current -> target` is in the table."""
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or "nothing"
        raise TransitionRefused(
            f"a session that is {current} cannot become {target}; from {current} it can "
            f"become {allowed}"
        )


def scope_key(scope: str, *, account: str, conversation: str, thread: str | None,
              sender: str) -> str:
    """Which conversation scope a message belongs to, for the binding's `session_scope`."""
    if scope == "sender":
        return f"{account}/sender/{sender}"
    if scope == "thread":
        return f"{account}/{conversation}/thread/{thread or '-'}"
    return f"{account}/{conversation}"
