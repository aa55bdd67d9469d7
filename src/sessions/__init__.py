"""Sessions: the state machine, policy and transcript; knows nothing of providers."""

from sessions.errors import ActionRefused, SessionError, SessionNotFound, TransitionRefused
from sessions.policy import RULES, Cutoff, Limits, Rule, due_move, expiry, sweep_cutoffs
from sessions.states import (
    OPEN_STATES,
    STATES,
    TRANSITIONS,
    StateChange,
    check_transition,
    scope_key,
)

__all__ = [
    "OPEN_STATES", "RULES", "STATES", "TRANSITIONS", "ActionRefused", "Cutoff", "Limits", "Rule",
    "SessionError", "SessionNotFound", "StateChange", "TransitionRefused", "check_transition",
    "due_move", "expiry", "scope_key", "sweep_cutoffs",
]
