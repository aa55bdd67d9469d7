"""The operator API: turns, sessions, accounts, providers, live events. Bearer tokens from
`operators`."""


import json
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from switchboard.api_sessions import api_message
from switchboard.errors import ActionRefused, NoSuchAgent, NoSuchTurn, SessionNotFound
from switchboard.filters import SESSION_CHOICES, TURN_CHOICES, check_filters
from switchboard.operators import Operator, operator_auth
from switchboard.runtime import Runtime
from switchboard.views import (
    account_rows,
    audit_json,
    marked_transcript,
    provider_rows,
    session_json,
    turn_json,
    turn_story_json,
)


class _Body(BaseModel):
    """A request body: a field it does not have is refused (400 naming it), not dropped."""

    model_config = ConfigDict(extra="forbid")


class TransferBody(_Body):
    agent: str


class ModelBody(_Body):
    model: str | None


class MessageBody(_Body):
    text: str = Field(min_length=1, max_length=100_000)
    wait: float = Field(default=30.0, ge=0, le=300)


class NewSessionBody(_Body):
    tag: str = Field(default="test", pattern="^(test|live)$")
    user: str | None = None
    user_name: str | None = None
    text: str | None = Field(default=None, min_length=1, max_length=100_000,
                             description="A first message; the answer has its turn")
    wait: float = Field(default=30.0, ge=0, le=300)


ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid operator token"},
    403: {"description": "the operator's role is too low"},
    404: {"description": "no such turn, session or agent"},
    409: {"description": "the action is refused in the session's state"},
}


def api_routes(runtime: Runtime) -> APIRouter:
    """The operator API. Domain errors raised here (no such session, a refused action, a bad
    cursor) are answered by `http_errors`, with one status per kind."""
    needs = operator_auth(runtime.operator)
    viewer = Depends(needs("viewer"))
    router = APIRouter(prefix="/api", tags=["operators"], responses=ANSWERS)
    store = runtime.store

    @router.get("/turns", dependencies=[viewer])
    async def list_turns(
        status: str | None = None, provider: str | None = None, account: str | None = None,
        agent: str | None = None, session_id: str | None = None, binding: str | None = None,
        conversation: str | None = None, q: str | None = None, cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        filters = {"status": status, "provider": provider, "account": account, "agent": agent,
                   "session_id": session_id, "binding": binding, "conversation": conversation}
        check_filters(filters, TURN_CHOICES)
        page = await store.turns.page(filters, cursor, limit, search=q)
        return {"turns": [turn_json(t) for t in page.items], "next_cursor": page.next_cursor}

    @router.get("/turns/{turn_id}", dependencies=[viewer])
    async def get_turn(turn_id: str) -> dict[str, Any]:
        story = await store.turns.story(turn_id)
        if story is None:
            raise NoSuchTurn(f"no turn {turn_id}")
        return turn_story_json(story)

    @router.post("/turns/{turn_id}/retry")
    async def retry_delivery(turn_id: str, who: Annotated[Operator, Depends(needs("operator"))]
                             ) -> dict[str, Any]:
        """Deliver a failed turn's reply again (its attempts counted afresh)."""
        if await store.turns.get(turn_id) is None:
            raise NoSuchTurn(f"no turn {turn_id}")
        outbox_id = await store.outbox.retry(turn_id, who.name)
        if outbox_id is None:
            raise ActionRefused(f"turn {turn_id} has no failed delivery to retry (only a reply "
                                "whose delivery failed can be sent again)")
        runtime.tasks.spawn(runtime.delivery.deliver(outbox_id))
        runtime.events.publish("turn.retried", {"turn_id": turn_id, "by": who.name})
        return {"ok": True, "message": f"delivery of turn {turn_id} is retried"}

    @router.get("/sessions", dependencies=[viewer])
    async def list_sessions(
        agent: str | None = None, state: str | None = None, user: str | None = None,
        source: str | None = None, tag: str | None = None, account: str | None = None,
        started_after: str | None = None, started_before: str | None = None,
        include_archived: bool = False, cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        filters: dict[str, Any] = {"agent": agent, "state": state, "user": user,
                                   "source": source, "tag": tag, "account": account,
                                   "include_archived": include_archived,
                                   "archive_after": runtime.config.sessions.auto_archive_after}
        check_filters(filters, SESSION_CHOICES)
        for key, value in (("started_after", started_after),
                           ("started_before", started_before)):
            if value:
                try:
                    filters[key] = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    raise HTTPException(400, f"{key}: {value!r} is not an ISO date or "
                                        "time") from None
        page = await store.sessions.page(filters, cursor, limit)
        return {"sessions": [session_json(s) for s in page.items],
                "next_cursor": page.next_cursor}

    @router.get("/sessions/{session_id}", dependencies=[viewer])
    async def get_session(session_id: str) -> dict[str, Any]:
        session = await store.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return {**session_json(session), "transcript": await marked_transcript(store,
                                                                              session_id)}

    operator = needs("operator")
    admin = needs("admin")

    async def act(work: Awaitable[str]) -> dict[str, Any]:
        return {"ok": True, "message": await work}

    controls = runtime.controls

    @router.post("/sessions/{session_id}/pause")
    async def pause(session_id: str, who: Annotated[Operator, Depends(operator)]
                    ) -> dict[str, Any]:
        return await act(controls.pause(session_id, who.name))

    @router.post("/sessions/{session_id}/resume")
    async def resume(session_id: str, who: Annotated[Operator, Depends(operator)]
                     ) -> dict[str, Any]:
        return await act(controls.resume(session_id, who.name))

    @router.post("/sessions/{session_id}/end")
    async def end(session_id: str, who: Annotated[Operator, Depends(operator)]
                  ) -> dict[str, Any]:
        return await act(controls.end(session_id, who.name))

    @router.post("/sessions/{session_id}/transfer")
    async def transfer(session_id: str, body: TransferBody,
                       who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return await act(controls.transfer(session_id, body.agent, who.name))

    @router.post("/sessions/{session_id}/model")
    async def set_model(session_id: str, body: ModelBody,
                        who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return await act(controls.set_model(session_id, body.model, who.name))

    @router.delete("/sessions/{session_id}")
    @router.post("/sessions/{session_id}/delete")
    async def delete(session_id: str, who: Annotated[Operator, Depends(admin)]
                     ) -> dict[str, Any]:
        return await act(controls.delete(session_id, who.name))

    @router.get("/audit", dependencies=[Depends(admin)])
    async def audit() -> dict[str, Any]:
        return {"entries": audit_json(await store.audit.entries())}

    @router.post("/agents/{agent}/sessions", status_code=201)
    async def start_session(agent: str, body: NewSessionBody,
                            who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        if agent not in runtime.config.agents:
            raise NoSuchAgent(f"no agent named {agent!r}")
        session = await store.sessions.open_for_api(agent, body.tag, body.user or who.name,
                                                    body.user_name or who.name)
        runtime.events.publish("session.created", {"session_id": session.id, "agent": agent,
                                                   "source": "api"})
        if body.text is None:
            return session_json(session)
        turn = await api_message(runtime.pipeline, session.id, body.text, who.name,
                                 wait=body.wait)
        return {**session_json(session), "turn": turn}

    @router.post("/sessions/{session_id}/messages")
    async def send_message(session_id: str, body: MessageBody,
                           who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return await api_message(runtime.pipeline, session_id, body.text, who.name,
                                 wait=body.wait)

    @router.get("/accounts", dependencies=[viewer])
    async def accounts() -> dict[str, Any]:
        health = await store.accounts.health()
        return {"accounts": account_rows(runtime.config, runtime.account_errors, health,
                                         runtime.providers)}

    @router.get("/providers", dependencies=[viewer])
    async def providers() -> dict[str, Any]:
        return {"providers": provider_rows(runtime.providers)}

    @router.get("/events", dependencies=[viewer])
    async def events(request: Request,
                     last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
        return _sse(runtime, request, last_event_id, None)

    @router.get("/sessions/{session_id}/events", dependencies=[viewer])
    async def session_events(session_id: str, request: Request,
                             last_event_id: Annotated[str | None, Header()] = None
                             ) -> StreamingResponse:
        return _sse(runtime, request, last_event_id, session_id)

    return router


def _sse(runtime: Runtime, request: Request, last_event_id: str | None,
         session_id: str | None) -> StreamingResponse:
    try:
        start = int(last_event_id or request.query_params.get("last_event_id") or 0)
    except ValueError:
        start = 0

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for event in runtime.events.stream(start):
            if await request.is_disconnected():
                return
            if event is None:
                yield ": keep-alive\n\n"
                continue
            if session_id and event.data.get("session_id") != session_id:
                continue
            data = json.dumps({"id": event.id, "at": event.at, **event.data})
            yield f"id: {event.id}\nevent: {event.name}\ndata: {data}\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
