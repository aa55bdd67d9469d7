"""The errors of the provider packages, in one place. `SwitchboardError` is the root of every
error Switchboard raises on purpose (`inbox.errors` and `switchboard.errors` build on it).

They say what went wrong in words; none carries an HTTP status: how a refusal is answered is
the web layer's business (`switchboard/http_errors.py`), decided by the error's kind.
"""

from __future__ import annotations

from typing import Any, Literal

RejectionReason = Literal["bad_signature", "stale", "bad_secret", "malformed", "oversized"]
"""Why a webhook request did not become a turn: the account-health counter it adds to.
bad_signature: the provider's signature is missing or wrong; stale: its timestamp is too old or
in the future; bad_secret: a shared secret token is missing or wrong; malformed: the body is not
what the provider sends; oversized: the body is too large to be the provider's."""


class SwitchboardError(Exception):
    """Root of every error Switchboard raises on purpose."""


class DeliveryError(SwitchboardError):
    """A provider refused or failed a delivery.

    `permanent` errors (channel_not_found, bot blocked, SMTP 5xx) fail the turn at once;
    the others are retried, after `retry_after` seconds when the provider said so.
    The message is the provider's own words. `resume_extra`, when set, is the outbound
    `extra` the next attempt is made with: a part of the message went out before the failure
    (an interaction's reply before its prompt), and the retry sends only what is left.
    """

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None,
                 resume_extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.resume_extra = resume_extra


class RejectedRequest(SwitchboardError):
    """A webhook request that must not become a turn: bad signature, stale, malformed, wrong
    secret. `reason` is the counter it adds to (see `RejectionReason`); the message says why."""

    def __init__(self, reason: RejectionReason, message: str) -> None:
        super().__init__(message)
        self.reason: RejectionReason = reason


class StartFailed(SwitchboardError):
    """An account cannot run: its credentials are refused or its provider is unreachable when
    it starts. The message is what operators see on `/api/accounts` (no secret in it)."""


class CommandFailed(SwitchboardError):
    """A provider's CLI command could not do its job; the message says why, for a person."""


__all__ = [
    "CommandFailed", "DeliveryError", "RejectedRequest", "RejectionReason", "StartFailed",
    "SwitchboardError",
]
