"""The operator API of interactions: what agents asked people, who answered, and an operator's
answer from the console (`/api/interactions`)."""


from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, model_validator

from switchboard.errors import NotFound
from switchboard.interactions import InteractionDesk, interaction_json
from switchboard.operators import Needs, Operator
from switchboard.store import Store, iso
from switchboard.store.interactions import AttemptRecord, InteractionRecord

STATES = ("pending", "answered", "expired")


class AnswerBody(BaseModel):
    option: str | None = Field(default=None, min_length=1, max_length=200)
    text: str | None = Field(default=None, min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _one_of(self) -> "AnswerBody":
        if (self.option is None) == (self.text is None):
            raise ValueError("give either option (an approval or a choice) or text (an input)")
        return self


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    return {"at": iso(attempt.at), "via": attempt.via, "by": (
        {"operator": attempt.by_name} if attempt.by_provider is None else
        {"provider": attempt.by_provider, "id": attempt.by_id, "name": attempt.by_name}),
        "option": attempt.option, "text": attempt.text, "accepted": attempt.accepted,
        "reason": attempt.reason}


async def interaction_story(store: Store, record: InteractionRecord) -> dict[str, Any]:
    """One interaction with its prompt's message at the provider and every answer attempt."""
    return {**interaction_json(record),
            "prompt_message_id": await store.interactions.prompt_message_id(record),
            "attempts": [attempt_json(a) for a in await store.interactions.attempts(record.id)]}


def interaction_routes(store: Store, desk: InteractionDesk, needs: Needs) -> APIRouter:
    Viewer = Annotated[Operator, Depends(needs("viewer"))]
    Answerer = Annotated[Operator, Depends(needs("operator"))]
    router = APIRouter(prefix="/api", tags=["interactions"])

    async def own(interaction_id: str, who: Operator) -> InteractionRecord:
        record = await store.interactions.get(interaction_id)
        if record is None:
            raise NotFound(f"no interaction {interaction_id}")
        who.check(record.agent, f"interaction {interaction_id} (agent {record.agent})")
        return record

    @router.get("/interactions")
    async def list_interactions(
        who: Viewer, state: Annotated[str | None, Query(pattern="^(pending|answered|expired)$")]
        = None, agent: str | None = None, session_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 200,
    ) -> dict[str, Any]:
        agents = [agent] if agent else None
        if agent:
            who.check(agent, f"agent {agent}")
        elif who.agents is not None:
            agents = sorted(who.agents)
        rows = await store.interactions.listing(state=state, agents=agents,
                                                session_id=session_id, limit=limit)
        return {"interactions": [interaction_json(r) for r in rows]}

    @router.get("/interactions/{interaction_id}")
    async def get_interaction(interaction_id: str, who: Viewer) -> dict[str, Any]:
        return await interaction_story(store, await own(interaction_id, who))

    @router.post("/interactions/{interaction_id}/answer")
    async def answer(interaction_id: str, body: AnswerBody, who: Answerer) -> dict[str, Any]:
        await own(interaction_id, who)
        decided = await desk.answer_as_operator(interaction_id, who.name, body.option,
                                                body.text)
        return await interaction_story(store, decided.interaction)

    return router


__all__ = ["STATES", "attempt_json", "interaction_routes", "interaction_story"]
