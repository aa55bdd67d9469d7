"""The operator API of human takeover (takeover.py): take a session over from its agent, reply
as the bot, hand it back; and the sessions agents handed to people (`/api/handoffs`)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from switchboard.errors import NoSuchTurn
from switchboard.operators import Needs, Operator
from switchboard.scoping import own_session
from switchboard.store import Store
from switchboard.takeover import Takeovers
from switchboard.views import turn_story_json


class _Body(BaseModel):
    """A request body: a field it does not have is refused (400 naming it), not dropped."""

    model_config = ConfigDict(extra="forbid")


class TakeoverBody(_Body):
    pass


class ReplyBody(_Body):
    text: str = Field(min_length=1, max_length=40_000,
                      description="What the person receives, as the bot")


class HandbackBody(_Body):
    replay_missed: bool = Field(
        default=False, description="Ask the agent at once about the messages it missed "
        "(one run: the turn's text is all of them, `turn.handback` the whole exchange); "
        "otherwise it answers from the person's next message on")


def takeover_routes(store: Store, takeovers: Takeovers, needs: Needs) -> APIRouter:
    Viewer = Annotated[Operator, Depends(needs("viewer"))]
    Acting = Annotated[Operator, Depends(needs("operator"))]
    router = APIRouter(prefix="/api", tags=["operators"], responses={
        404: {"description": "no such session"},
        409: {"description": "the action is refused in the session's state"}})

    @router.post("/sessions/{session_id}/takeover")
    async def take_over(session_id: str, who: Acting, body: TakeoverBody | None = None
                        ) -> dict[str, Any]:
        """Pause the agent for this session (state `paused`, cause "taken over by NAME"):
        the person's messages are recorded and shown live, not answered by the agent."""
        await own_session(store, who, session_id)
        return {"ok": True, "message": await takeovers.take_over(session_id, who.name)}

    @router.post("/sessions/{session_id}/reply")
    async def reply(session_id: str, body: ReplyBody, who: Acting) -> dict[str, Any]:
        """Send a message into the conversation as the bot (transcript role `operator`),
        through the outbox; answers with the reply's turn after its first attempt."""
        await own_session(store, who, session_id)
        sent = await takeovers.reply(session_id, who.name, body.text)
        story = await store.turns.story(sent["turn_id"])
        if story is None:
            raise NoSuchTurn(f"no turn {sent['turn_id']}")
        return {**sent, "turn": turn_story_json(story)}

    @router.post("/sessions/{session_id}/handback")
    async def hand_back(session_id: str, who: Acting, body: HandbackBody | None = None
                        ) -> dict[str, Any]:
        """The agent answers the session again; `replay_missed` asks it now about what it
        missed."""
        await own_session(store, who, session_id)
        replay = body.replay_missed if body is not None else False
        return {"ok": True,
                "message": await takeovers.hand_back(session_id, who.name, replay)}

    @router.get("/handoffs")
    async def handoffs(who: Viewer) -> dict[str, Any]:
        """Sessions their agent handed to people (still paused), oldest request first."""
        agents = sorted(who.agents) if who.agents is not None else None
        return {"sessions": await takeovers.waiting(agents)}

    return router


__all__ = ["takeover_routes"]
