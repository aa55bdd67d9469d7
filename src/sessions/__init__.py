"""Sessions: the state machine, policy and transcript; knows nothing of providers."""

from sessions.states import (
    OPEN_STATES,
    STATES,
    TRANSITIONS,
    TransitionRefused,
    check_transition,
    scope_key,
)

__all__ = [
    "OPEN_STATES", "STATES", "TRANSITIONS", "TransitionRefused", "check_transition", "scope_key",
]
