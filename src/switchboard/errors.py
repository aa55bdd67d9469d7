"""The application's errors, in one place, on the root `SwitchboardError` of `channels.errors`.

Session actions raise the errors of `sessions.errors` (`SessionNotFound`, `ActionRefused`,
`TransitionRefused`); provider adapters those of `channels.errors`, email those of
`inbox.errors`. None carries an HTTP status: the API answers each kind with its status in one
place, `switchboard/http_errors.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from channels.errors import SwitchboardError
from sessions.errors import ActionRefused, SessionError, SessionNotFound, TransitionRefused


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config, where it is and what to do."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class ConfigError(SwitchboardError):
    """The config cannot be used; `problems` lists every one of them, each at file:line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class AgentError(SwitchboardError):
    """The agent did not produce a reply; the message says why, for the turn's `error`."""


class BadCursor(SwitchboardError):
    """A listing cursor this API did not give out (edited, truncated, from another listing)."""


class BadFilter(SwitchboardError):
    """A listing filter's value that nothing can have (a status no turn has); the message
    lists the allowed values."""


class NotFound(SwitchboardError):
    """What was asked for does not exist (a session's is `SessionNotFound`)."""


class NoSuchTurn(NotFound):
    """No turn has this id."""


class NoSuchAgent(NotFound):
    """No agent of the config has this name."""


class NoSuchInbox(NotFound):
    """No inbox was ever provisioned at this address."""


class NoSuchOperator(NotFound):
    """No operator kept in the database has this name."""


class OperatorRefused(SwitchboardError):
    """An operator cannot be added or changed as asked (a bad name or role, an unknown agent,
    one defined in the config)."""


class OperatorExists(OperatorRefused):
    """An operator of this name exists already."""


class OutOfScope(SwitchboardError):
    """The operator is limited to some agents, and this belongs to another."""


class NoSuchPairing(NotFound):
    """No pending pairing has this code (or no pairing this account and sender)."""


class TooManyAttempts(SwitchboardError):
    """Too many wrong tries in a short time (pairing codes); wait before the next."""


class InboxRefused(SwitchboardError):
    """An inbox cannot be provisioned as asked (a bad local part, no such email account)."""


class AddressTaken(InboxRefused):
    """The address is already provisioned (possibly for another agent, possibly revoked)."""


class OutboundRefused(SwitchboardError):
    """An outbound message cannot be sent as asked (a recipient the provider does not take, a
    scope its reply cannot be known in); the message says what to give instead."""


class ProviderUnavailable(SwitchboardError):
    """The provider could not be asked now (unreachable, rate-limited); try again."""


__all__ = [
    "ActionRefused", "AddressTaken", "AgentError", "BadCursor", "BadFilter", "ConfigError",
    "InboxRefused", "NoSuchAgent", "NoSuchInbox", "NoSuchOperator", "NoSuchPairing",
    "NoSuchTurn", "NotFound", "OperatorExists", "OperatorRefused", "OutOfScope",
    "OutboundRefused", "Problem", "ProviderUnavailable",
    "SessionError", "SessionNotFound", "SwitchboardError", "TooManyAttempts",
    "TransitionRefused",
]
