"""Human takeover: an operator pauses the agent of one session, answers the person as the bot,
and hands the session back.

While a session is taken over it is `paused` (cause "taken over by ann"): the person's
messages are routed into it and kept in its transcript with a timeline that says so, and they
are published live (`turn.held`, with the text), but the agent is not asked. An operator's
reply is a turn of its own (kind `operator`), in the transcript with role `operator` and the
operator's name, delivered through the outbox like any reply. The hand-back makes the session
live again; with `replay_missed` the agent is asked at once, in one run, about the messages it
missed (the turn's text is all of them, `turn.handback` the whole exchange with the operator);
without it those turns are closed and the agent answers from the person's next message on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from channels.adapter import reply_in_thread
from channels.messages import InboundMessage, OutboundMessage
from switchboard.controls import SessionControls
from switchboard.delivery import Delivery
from switchboard.errors import ActionRefused, SessionNotFound
from switchboard.pipeline import message_from_turn
from switchboard.store import SessionRecord, Store, TurnRecord
from switchboard.views import session_json

ReplyTo = Callable[[InboundMessage, str], OutboundMessage]


class Takeovers:
    """The operator's side of a session paused for people (API, console, CLI)."""

    def __init__(self, store: Store, controls: SessionControls,
                 delivery: Delivery | None, reply_to: ReplyTo | None) -> None:
        """`delivery`: attempt a reply here at once (None: the CLI; a running `serve`
        delivers it from the outbox). `reply_to`: where a reply to a message goes (the
        running adapters'); None where none runs: where the agent's last reply went."""
        self.store = store
        self.controls = controls
        self.delivery = delivery
        self.reply_to = reply_to

    async def _audit(self, actor: str, action: str, session_id: str,
                     detail: dict[str, Any] | None = None) -> None:
        if self.controls.audited:  # the CLI's; the API's are written by `switchboard.audit`
            await self.store.audit.record(actor, action, session_id, detail)

    async def _session(self, session_id: str) -> SessionRecord:
        session = await self.store.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return session

    async def take_over(self, session_id: str, operator: str) -> str:
        """Pause the agent for this session; the person's messages wait for the operator."""
        session = await self._session(session_id)
        moved = await self.store.takeovers.take_over(session_id, operator)
        if moved is not None:
            await self.controls.announce("session.state_changed", moved.event())
        await self.controls.announce("session.taken_over", {"session_id": session_id,
                                                    "agent": session.agent,
                                                    "operator": operator})
        await self._audit(operator, "takeover", session_id)
        return (f"session {session_id} is taken over by {operator}: the agent does not answer "
                "it until it is handed back")

    async def reply(self, session_id: str, operator: str, text: str) -> dict[str, Any]:
        """Send `text` into the conversation as the bot, where the agent's reply to the
        person's latest message would go; the reply's turn id and its outbox row."""
        session = await self._session(session_id)
        if session.state == "ended":
            raise ActionRefused(f"session {session_id} is ended; a reply needs an open "
                                "session (the person's next message starts a new one)")
        latest = await self.store.takeovers.latest_turn(session_id)
        if latest is None:
            raise ActionRefused(f"session {session_id} has no message from the person yet, so "
                                "there is no conversation to reply into")
        out = await self._reply_to(latest, text)
        leased = self.delivery is not None
        row = await self.store.takeovers.record_reply(
            session, operator, out, self.delivery.lease if self.delivery else None,
            leased=leased)
        await self.controls.announce("session.message.created", {
            "session_id": session_id, "turn_id": row.turn_id, "role": "operator",
            "operator": operator, "text": text})
        await self._audit(operator, "reply", session_id, {"turn_id": row.turn_id})
        if self.delivery is not None:
            await self.delivery.deliver_claimed(row)
        return {"turn_id": row.turn_id, "session_id": session_id}

    async def _reply_to(self, latest: TurnRecord, text: str) -> OutboundMessage:
        if self.reply_to is not None:
            return self.reply_to(message_from_turn(latest), text)
        shape = await self.store.takeovers.last_reply_shape(latest.session_id or "")
        if shape is not None:
            return replace(shape, text=text)
        return reply_in_thread(message_from_turn(latest), text)

    async def hand_back(self, session_id: str, operator: str, replay_missed: bool) -> str:
        """The agent answers the session again (with `replay_missed`, at once, about what it
        missed)."""
        session = await self._session(session_id)
        done = await self.store.takeovers.hand_back(session_id, operator, replay_missed)
        await self.controls.announce("session.state_changed", done.change.event())
        await self.controls.announce("session.handed_back", {
            "session_id": session_id, "agent": session.agent, "operator": operator,
            "replayed": len(done.replayed), "closed": len(done.closed)})
        await self._audit(operator, "handback", session_id,
                                   {"replay_missed": replay_missed})
        if done.replayed and self.controls.on_resumed is not None:
            self.controls.on_resumed(session_id)
        missed = len(done.replayed) or len(done.closed)
        if not missed:
            return f"session {session_id} is handed back to {session.agent}"
        if done.replayed:
            return (f"session {session_id} is handed back to {session.agent}; it is answering "
                    f"the {missed} message(s) it missed")
        return (f"session {session_id} is handed back to {session.agent}; the {missed} "
                "message(s) sent meanwhile stay with the operator's answers (not replayed)")

    async def waiting(self, agents: list[str] | None) -> list[dict[str, Any]]:
        """Sessions their agent handed to people, oldest request first."""
        return [session_json(s) for s in await self.store.takeovers.waiting(agents)]
