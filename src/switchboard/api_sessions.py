"""Sessions without a provider: an operator tries an agent through the same pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.adapter import reply_in_thread
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage
from switchboard.errors import ActionRefused, SessionNotFound
from switchboard.models import new_id
from switchboard.pipeline import API, Pipeline
from switchboard.views import turn_story_json


class TranscriptOnly:
    """The `api` provider: the reply lives in the session's transcript; nothing to send."""

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        return reply_in_thread(message, text)

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt:
        return DeliveryReceipt(f"transcript:{out.conversation}")


async def api_message(pipeline: Pipeline, session_id: str, text: str, actor: str,
                      wait: float = 30.0) -> dict[str, Any]:
    """A message into an API session: the same turn, transcript and agent as a provider's,
    delivered into the transcript only. Waits up to `wait` seconds for the reply."""
    store = pipeline.store
    session = await store.sessions.get(session_id)
    if session is None:
        raise SessionNotFound(f"no session {session_id}")
    if session.state == "ended":
        raise ActionRefused(f"session {session_id} is ended; start a new one")
    message = InboundMessage(provider=API, account=API, event_id=new_id("evt"),
                             conversation=session_id, kind="dm",
                             sender=session.user_id or actor, sender_name=actor, text=text)
    recorded = await store.turns.record(message, {"text": text, "actor": actor})
    turn_id = recorded.turn_id
    reason = f"sent through the API to session {session_id} by {actor}"
    await store.turns.update(turn_id, "routed", {"reason": reason}, agent=session.agent,
                             session_id=session_id, route_reason=reason)
    pipeline.events.publish("turn.received", {"turn_id": turn_id, "provider": API,
                                              "session_id": session_id})
    if session.state == "paused":
        await pipeline.hold(turn_id, message, session_id)
    else:
        pipeline.tasks.spawn(pipeline.answer_in_session(turn_id, message, session_id))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        story = await store.turns.story(turn_id)
        assert story is not None
        if story.turn.status != "pending" or loop.time() >= deadline:
            return turn_story_json(story)
        await asyncio.sleep(0.05)
