"""How errors become HTTP answers: the one table of statuses, for the API and the webhooks.

Domain errors say what went wrong; this module alone decides the status each kind is answered
with. The operator API answers `{"detail": "<the error's words>"}` (FastAPI's shape); a refused
webhook request gets the status of its `reason`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from channels.errors import RejectionReason
from switchboard.errors import (
    ActionRefused,
    AddressTaken,
    BadCursor,
    BadFilter,
    InboxRefused,
    NotFound,
    OperatorExists,
    OperatorRefused,
    OutboundRefused,
    OutOfScope,
    ProviderUnavailable,
    SessionNotFound,
    TooManyAttempts,
    TransitionRefused,
)

STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    SessionNotFound: 404,
    ActionRefused: 409,
    TransitionRefused: 409,
    AddressTaken: 409,
    InboxRefused: 400,
    BadCursor: 400,
    BadFilter: 400,
    OperatorRefused: 400,
    OperatorExists: 409,
    OutOfScope: 403,
    TooManyAttempts: 429,
    OutboundRefused: 400,
    ProviderUnavailable: 503,
}
"""Each error kind the API answers by itself; a subclass not listed takes its parent's status
(Starlette looks handlers up along the class's MRO)."""

REJECTION_STATUS: dict[RejectionReason, int] = {
    "bad_signature": 401,
    "stale": 401,
    "bad_secret": 403,
    "malformed": 400,
    "oversized": 413,
}


def rejection_status(reason: str) -> int:
    """The status a webhook request refused for `reason` is answered with. Providers retry
    what fails with 5xx; every refusal is a 4xx, as asking again will not help."""
    return REJECTION_STATUS.get(reason, 400)  # type: ignore[call-overload]


async def _answer(_request: Request, error: Exception) -> JSONResponse:
    # the most specific kind listed decides (a handler is found for every listed kind)
    status = next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)
    return JSONResponse({"detail": str(error)}, status_code=status)


def install_error_answers(app: FastAPI) -> None:
    """Answer every listed error kind with its status wherever a route raises it."""
    for kind in STATUS:
        app.add_exception_handler(kind, _answer)
