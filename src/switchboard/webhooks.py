"""Provider webhook routes: authenticate by the provider's scheme, record, acknowledge."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from channels.messages import RejectedRequest
from channels.slack import SlackAccount
from switchboard.runtime import Runtime
from switchboard.store import Recorded

log = logging.getLogger(__name__)


def _problem(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _acknowledged(recorded: Recorded) -> JSONResponse:
    """The 200 a provider waits for, sent once the turn is durably recorded."""
    body: dict[str, Any] = {"ok": True, "turn_id": recorded.turn_id}
    if recorded.duplicate_of:
        body["duplicate_of"] = recorded.duplicate_of
    return JSONResponse(body)


def webhook_routes(runtime: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=True, tags=["webhooks"])

    async def unavailable(account: str, provider: str) -> Response | None:
        settings = runtime.config.accounts.get(account)
        if settings is None or settings.provider != provider:
            return _problem(404, f"no {provider} account named {account!r}")
        if account in runtime.config.disabled:
            return _problem(503, f"account {account} is disabled: "
                            f"{runtime.config.disabled[account]}", **{"X-Slack-No-Retry": "1"})
        return None

    async def rejected(account: str, error: RejectedRequest) -> JSONResponse:
        log.warning("rejected %s request for account %s: %s", error.reason, account, error)
        runtime.metrics.rejected.labels(account, error.reason).inc()
        await runtime.store.note_rejected(account, error.reason)
        return _problem(error.status, str(error), **{"X-Slack-No-Retry": "1"})

    async def signed_slack(account: str, request: Request, content_type: str
                           ) -> tuple[SlackAccount, dict[str, Any]] | Response:
        """The account and the verified, parsed body of a Slack request; or the answer that
        refuses it (disabled account, bad signature, malformed body)."""
        if (refusal := await unavailable(account, "slack")) is not None:
            return refusal
        slack = runtime.slack[account]
        body = await request.body()
        try:
            slack.verify(request.headers, body)
            return slack, slack.parse_body(body, content_type)
        except RejectedRequest as error:
            return await rejected(account, error)

    @router.post("/slack/{account}/events", summary="Slack Events API")
    async def slack_events(account: str, request: Request) -> Response:
        signed = await signed_slack(account, request, request.headers.get("content-type", ""))
        if isinstance(signed, Response):
            return signed
        slack, payload = signed
        try:
            if payload.get("type") == "url_verification":
                return JSONResponse({"challenge": payload.get("challenge", "")})
            if payload.get("type") != "event_callback":
                return JSONResponse({"ok": True, "ignored": f"payload type {payload.get('type')}"})
            if slack.bot_user_id is None:
                await slack.start()
            message = slack.to_inbound(payload)
        except RejectedRequest as error:
            return await rejected(account, error)
        extra = {}
        if "x-slack-retry-num" in request.headers:
            extra = {"retry_num": request.headers["x-slack-retry-num"],
                     "retry_reason": request.headers.get("x-slack-retry-reason", "")}
        recorded = await runtime.pipeline.receive(message, extra)
        return _acknowledged(recorded)

    @router.post("/slack/{account}/commands", summary="Slack slash command (/agent new|end)")
    async def slack_command(account: str, request: Request) -> Response:
        signed = await signed_slack(account, request, "application/x-www-form-urlencoded")
        if isinstance(signed, Response):
            return signed
        _, form = signed
        answer = await runtime.slash_command(account, form)
        return JSONResponse({"response_type": "ephemeral", "text": answer})

    @router.post("/telegram/{account}/webhook", summary="Telegram webhook")
    async def telegram_webhook(account: str, request: Request) -> Response:
        if (refusal := await unavailable(account, "telegram")) is not None:
            return refusal
        bot = runtime.telegram.get(account)
        if bot is None:
            return _problem(503, f"account {account} is not running: "
                            f"{runtime.account_errors.get(account, 'getMe has not succeeded')}")
        try:
            recorded = await runtime.receive_telegram(bot, await request.body(), request.headers)
        except RejectedRequest as error:
            return await rejected(account, error)
        return _acknowledged(recorded)

    return router
