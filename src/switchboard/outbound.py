"""Messages an agent starts: a direct message to a person, a message into a chat or channel, a
new mail, now or at a set time.

`send` reads top to bottom: the agent and the account → the adapter says what to deliver and
what the person's reply will look like (`channels.outreach`) → the pipeline's own matching and
scoping say which binding and session that reply will reach → the turn, the session and the
outbox row are written at once → the outbox delivers it (now, or when it is due: the row's
`next_attempt_at`, claimed with the outbox's conditional update by exactly one process, so a
scheduled message survives restarts and is sent once however many `serve` share the database).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from channels.errors import DeliveryError
from channels.outreach import OutreachAdapter, Recipient, RecipientRefused
from channels.rules import Binding, Match, NoMatch, match
from switchboard.errors import (
    ActionRefused,
    NoSuchAgent,
    NotFound,
    OutboundRefused,
    ProviderUnavailable,
)
from switchboard.pipeline import Pipeline, scope
from switchboard.store import ScopeRequest
from switchboard.store.outbound import OutboundRequest

TIMER_LIMIT = 3600.0  # seconds: a message due later than this is left to the outbox sweep


@dataclass(frozen=True)
class Send:
    """One outbound message as asked for (API body, CLI)."""

    account: str
    to: Recipient
    text: str
    send_at: datetime | None = None
    session: Literal["continue", "new"] = "continue"


@dataclass(frozen=True)
class Sent:
    turn_id: str
    session_id: str
    send_at: datetime


class Outbound:
    """Starts conversations through the pipeline's adapters, store and delivery."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def send(self, agent: str, ask: Send, actor: str) -> Sent:
        """Record the outbound turn in the session its reply will join and deliver it (now,
        or at `send_at`). Nothing is written when anything is refused."""
        pipeline = self.pipeline
        config, store = pipeline.config, pipeline.store
        if agent not in config.agents:
            raise NoSuchAgent(f"no agent {agent}")
        if ask.account not in config.accounts:
            raise NotFound(f"no account {ask.account}")
        if not any(b.agent == agent and b.account == ask.account for b in config.bindings):
            raise ActionRefused(f"agent {agent} has no binding on account {ask.account}: a "
                                "reply could not reach it (add a binding to bindings.yaml)")
        adapter = pipeline.delivery.adapters.get(ask.account)
        if adapter is None:
            why = config.disabled.get(ask.account, "it is not running")
            raise ActionRefused(f"account {ask.account} is disabled: {why}")
        if not isinstance(adapter, OutreachAdapter):
            raise ActionRefused(f"account {ask.account}'s provider cannot start conversations")
        try:
            outreach = await adapter.outreach(agent, ask.to, ask.text)
        except RecipientRefused as error:
            raise OutboundRefused(f"to: {error}") from None
        except DeliveryError as error:  # the provider's own words (user_not_found)
            if error.permanent:
                raise OutboundRefused(f"{ask.to.words()}: the provider refused: {error}"
                                      ) from None
            raise ProviderUnavailable(f"{ask.to.words()}: the provider could not be asked: "
                                      f"{error}") from None
        reply = outreach.reply
        # the outbound turn itself is a message the binding wrote in this thread
        ours = frozenset(b.name for b in config.bindings if b.agent == agent)
        decision = match(reply, config.bindings, ours)
        binding = _bound(decision, agent, ask.to)
        if binding.session_scope == "thread" and reply.starts_thread and not reply.thread:
            raise OutboundRefused(
                f"binding {binding.name} keeps one session per thread (session_scope: "
                "thread), and a reply to a new message here goes into a thread that does not "
                "exist yet: give to.thread, or use a binding with session_scope conversation")
        if binding.session_scope == "sender" and not reply.sender:
            raise OutboundRefused(
                f"binding {binding.name} keeps one session per sender (session_scope: "
                "sender), and who will answer in this conversation is not known: write to "
                "to.user instead")
        route = scope(reply, binding)
        request = OutboundRequest(
            scope=ScopeRequest(agent=agent, scope_key=route.key, binding=binding.name,
                               account=ask.account, provider=reply.provider,
                               source=reply.provider, user_id=reply.sender, user_name=""),
            route_reason=f"an outbound message by {actor}; {decision.reason}",
            out=outreach.out, to=_to_json(ask.to), actor=actor, send_at=ask.send_at,
            fresh=ask.session == "new")
        recorded = await store.outbound.record(request, config.policy_for(agent),
                                               pipeline.delivery.lease)
        self._announce(recorded.turn_id, recorded.session_id, recorded.how, agent, ask)
        pipeline.publish_transitions(recorded.transitions)
        entry = recorded.outbox
        if recorded.leased:
            pipeline.tasks.spawn(pipeline.delivery.deliver_claimed(entry))
        else:
            wait = (entry.next_attempt_at - store.clock.now()).total_seconds()
            if wait < TIMER_LIMIT:  # sooner than the sweep would notice, when time is real
                self._at(entry.id, wait)
        return Sent(recorded.turn_id, recorded.session_id, entry.next_attempt_at)

    async def cancel(self, turn_id: str, actor: str) -> None:
        """Cancel a message not yet sent (`ActionRefused` once sent)."""
        await self.pipeline.store.outbound.cancel(turn_id, actor)
        self.pipeline.events.publish("turn.cancelled", {"turn_id": turn_id, "by": actor})

    def _at(self, outbox_id: int, wait: float) -> None:
        """Attempt the message when it is due: a timer, not a sleeping task, so a shutdown
        does not wait for it (`Tasks.drain` would, up to its timeout); after a restart the
        outbox sweep sends it."""
        tasks, delivery = self.pipeline.tasks, self.pipeline.delivery

        def due() -> None:
            if not tasks.draining:
                tasks.spawn(delivery.deliver(outbox_id))

        # the claim checks it is due
        asyncio.get_running_loop().call_later(max(wait, 0.0) + 0.01, due)

    def _announce(self, turn_id: str, session_id: str, how: str, agent: str, ask: Send) -> None:
        events = self.pipeline.events
        if how == "created":
            events.publish("session.created", {"session_id": session_id, "agent": agent})
        events.publish("turn.received", {"turn_id": turn_id, "account": ask.account,
                                         "kind": "outbound", "session_id": session_id})
        events.publish("session.message.created", {"session_id": session_id,
                                                    "turn_id": turn_id, "role": "agent",
                                                    "text": ask.text})


def _bound(decision: Match | NoMatch, agent: str, to: Recipient) -> Binding:
    """The binding the person's reply will match, when it is the agent's."""
    if isinstance(decision, NoMatch):
        raise ActionRefused(f"a reply from {to.words()} would not reach agent {agent}: "
                            f"{decision.reason}")
    if decision.binding.agent != agent:
        raise ActionRefused(f"a reply from {to.words()} would go to agent "
                            f"{decision.binding.agent} (binding {decision.binding.name}), not "
                            f"to {agent}")
    return decision.binding


def _to_json(to: Recipient) -> dict[str, str]:
    return {k: v for k, v in (("user", to.user), ("conversation", to.conversation),
                              ("thread", to.thread), ("email", to.email),
                              ("subject", to.subject)) if v}


__all__ = ["Outbound", "Send", "Sent"]
