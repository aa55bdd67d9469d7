"""Provider webhooks: `POST /{provider}/{account}/{action}` for every provider of the registry.

The account's adapter authenticates the request by its provider's scheme and says what it is
(`channels.adapter`): turns, which are recorded before the acknowledgement, or an answer to
give at once. This is the hottest path there is: a provider waits for the answer, and a flood
of them is what decides how much load one process takes. `ProviderWebhooks` serves them as
plain ASGI in front of FastAPI (the framework's request machinery would cost more than
recording the turn); the FastAPI routes below describe them in the OpenAPI schema and answer
the same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Histogram
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from channels.adapter import Answer, Provider, Recorded, Turns
from channels.errors import RejectedRequest
from channels.messages import InboundMessage
from switchboard.config import Config
from switchboard.http_errors import rejection_status
from switchboard.safe_answers import SAFE_HEADERS

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # providers send a few kilobytes; anything near this is not them

Record = Callable[[InboundMessage, dict[str, Any] | None], Awaitable[Recorded]]


@dataclass(frozen=True)
class Reply:
    """What a webhook request gets back."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def _problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, {"error": message}, headers or {})


class Webhooks:
    """Every provider's webhook actions, each `(provider, account, action, headers, body) ->
    Reply`. It uses the config (which accounts exist, which are disabled), the running
    adapters, the pipeline's `record` and the rejection counter; nothing else."""

    def __init__(self, *, providers: Mapping[str, Provider], config: Config,
                 adapters: Mapping[str, Any], record: Record,
                 note_rejected: Callable[[str, str], None]) -> None:
        self.providers = providers
        self.config = config
        self.adapters = adapters
        self.record = record
        self.note_rejected = note_rejected
        self.routes: dict[tuple[str, str], Provider] = {
            (p.name, action): p for p in providers.values() for action in p.webhook_actions}

    def unavailable(self, provider: Provider, account: str) -> Reply | None:
        """The refusal for an unknown or disabled account. Whoever calls a webhook is not
        authenticated yet: why an account is disabled is for operators (/api/accounts)."""
        settings = self.config.accounts.get(account)
        if settings is None or settings.provider != provider.name:
            return _problem(404, f"no {provider.name} account named {account!r}")
        if account in self.config.disabled:
            return _problem(503, f"account {account} is disabled", provider.refusal_headers)
        return None

    def rejected(self, provider: Provider, account: str, error: RejectedRequest) -> Reply:
        """Counted in memory, logged only at debug: a flood of forged requests costs
        microseconds each, not a write and a log line."""
        log.debug("rejected %s request for account %s: %s", error.reason, account, error)
        self.note_rejected(account, error.reason)
        return _problem(rejection_status(error.reason), str(error), provider.refusal_headers)

    async def handle(self, provider: Provider, account: str, action: str,
                     headers: Mapping[str, str], body: bytes) -> Reply:
        if (refusal := self.unavailable(provider, account)) is not None:
            return refusal
        adapter = self.adapters.get(account)
        if adapter is None:  # why (its start failed, and the library's words) is for operators
            return _problem(503, f"account {account} is not running")
        try:
            result = await adapter.webhook(action, headers, body)
        except RejectedRequest as error:
            return self.rejected(provider, account, error)
        if isinstance(result, Answer):
            return Reply(result.status, result.body)
        return await self.acknowledge(result)

    async def acknowledge(self, turns: Turns) -> Reply:
        """The 200 a provider waits for, sent once its turns are durably recorded."""
        extra = dict(turns.extra) if turns.extra else None
        if len(turns.messages) == 1:
            recorded = await self.record(turns.messages[0], extra)
            body: dict[str, Any] = {"ok": True, "turn_id": recorded.turn_id}
            if recorded.duplicate_of:
                body["duplicate_of"] = recorded.duplicate_of
            return Reply(200, body)
        ids = [(await self.record(message, extra)).turn_id for message in turns.messages]
        return Reply(200, {"ok": True, "turn_ids": ids} if ids else {"ok": True})

    def oversized(self, provider: Provider, account: str) -> Reply:
        """A body past MAX_BODY, counted like any other request that never became a turn."""
        return self.unavailable(provider, account) or self.rejected(
            provider, account, RejectedRequest(
                "oversized", f"request body is larger than {MAX_BODY} bytes"))


class ProviderWebhooks:
    """Plain ASGI in front of the FastAPI app, outside its middleware: serves
    `POST /{provider}/{account}/{action}` for the registry's providers and actions, and times
    each acknowledgement (the time the provider waits). Everything else passes through."""

    def __init__(self, app: ASGIApp, webhooks: Webhooks, ack: Histogram) -> None:
        self.app = app
        self.webhooks = webhooks
        self.routes = webhooks.routes
        self._timers = {name: ack.labels(name) for name, _ in webhooks.routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        provider = None
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):  # uvicorn's --root-path is part of the path
                path = path[len(root):]
            parts = path.split("/")  # "", provider, account, action
            if len(parts) == 4 and not parts[0] and parts[2]:
                provider = self.routes.get((parts[1], parts[3]))
        if provider is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        account, action = parts[2], parts[3]
        body = await _body(receive)
        if body is None:
            reply = self.webhooks.oversized(provider, account)
        else:
            try:
                reply = await self.webhooks.handle(provider, account, action,
                                                   Headers(scope=scope), body)
            except Exception:  # nothing was recorded: the provider's retry is welcome
                log.exception("webhook %s failed", scope["path"])
                reply = _problem(500, "internal error; the request was not recorded")
        content = json.dumps(reply.body, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(content)).encode()), *SAFE_HEADERS]
        headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        self._timers[provider.name].observe(time.perf_counter() - started)


async def _body(receive: Receive) -> bytes | None:
    """The whole request body, or None past MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def webhook_routes(webhooks: Webhooks) -> APIRouter:
    """The webhooks in the OpenAPI schema, one route per provider and action of the registry.
    `ProviderWebhooks` answers these paths before FastAPI's routing is reached; these routes
    give the same answers when it is not in front."""
    router = APIRouter(tags=["webhooks"])

    def route(provider: Provider, action: str, summary: str) -> None:
        async def endpoint(account: str, request: Request) -> Response:
            reply = await webhooks.handle(provider, account, action, request.headers,
                                          await request.body())
            return JSONResponse(dict(reply.body), reply.status, dict(reply.headers))

        router.add_api_route(f"/{provider.name}/{{account}}/{action}", endpoint,
                             methods=["POST"], summary=summary,
                             name=f"{provider.name}_{action}")

    for provider in webhooks.providers.values():
        for action, summary in provider.webhook_actions.items():
            route(provider, action, summary)
    return router
