"""Provider webhooks: authenticate by the provider's scheme, record, acknowledge.

They sit on the hottest path there is: a provider waits for the answer, and a flood of them is
what decides how much load one process takes. `ProviderWebhooks` serves them as plain ASGI in
front of FastAPI (the framework's request machinery would cost more than recording the turn);
the FastAPI routes below describe them in the OpenAPI schema and answer the same way.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from channels.adapter import Recorded
from channels.errors import RejectedRequest
from channels.slack import SlackAccount
from switchboard.http_errors import rejection_status
from switchboard.runtime import Runtime
from switchboard.safe_answers import SAFE_HEADERS

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # Slack and Telegram send a few kilobytes; anything near this is not them
NO_RETRY = {"X-Slack-No-Retry": "1"}


@dataclass(frozen=True)
class Answer:
    """What a webhook request gets back."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def _problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, {"error": message}, headers or {})


def _acknowledged(recorded: Recorded) -> Answer:
    """The 200 a provider waits for, sent once the turn is durably recorded."""
    body: dict[str, Any] = {"ok": True, "turn_id": recorded.turn_id}
    if recorded.duplicate_of:
        body["duplicate_of"] = recorded.duplicate_of
    return Answer(200, body)


Handler = Callable[[str, Mapping[str, str], bytes], Awaitable[Answer]]


class Webhooks:
    """The three provider endpoints, each `(account, headers, body) -> Answer`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.handlers: dict[tuple[str, str], Handler] = {
            ("slack", "events"): self.slack_events,
            ("slack", "commands"): self.slack_command,
            ("telegram", "webhook"): self.telegram_webhook,
        }

    def unavailable(self, account: str, provider: str) -> Answer | None:
        """The refusal for an unknown or disabled account. Whoever calls a webhook is not
        authenticated yet: why an account is disabled is for operators (/api/accounts)."""
        settings = self.runtime.config.accounts.get(account)
        if settings is None or settings.provider != provider:
            return _problem(404, f"no {provider} account named {account!r}")
        if account in self.runtime.config.disabled:
            return _problem(503, f"account {account} is disabled", NO_RETRY)
        return None

    async def rejected(self, account: str, error: RejectedRequest) -> Answer:
        """Counted in memory (the runtime writes the counts and logs a summary each interval):
        a flood of forged requests costs microseconds each, not a write and a log line."""
        log.debug("rejected %s request for account %s: %s", error.reason, account, error)
        self.runtime.metrics.rejected.labels(account, error.reason).inc()
        self.runtime.store.accounts.count_rejected(account, error.reason)
        return _problem(rejection_status(error.reason), str(error), NO_RETRY)

    async def signed_slack(self, account: str, headers: Mapping[str, str], body: bytes,
                           content_type: str) -> tuple[SlackAccount, dict[str, Any]] | Answer:
        """The account and the verified, parsed body of a Slack request; or the answer that
        refuses it (disabled account, bad signature, malformed body)."""
        if (refusal := self.unavailable(account, "slack")) is not None:
            return refusal
        slack = self.runtime.slack[account]
        try:
            slack.verify(headers, body)
            return slack, slack.parse_body(body, content_type)
        except RejectedRequest as error:
            return await self.rejected(account, error)

    async def slack_events(self, account: str, headers: Mapping[str, str],
                           body: bytes) -> Answer:
        signed = await self.signed_slack(account, headers, body,
                                         headers.get("content-type", ""))
        if isinstance(signed, Answer):
            return signed
        slack, payload = signed
        try:
            envelope = slack.envelope(payload)
            if envelope.type == "url_verification":
                return Answer(200, {"challenge": envelope.challenge})
            if envelope.type != "event_callback":
                return Answer(200, {"ok": True, "ignored": f"payload type {envelope.type}"})
            if slack.bot_user_id is None:
                await slack.start()
            message = slack.to_inbound(payload, envelope)
        except RejectedRequest as error:
            return await self.rejected(account, error)
        extra = {}
        if "x-slack-retry-num" in headers:
            extra = {"retry_num": headers["x-slack-retry-num"],
                     "retry_reason": headers.get("x-slack-retry-reason", "")}
        return _acknowledged(await self.runtime.pipeline.receive(message, extra))

    async def slack_command(self, account: str, headers: Mapping[str, str],
                            body: bytes) -> Answer:
        signed = await self.signed_slack(account, headers, body,
                                         "application/x-www-form-urlencoded")
        if isinstance(signed, Answer):
            return signed
        _, form = signed
        answer = await self.runtime.slash_command(account, form)
        return Answer(200, {"response_type": "ephemeral", "text": answer})

    async def telegram_webhook(self, account: str, headers: Mapping[str, str],
                               body: bytes) -> Answer:
        if (refusal := self.unavailable(account, "telegram")) is not None:
            return refusal
        bot = self.runtime.telegram.get(account)
        if bot is None:  # why (getMe failed, and the library's words) is for /api/accounts
            return _problem(503, f"account {account} is not running")
        try:
            recorded = await self.runtime.receive_telegram(bot, body, headers)
        except RejectedRequest as error:
            return await self.rejected(account, error)
        return _acknowledged(recorded)


_PATH = re.compile(r"/(slack|telegram)/([^/]+)/(events|commands|webhook)")


class ProviderWebhooks:
    """Plain ASGI in front of the FastAPI app, outside its middleware: serves
    `POST /slack/{account}/events|commands` and `POST /telegram/{account}/webhook`, and times
    each acknowledgement (the time the provider waits). Everything else passes through."""

    def __init__(self, app: ASGIApp, webhooks: Webhooks) -> None:
        self.app = app
        self.webhooks = webhooks
        ack = webhooks.runtime.metrics.ack
        self._timers = {provider: ack.labels(provider) for provider in ("slack", "telegram")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        handler = found and self.webhooks.handlers.get((found[1], found[3]))
        if not found or handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = await _body(receive)
        if body is None:  # counted like any other request that never became a turn
            answer = self.webhooks.unavailable(found[2], found[1]) or \
                await self.webhooks.rejected(found[2], RejectedRequest(
                    "oversized", f"request body is larger than {MAX_BODY} bytes"))
        else:
            try:
                answer = await handler(found[2], Headers(scope=scope), body)
            except Exception:  # nothing was recorded: the provider's retry is welcome
                log.exception("webhook %s failed", scope["path"])
                answer = _problem(500, "internal error; the request was not recorded")
        content = json.dumps(answer.body, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(content)).encode()), *SAFE_HEADERS]
        headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        self._timers[found[1]].observe(time.perf_counter() - started)


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
    """The webhooks in the OpenAPI schema. `ProviderWebhooks` answers these paths before
    FastAPI's routing is reached; these routes give the same answers when it is not in front."""
    router = APIRouter(tags=["webhooks"])

    def route(provider: str, action: str, summary: str) -> None:
        handler = webhooks.handlers[(provider, action)]

        async def endpoint(account: str, request: Request) -> Response:
            answer = await handler(account, request.headers, await request.body())
            return JSONResponse(answer.body, answer.status, dict(answer.headers))

        router.add_api_route(f"/{provider}/{{account}}/{action}", endpoint, methods=["POST"],
                             summary=summary, name=f"{provider}_{action}")

    route("slack", "events", "Slack Events API")
    route("slack", "commands", "Slack slash command (/agent new|end)")
    route("telegram", "webhook", "Telegram webhook")
    return router
