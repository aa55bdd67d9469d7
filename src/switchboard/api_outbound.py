"""The operator API of outbound messages: an agent starts a conversation (now or at a set
time), and a scheduled one is cancelled until it is sent (docs/outbound.md)."""


from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from channels.outreach import Recipient
from switchboard.errors import NoSuchTurn
from switchboard.operators import Needs, Operator
from switchboard.outbound import Outbound, Send
from switchboard.store import iso
from switchboard.views import turn_story_json

Id = Annotated[str, Field(min_length=1, max_length=200)]


class To(BaseModel):
    """Exactly one of `user`, `conversation` (with an optional `thread`) or `email` (with an
    optional `subject`)."""

    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    user: Id | None = None
    conversation: Id | None = None
    thread: Id | None = None
    email: Annotated[str, Field(min_length=3, max_length=320)] | None = None
    subject: Annotated[str, Field(max_length=998)] | None = None

    @model_validator(mode="after")
    def _one(self) -> "To":
        given = [k for k in ("user", "conversation", "email") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of user, conversation or email"
                             + (f" (not {' and '.join(given)})" if given else ""))
        if self.thread and not self.conversation:
            raise ValueError("thread goes with conversation")
        if self.subject is not None and not self.email:
            raise ValueError("subject goes with email")
        return self

    def recipient(self) -> Recipient:
        return Recipient(user=self.user, conversation=self.conversation, thread=self.thread,
                         email=self.email, subject=self.subject)


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: Id
    to: To
    text: Annotated[str, Field(min_length=1, max_length=40_000)]
    send_at: AwareDatetime | None = Field(
        default=None, description="When to send it (ISO 8601 with a time zone); now when "
                                  "absent or past")
    session: Literal["continue", "new"] = Field(
        default="continue", description="continue: the scope's open session, else a new one; "
                                        "new: end the open one and start another")


def outbound_routes(outbound: Outbound, needs: Needs) -> APIRouter:
    Acting = Annotated[Operator, Depends(needs("operator"))]
    router = APIRouter(prefix="/api", tags=["outbound"])
    store = outbound.pipeline.store

    @router.post("/agents/{agent}/messages", status_code=202)
    async def send_message(agent: str, body: MessageBody, who: Acting) -> dict[str, Any]:
        """Start a conversation (or continue it): delivered now, or at `send_at`; the
        person's reply joins the session named in the answer."""
        who.check(agent, f"agent {agent}")
        sent = await outbound.send(agent, Send(account=body.account, to=body.to.recipient(),
                                               text=body.text, send_at=body.send_at,
                                               session=body.session), who.name)
        return {"turn_id": sent.turn_id, "session_id": sent.session_id,
                "send_at": iso(sent.send_at)}

    @router.post("/turns/{turn_id}/cancel")
    async def cancel_message(turn_id: str, who: Acting) -> dict[str, Any]:
        """Cancel an outbound message that has not been sent (409 once it is)."""
        turn = await store.turns.get(turn_id)
        if turn is None:
            raise NoSuchTurn(f"no turn {turn_id}")
        who.check(turn.agent, f"turn {turn_id}")
        await outbound.cancel(turn_id, who.name)
        story = await store.turns.story(turn_id)
        assert story is not None
        return turn_story_json(story)

    return router


__all__ = ["MessageBody", "outbound_routes"]
