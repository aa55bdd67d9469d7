"""Every operator action in the audit log: each API request that changes something and
succeeds is recorded with the operator's name, the route's action and its target.

One ASGI middleware rather than a line in every route, so routes added later (pairing
approvals, interactions) are recorded too. The entry is written before the answer is sent,
so an operator who reads `/api/audit` next finds it there.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.operators import AUDIT_TARGET, OPERATOR_KEY, Operator
from switchboard.store import Store

log = logging.getLogger(__name__)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# Routes whose action writes its own entry in its own transaction (with more detail).
SELF_RECORDED = frozenset({("DELETE", "/api/sessions/{session_id}"),
                           ("POST", "/api/sessions/{session_id}/delete"),
                           ("POST", "/api/sessions/{session_id}/model")})


class OperatorAudit:
    """Records the operator's successful changes (`POST`, `PUT`, `PATCH`, `DELETE`)."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                await self._record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, recording_send)

    async def _record(self, scope: Scope, status: int) -> None:
        operator: Operator | None = scope.get(OPERATOR_KEY)
        route: Any = scope.get("route")
        if operator is None or route is None:
            return
        method, template = scope["method"], getattr(route, "path", scope["path"])
        if (method, template) in SELF_RECORDED:
            return
        params = dict(scope.get("path_params") or {})
        target = scope.get(AUDIT_TARGET) or "/".join(str(v) for v in params.values()) \
            or template
        detail = {"method": method, "route": template, "status": status}
        try:
            await self.store.audit.record(operator.name, getattr(route, "name", template),
                                          target, detail)
        except Exception:  # the action is done; losing its entry must not hide that
            log.exception("writing the audit entry of %s %s failed", method, template)


__all__ = ["SELF_RECORDED", "OperatorAudit"]
