"""The errors of the sessions package, in one place: what a session action refuses, and why."""

from __future__ import annotations


class SessionError(Exception):
    """Root of the session errors; each message says what happened and what can be done."""


class TransitionRefused(SessionError):
    """A state change the state table does not allow."""


class SessionNotFound(SessionError):
    """No session has this id (it never existed, or it was deleted)."""


class ActionRefused(SessionError):
    """An action the session's state or the actor's role does not allow; says why."""
