"""Provider webhook routes: authenticate by the provider's scheme, record, acknowledge."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from channels.messages import RejectedRequest
from switchboard.runtime import Runtime

log = logging.getLogger(__name__)


def _problem(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


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

    @router.post("/slack/{account}/events", summary="Slack Events API")
    async def slack_events(account: str, request: Request) -> Response:
        if (refusal := await unavailable(account, "slack")) is not None:
            return refusal
        slack = runtime.slack[account]
        body = await request.body()
        try:
            slack.verify(request.headers, body)
            payload = slack.parse_body(body, request.headers.get("content-type", ""))
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
        return JSONResponse({"ok": True, "turn_id": recorded.turn_id,
                             **({"duplicate_of": recorded.duplicate_of}
                                if recorded.duplicate_of else {})})

    @router.post("/slack/{account}/commands", summary="Slack slash command (/agent new|end)")
    async def slack_command(account: str, request: Request) -> Response:
        if (refusal := await unavailable(account, "slack")) is not None:
            return refusal
        slack = runtime.slack[account]
        body = await request.body()
        try:
            slack.verify(request.headers, body)
            form = slack.parse_body(body, "application/x-www-form-urlencoded")
        except RejectedRequest as error:
            return await rejected(account, error)
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
        return JSONResponse({"ok": True, "turn_id": recorded.turn_id,
                             **({"duplicate_of": recorded.duplicate_of}
                                if recorded.duplicate_of else {})})

    return router
