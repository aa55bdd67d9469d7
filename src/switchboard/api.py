"""The operator API: turns, sessions, accounts, providers, live events. Bearer tokens from
`operators`."""


import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from channels.adapter import Provider
from sessions.events import EventHub
from switchboard.api_sessions import api_message
from switchboard.controls import SessionControls
from switchboard.current_config import CurrentConfig
from switchboard.delivery import Delivery
from switchboard.errors import ActionRefused, NoSuchAgent, NoSuchTurn
from switchboard.files import FileService, file_json
from switchboard.filters import SESSION_CHOICES, TURN_CHOICES, check_filters
from switchboard.interaction_rules import interaction_json
from switchboard.operators import Needs, Operator
from switchboard.pipeline import Pipeline
from switchboard.scoping import EventScope, own_session, scoped_filters
from switchboard.store import Store
from switchboard.views import (
    AccountList,
    audit_json,
    marked_transcript,
    provider_rows,
    session_json,
    turn_json,
    turn_story_json,
)
from switchboard.work import Tasks


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
    403: {"description": "the operator's role is too low, or it is limited to other agents"},
    404: {"description": "no such turn, session or agent"},
    409: {"description": "the action is refused in the session's state"},
}


def api_routes(*, store: Store, config: CurrentConfig, needs: Needs, controls: SessionControls,
               hub: EventHub, pipeline: Pipeline, delivery: Delivery, tasks: Tasks,
               account_list: AccountList, registry: Mapping[str, Provider],
               files: FileService) -> APIRouter:
    """The operator API (`config` read at each request: a reload changes it). Domain errors
    raised here (no such session, a refused action, a bad cursor) are answered by
    `http_errors`, with one status per kind."""
    viewer = Depends(needs("viewer"))
    Viewer = Annotated[Operator, viewer]
    router = APIRouter(prefix="/api", tags=["operators"], responses=ANSWERS)

    @router.get("/turns")
    async def list_turns(
        who: Viewer,
        status: str | None = None, provider: str | None = None, account: str | None = None,
        agent: str | None = None, session_id: str | None = None, binding: str | None = None,
        conversation: str | None = None, q: str | None = None, cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        filters = {"status": status, "provider": provider, "account": account, "agent": agent,
                   "session_id": session_id, "binding": binding, "conversation": conversation}
        check_filters(filters, TURN_CHOICES)
        page = await store.turns.page(scoped_filters(who, filters), cursor, limit, search=q)
        return {"turns": [turn_json(t) for t in page.items], "next_cursor": page.next_cursor}

    @router.get("/turns/{turn_id}")
    async def get_turn(turn_id: str, who: Viewer) -> dict[str, Any]:
        story = await store.turns.story(turn_id)
        if story is None:
            raise NoSuchTurn(f"no turn {turn_id}")
        who.check(story.turn.agent, f"turn {turn_id}")
        turn_files = await store.files.of_turns([turn_id])
        return {**turn_story_json(story), "files": [file_json(f, files) for f in turn_files],
                "interactions": [interaction_json(i)
                                 for i in await store.interactions.of_turn(turn_id)]}

    @router.post("/turns/{turn_id}/retry")
    async def retry_delivery(turn_id: str, who: Annotated[Operator, Depends(needs("operator"))]
                             ) -> dict[str, Any]:
        """Deliver a failed turn's reply again (its attempts counted afresh)."""
        turn = await store.turns.get(turn_id)
        if turn is None:
            raise NoSuchTurn(f"no turn {turn_id}")
        who.check(turn.agent, f"turn {turn_id}")
        outbox_id = await store.outbox.retry(turn_id, who.name)
        if outbox_id is None:
            raise ActionRefused(f"turn {turn_id} has no failed delivery to retry (only a reply "
                                "whose delivery failed can be sent again)")
        tasks.spawn(delivery.deliver(outbox_id))
        hub.publish("turn.retried", {"turn_id": turn_id, "by": who.name})
        return {"ok": True, "message": f"delivery of turn {turn_id} is retried"}

    @router.get("/sessions")
    async def list_sessions(
        who: Viewer,
        agent: str | None = None, state: str | None = None, user: str | None = None,
        source: str | None = None, tag: str | None = None, account: str | None = None,
        started_after: str | None = None, started_before: str | None = None,
        include_archived: bool = False, cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        filters: dict[str, Any] = {"agent": agent, "state": state, "user": user,
                                   "source": source, "tag": tag, "account": account,
                                   "include_archived": include_archived,
                                   "archive_after": config().sessions.auto_archive_after}
        check_filters(filters, SESSION_CHOICES)
        for key, value in (("started_after", started_after),
                           ("started_before", started_before)):
            if value:
                try:
                    filters[key] = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    raise HTTPException(400, f"{key}: {value!r} is not an ISO date or "
                                        "time") from None
        page = await store.sessions.page(scoped_filters(who, filters), cursor, limit)
        return {"sessions": [session_json(s) for s in page.items],
                "next_cursor": page.next_cursor}

    @router.get("/sessions/{session_id}")
    async def get_session(session_id: str, who: Viewer) -> dict[str, Any]:
        session = await own_session(store, who, session_id)
        session_files = await store.files.of_session(session_id)
        return {**session_json(session),
                "transcript": await marked_transcript(store, session_id),
                "files": [file_json(f, files) for f in session_files],
                "interactions": [interaction_json(i) for i in reversed(
                    await store.interactions.listing(session_id=session_id, limit=500))]}

    operator = needs("operator")
    admin = needs("admin")

    async def act(who: Operator, session_id: str, work: Callable[[], Awaitable[str]]
                  ) -> dict[str, Any]:
        if who.agents is not None:  # limited to some agents: is this session theirs?
            await own_session(store, who, session_id)
        return {"ok": True, "message": await work()}

    @router.post("/sessions/{session_id}/pause")
    async def pause(session_id: str, who: Annotated[Operator, Depends(operator)]
                    ) -> dict[str, Any]:
        return await act(who, session_id, lambda: controls.pause(session_id, who.name))

    @router.post("/sessions/{session_id}/resume")
    async def resume(session_id: str, who: Annotated[Operator, Depends(operator)]
                     ) -> dict[str, Any]:
        return await act(who, session_id, lambda: controls.resume(session_id, who.name))

    @router.post("/sessions/{session_id}/end")
    async def end(session_id: str, who: Annotated[Operator, Depends(operator)]
                  ) -> dict[str, Any]:
        return await act(who, session_id, lambda: controls.end(session_id, who.name))

    @router.post("/sessions/{session_id}/transfer")
    async def transfer(session_id: str, body: TransferBody,
                       who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        who.check(body.agent, f"agent {body.agent}")
        return await act(who, session_id,
                         lambda: controls.transfer(session_id, body.agent, who.name))

    @router.post("/sessions/{session_id}/model")
    async def set_model(session_id: str, body: ModelBody,
                        who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return await act(who, session_id,
                         lambda: controls.set_model(session_id, body.model, who.name))

    @router.delete("/sessions/{session_id}")
    @router.post("/sessions/{session_id}/delete")
    async def delete(session_id: str, who: Annotated[Operator, Depends(admin)]
                     ) -> dict[str, Any]:
        return await act(who, session_id, lambda: controls.delete(session_id, who.name))

    @router.get("/audit", dependencies=[Depends(admin)])
    async def audit() -> dict[str, Any]:
        return {"entries": audit_json(await store.audit.entries())}

    @router.post("/agents/{agent}/sessions", status_code=201)
    async def start_session(agent: str, body: NewSessionBody,
                            who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        if agent not in config().agents:
            raise NoSuchAgent(f"no agent named {agent!r}")
        who.check(agent, f"agent {agent}")
        session = await store.sessions.open_for_api(agent, body.tag, body.user or who.name,
                                                    body.user_name or who.name)
        hub.publish("session.created", {"session_id": session.id, "agent": agent,
                                        "source": "api"})
        if body.text is None:
            return session_json(session)
        turn = await api_message(pipeline, session.id, body.text, who.name, wait=body.wait)
        return {**session_json(session), "turn": turn}

    @router.post("/sessions/{session_id}/messages")
    async def send_message(session_id: str, body: MessageBody,
                           who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        await own_session(store, who, session_id)
        return await api_message(pipeline, session_id, body.text, who.name,
                                 wait=body.wait)

    @router.get("/accounts", dependencies=[viewer])
    async def accounts() -> dict[str, Any]:
        return {"accounts": await account_list.rows()}

    @router.get("/providers", dependencies=[viewer])
    async def providers() -> dict[str, Any]:
        return {"providers": provider_rows(registry)}

    @router.get("/events")
    async def events(request: Request, who: Viewer,
                     last_event_id: Annotated[str | None, Header()] = None
                     ) -> EventSourceResponse:
        return _sse(hub, request, last_event_id, None, EventScope(store, who))

    @router.get("/sessions/{session_id}/events")
    async def session_events(session_id: str, request: Request, who: Viewer,
                             last_event_id: Annotated[str | None, Header()] = None
                             ) -> EventSourceResponse:
        await own_session(store, who, session_id)
        return _sse(hub, request, last_event_id, session_id, EventScope(store, who))

    return router


def _sse(hub: EventHub, request: Request, last_event_id: str | None,
         session_id: str | None, scope: EventScope) -> EventSourceResponse:
    """The live events after `Last-Event-ID`, as Server-Sent Events. sse-starlette pings an
    idle stream, ends it when the client goes, and when `serve` is told to stop (uvicorn would
    otherwise wait out its graceful-shutdown timeout on every open console)."""
    try:
        start = int(last_event_id or request.query_params.get("last_event_id") or 0)
    except ValueError:
        start = 0

    async def body() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=2000)
        async for event in hub.stream(start):
            if event is None or (session_id and event.data.get("session_id") != session_id):
                continue
            if not await scope.shows(event.data):  # an operator limited to agents
                continue
            data = json.dumps({"id": event.id, "at": event.at, **event.data})
            yield ServerSentEvent(data, id=str(event.id), event=event.name)

    return EventSourceResponse(body(), sep="\n", ping=15,
                               ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
                               headers={"Cache-Control": "no-cache"})
