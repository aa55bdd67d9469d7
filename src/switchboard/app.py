"""The ASGI app that `switchboard serve` runs."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp

from switchboard import __version__
from switchboard.api import api_routes
from switchboard.api_hooks import hook_routes
from switchboard.api_interactions import interaction_routes
from switchboard.api_operators import operator_routes
from switchboard.api_outbound import outbound_routes
from switchboard.api_pairing import pairing_routes
from switchboard.api_takeover import takeover_routes
from switchboard.audit import OperatorAudit
from switchboard.console import console_routes
from switchboard.file_routes import file_routes
from switchboard.health import health
from switchboard.http_errors import install_error_answers
from switchboard.inboxes import inbox_routes
from switchboard.operators import operator_auth
from switchboard.outbound import Outbound
from switchboard.pairing import Pairings
from switchboard.runtime import Runtime
from switchboard.safe_answers import SafeAnswers
from switchboard.takeover import Takeovers
from switchboard.views import AccountList
from switchboard.webhooks import ProviderWebhooks, Webhooks, webhook_routes


def create_app(runtime: Runtime) -> ASGIApp:
    """The FastAPI app behind `ProviderWebhooks`, which answers the provider webhooks first."""
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="Switchboard", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime
    install_error_answers(app)
    webhooks = Webhooks(providers=runtime.providers, config=runtime.config,
                        adapters=runtime.adapters, record=runtime.pipeline.receive,
                        note_rejected=runtime.services.note_rejected)
    runtime.webhooks = webhooks
    needs = operator_auth(runtime.operator)
    app.include_router(webhook_routes(webhooks))
    accounts = AccountList(runtime.current, runtime.account_errors, runtime.store.accounts,
                           runtime.providers, runtime.adapters)
    app.include_router(api_routes(store=runtime.store, config=runtime.current, needs=needs,
                                  controls=runtime.controls, hub=runtime.events,
                                  pipeline=runtime.pipeline, delivery=runtime.delivery,
                                  tasks=runtime.tasks, account_list=accounts,
                                  registry=runtime.providers, files=runtime.files))
    app.include_router(inbox_routes(runtime.store, runtime.current, runtime.events, needs))
    app.include_router(interaction_routes(runtime.store, runtime.pipeline.interactions, needs))
    app.include_router(outbound_routes(Outbound(runtime.pipeline), needs))
    app.include_router(takeover_routes(runtime.store, Takeovers(
        runtime.store, runtime.controls, runtime.delivery,
        runtime.pipeline.reply_to), needs))
    app.include_router(console_routes(store=runtime.store, config=runtime.current, needs=needs,
                                      hub=runtime.events, account_list=accounts))
    app.include_router(operator_routes(runtime.store, runtime.operators, runtime.current,
                                       needs))
    app.include_router(file_routes(store=runtime.store, files=runtime.files, needs=needs))
    app.include_router(hook_routes(runtime.store, needs))
    app.add_middleware(OperatorAudit, store=runtime.store)
    app.include_router(pairing_routes(Pairings(runtime.store, runtime.delivery.deliver_claimed,
                                               runtime.delivery.lease),
                                      runtime.current, needs))

    @app.get("/healthz", tags=["health"], responses={503: {"description": "nothing works"}})
    async def healthz() -> JSONResponse:
        """`ok`; `degraded` with the reasons (an account that did not start, an SMTP server
        that could not listen); 503 `down` when nothing works (the database, every account)."""
        queue = runtime.pipeline.queue
        status, body = await health(runtime.config, runtime.account_errors, runtime.store,
                                    queue={"memory": len(queue), "database": queue.waiting,
                                           "refilled": queue.refilled})
        return JSONResponse(body, status_code=status)  # SafeAnswers redacts it

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics(authorization: Annotated[str | None, Header()] = None
                      ) -> PlainTextResponse:
        if not metrics_allowed(runtime, authorization):
            raise HTTPException(401, "/metrics needs Authorization: Bearer <metrics_token>"
                                + (" or an operator token" if runtime.config.metrics_operators
                                   else ""), headers={"WWW-Authenticate": "Bearer"})
        runtime.metrics.outbox_depth.set(await runtime.store.outbox.depth())
        runtime.metrics.files_bytes.set(await runtime.store.files.bytes_stored())
        return PlainTextResponse(runtime.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_words(error.errors())}, status_code=400)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    return ProviderWebhooks(SafeAnswers(app, runtime.redact), webhooks, runtime.metrics.ack)


def metrics_allowed(runtime: Runtime, authorization: str | None) -> bool:
    """Open unless the config sets `metrics_token` or `metrics_operators`; then the metrics
    token or (with `metrics_operators`) any operator's token, as a Bearer token."""
    config = runtime.config
    if not config.metrics_token and not config.metrics_operators:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    if config.metrics_token and hmac.compare_digest(token.encode(),
                                                    config.metrics_token.encode()):
        return True
    return config.metrics_operators and runtime.operator(token) is not None


def validation_words(errors: Sequence[Any]) -> str:
    """Every problem of a request, in words: unknown fields named (`unknown field text`)."""
    problems = []
    for e in errors:
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown field {where.removeprefix('body.')}")
        else:
            problems.append(f"{where}: {e['msg']}")
    return "; ".join(problems)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, saying 400 where it says 422: refused requests are answered 400."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                answers = operation.get("responses", {})
                if "422" in answers:
                    answers.pop("422")
                    answers["400"] = {
                        "description": "the request is malformed: a field is missing, of "
                                       "the wrong type, or unknown",
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["error"],
                            "properties": {"error": {"type": "string"}}}}}}
        app.openapi_schema = schema
    return app.openapi_schema
