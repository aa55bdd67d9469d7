"""The operator console: its page and assets, and the read-only API it needs beyond `api.py`.

`/api/bindings` shows the loaded rules, `/api/match` asks the pipeline's own matching function
whether a message would reach an agent, `/api/me` tells the console what the caller may do.
The page itself is plain HTML, CSS and JavaScript shipped in `console_assets/`.
"""

import re
from dataclasses import asdict
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from channels.messages import InboundMessage
from channels.rules import Match, match
from sessions.events import EventHub
from switchboard.config import Config
from switchboard.current_config import CurrentConfig
from switchboard.operators import Needs, Operator
from switchboard.store import Store
from switchboard.views import AccountList

ASSETS = "console_assets"
ADMISSION_KEYS = ("dm_policy", "rate_limit", "coalesce")
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg|png|ico)$")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
          "svg": "image/svg+xml", "png": "image/png", "ico": "image/x-icon",
          "html": "text/html; charset=utf-8"}
# The page loads only its own files; no inline script, nothing from elsewhere.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class MatchBody(BaseModel):
    """A message described by hand, for "would this match?"."""

    provider: str | None = None
    account: str = Field(min_length=1)
    conversation: str = Field(min_length=1)
    sender: str = ""
    kind: Literal["dm", "group", "channel"] = "channel"
    mentioned: bool = False
    thread: str | None = None
    replied_in_thread: list[str] | None = None


def _asset(name: str) -> bytes | None:
    """The bytes of one shipped asset, or None when there is no such file."""
    path = resources.files("switchboard").joinpath(ASSETS).joinpath(name)
    return path.read_bytes() if path.is_file() else None


def _served(name: str) -> Response:
    body = _asset(name)
    if body is None:
        raise HTTPException(404, f"no console asset {name}")
    kind = name.rsplit(".", 1)[-1]
    return Response(body, media_type=_TYPES[kind],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                             "Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"})


def binding_rows(config: Config) -> list[dict[str, Any]]:
    """The loaded bindings as data, in precedence order of the file."""
    rows = []
    for binding in config.bindings:
        row = asdict(binding)
        row.pop("order", None)
        for key in ADMISSION_KEYS:  # shown where they are set
            if not row[key]:
                row.pop(key)
        if binding.rate_limit is not None:
            row["rate_limit"] = {k: rate.text for k, rate in binding.rate_limit if rate}
        rows.append({key: list(value) if isinstance(value, tuple) else value
                     for key, value in row.items()})
    return rows


def agent_rows(config: Config) -> list[dict[str, Any]]:
    """Each agent's name, handler and default model route (never its URL or key)."""
    return [{"name": name, "handler": agent.handler, "model": agent.model}
            for name, agent in config.agents.items()]


def console_routes(*, store: Store, config: CurrentConfig, needs: Needs, hub: EventHub,
                   account_list: AccountList) -> APIRouter:
    """The console page, its assets, and `/api/bindings`, `/api/match`, `/api/me`."""
    router = APIRouter()
    viewer = needs("viewer")

    @router.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        # under a reverse proxy's prefix (`serve --root-path /prefix`) the assets are there;
        # the API is fetched relative to the page, so from there too
        root = request.scope.get("root_path", "").rstrip("/")
        answer = _served("index.html")
        if root:
            html = bytes(answer.body).decode().replace('"/console/', f'"{root}/console/')
            headers = {k: v for k, v in answer.headers.items() if k != "content-length"}
            answer = Response(html, headers=headers)
        return answer

    @router.get("/console/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if not _ASSET_NAME.match(name):
            raise HTTPException(404, f"no console asset {name}")
        return _served(name)

    @router.get("/api/me", tags=["operators"])
    async def me(who: Annotated[Operator, Depends(viewer)]) -> dict[str, Any]:
        """Who the caller is, and the live event to stream from (so a console that loads
        its tables next neither misses events nor replays the whole buffer)."""
        return {"name": who.name, "role": who.role, "last_event_id": hub.last_id,
                **({"agents": sorted(who.agents)} if who.agents is not None else {})}

    @router.get("/api/bindings", tags=["operators"], dependencies=[Depends(viewer)])
    async def bindings() -> dict[str, Any]:
        return {"bindings": binding_rows(config()), "agents": agent_rows(config()),
                "accounts": await account_list.rows()}

    @router.post("/api/match", tags=["operators"], dependencies=[Depends(viewer)])
    async def would_match(body: MatchBody) -> dict[str, Any]:
        settings = config().accounts.get(body.account)
        if settings is not None and body.provider and settings.provider != body.provider:
            raise HTTPException(400, f"account {body.account} is a {settings.provider} "
                                f"account, not {body.provider}")
        provider = body.provider or (settings.provider if settings else "unknown")
        message = InboundMessage(provider=provider, account=body.account, event_id="match",
                                 conversation=body.conversation, kind=body.kind,
                                 sender=body.sender, text="", thread=body.thread or None,
                                 mentioned=body.mentioned)
        replied = body.replied_in_thread
        if replied is None and message.thread:  # what the pipeline would look up
            found = await store.turns.bindings_replied_in_thread(
                message.account, message.conversation, message.thread)
            replied = list(found)
        decision = match(message, config().bindings, frozenset(replied or ()))
        if isinstance(decision, Match):
            return {"matched": True, "binding": decision.binding.name,
                    "agent": decision.binding.agent, "reason": decision.reason,
                    "session_scope": decision.binding.session_scope}
        return {"matched": False, "binding": None, "agent": None, "reason": decision.reason,
                "session_scope": None}

    return router
