"""The turn pipeline, read top to bottom.

receive → dedupe → record turn (acknowledge here) → match bindings → find or open session →
run agent → record reply with its outbox row → deliver → record delivery.

`receive` is the acknowledged part; `handle` is the rest of one turn's journey, each step a
call. The queue that runs journeys is in `work.py`, delivery and its retries in `delivery.py`,
what a restart or a resume picks up again in `recovery.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from channels.adapter import Recorded, reply_in_thread
from channels.messages import InboundMessage, OutboundMessage
from channels.payload import storable_message
from channels.rules import Binding, Match, NoMatch, match
from sessions import StateChange, scope_key
from sessions.events import EventHub
from switchboard.agents import AgentRequest, Handler, run_timed
from switchboard.config import Config
from switchboard.controls import CHAT_COMMANDS, SessionControls
from switchboard.delivery import Delivery
from switchboard.errors import AgentError
from switchboard.file_delivery import FileDelivery
from switchboard.file_flow import FileFlow
from switchboard.interactions import InteractionDesk, parse_request
from switchboard.metrics import Metrics
from switchboard.store import (
    AgentResult,
    Opened,
    OutboxEntry,
    ScopeRequest,
    SessionRecord,
    Store,
    TurnRecord,
)
from switchboard.views import session_json, transcript_json
from switchboard.work import ScopeLocks, Tasks, TurnQueue

API = "api"  # the provider of turns typed into a session over the operator API
REFUSED_NOTICE = ("You already have the maximum number of open conversations with this agent. "
                  "End one (for example with /end) before starting another.")


@dataclass(frozen=True)
class Route:
    """Where a routed turn goes: its binding, the agent answering, the session scope."""

    binding: Binding | None
    agent: str
    key: str


class Pipeline:
    """Carries each turn from its provider event to its delivered reply."""

    def __init__(self, config: Config, store: Store, handlers: dict[str, Handler],
                 events: EventHub, controls: SessionControls, delivery: Delivery, tasks: Tasks,
                 metrics: Metrics, files: FileFlow | None = None,
                 file_delivery: FileDelivery | None = None) -> None:
        self.config = config
        self.files = files
        self.file_delivery = file_delivery
        self.store = store
        self.handlers = handlers
        self.events = events
        self.controls = controls
        self.delivery = delivery
        self.tasks = tasks
        self.metrics = metrics
        self.queue = TurnQueue(self.handle, config.delivery.workers, tasks)
        self.scope_lock = ScopeLocks()
        self.agent_slots = asyncio.Semaphore(config.delivery.agent_concurrency)
        self.interactions = InteractionDesk(store, events, delivery.adapters, tasks,
                                            self.queue.enqueue)

    # --- the acknowledged part: dedupe and record ------------------------------------------

    async def receive(self, message: InboundMessage, extra: Mapping[str, Any] | None = None
                      ) -> Recorded:
        """Record the turn durably (or a duplicate of the original) and queue its journey.

        The caller acknowledges the provider when this returns.
        """
        message = storable_message(message)  # what an adapter let through must not fail a commit
        recorded = await self.store.turns.record(message, message.raw, extra)
        if recorded.duplicate_of is not None:
            self.metrics.turns.labels(message.provider, "duplicate").inc()
        else:
            self.events.publish("turn.received", {"turn_id": recorded.turn_id,
                                                  "provider": message.provider,
                                                  "account": message.account})
            # the payload is recorded; the queue keeps the message without it, so a long
            # queue holds few objects for the cyclic collector to walk
            self.queue.enqueue(recorded.turn_id, replace(message, raw={}))
        return recorded

    # --- the journey after the acknowledgement -----------------------------------------------

    async def handle(self, turn_id: str, message: InboundMessage | None = None) -> None:
        """Route, answer and deliver one recorded turn (read back when `message` is None)."""
        if message is None:
            turn = await self.store.turns.get(turn_id)
            if turn is None:
                return
            message = message_from_turn(turn)
        if message.provider == API:  # typed into a session: no bindings to match
            await self.answer_in_session(turn_id, message, message.conversation)
            return
        if message.extra.get("interaction_session"):  # an interaction's answer or expiry
            await self.answer_in_session(turn_id, message, message.extra["interaction_session"])
            return
        decision = await self.route(turn_id, message)
        if isinstance(decision, NoMatch):
            return
        route = scope(message, decision.binding)
        async with self.scope_lock(route.agent, route.key):
            if message.extra.get("command") in CHAT_COMMANDS:
                await self.chat_command(turn_id, message, route)
                return
            opened = await self.join_session(turn_id, message, route, decision.reason)
            if opened.refused:
                await self.refuse(turn_id, message, opened.refused)
                return
            if opened.state == "paused":
                await self.hold(turn_id, message, opened.session_id)
                return
            assert opened.session is not None
            if opened.state == "waiting":  # the message may be the answer the agent waits for
                message = await self.interactions.take_reply(turn_id, message, opened.session)
            outbox = await self.answer([turn_id], message,
                                       Route(route.binding, opened.agent, route.key),
                                       opened.session)
            await self.deliver_reply(outbox)

    async def route(self, turn_id: str, message: InboundMessage) -> Match | NoMatch:
        """Match the bindings; an ignored turn is recorded here, a match with its session."""
        replied = frozenset[str]()
        if message.thread:
            replied = await self.store.turns.bindings_replied_in_thread(
                message.account, message.conversation, message.thread)
        decision = match(message, self.config.bindings, replied)
        if isinstance(decision, NoMatch):
            await self.store.turns.update(turn_id, "ignored", {"reason": decision.reason},
                                          status="ignored", route_reason=decision.reason)
            self.events.publish("turn.routed", {"turn_id": turn_id, "status": "ignored",
                                                "reason": decision.reason})
            self.metrics.turns.labels(message.provider, "ignored").inc()
            return decision
        b = decision.binding
        self.events.publish("turn.routed", {"turn_id": turn_id, "binding": b.name,
                                            "agent": b.agent, "reason": decision.reason})
        return decision

    async def join_session(self, turn_id: str, message: InboundMessage, route: Route,
                           reason: str) -> Opened:
        """Record the route and find, reopen or start the session (a transferred scope goes
        to its new agent), in one transaction."""
        request = ScopeRequest(agent=route.agent, scope_key=route.key,
                               binding=route.binding.name if route.binding else None,
                               account=message.account,
                               provider=message.provider, source=message.provider,
                               user_id=message.sender, user_name=message.sender_name)
        opened = await self.store.sessions.route(turn_id, request,
                                                 self.config.policy_for(route.agent), reason)
        self.publish_transitions(opened.transitions)
        if opened.how == "created":
            self.events.publish("session.created", {"session_id": opened.session_id,
                                                    "agent": opened.agent})
        return opened

    async def refuse(self, turn_id: str, message: InboundMessage, reason: str) -> None:
        """Over the concurrency limit: ignore the turn, and tell the person why in the chat."""
        await self.store.turns.update(turn_id, "ignored", {"reason": reason}, status="ignored",
                                      route_reason=reason)
        outbox = await self.store.outbox.record_notice(
            turn_id, self.reply_to(message, REFUSED_NOTICE), lease=self.delivery.lease)
        await self.delivery.deliver_claimed(outbox)

    async def hold(self, turn_id: str, message: InboundMessage, session_id: str) -> None:
        """The session is paused: keep the turn in its transcript, answered after resume."""
        await self.store.turns.hold(turn_id, session_id, message.text)
        self.metrics.turns.labels(message.provider, "held").inc()
        self.events.publish("turn.held", {"turn_id": turn_id, "session_id": session_id})

    async def chat_command(self, turn_id: str, message: InboundMessage, route: Route) -> None:
        """`/new`, `/end`, `/pause`, `/resume`, `/agents`, `/transfer NAME` from the person
        who owns the session (the words after the command are its argument)."""
        command = message.extra["command"]
        transfer = await self.store.sessions.transfer_target(route.agent, route.key)
        agent = transfer[0] if transfer else route.agent
        args = message.text.split(maxsplit=1)[1:]
        reply = await self.controls.user_command(
            command, agent=agent, scope=route.key, user=message.sender,
            args=args[0] if args else "",
            transfer_to=route.binding.transfer_to if route.binding else ())
        await self.store.turns.update(turn_id, "command", {"command": command, "answer": reply,
                                                           "by": message.sender},
                                      route_reason=f"the chat command /{command}")
        outbox = await self.store.outbox.record_notice(
            turn_id, self.reply_to(message, reply), keep_status=False, lease=self.delivery.lease)
        await self.delivery.deliver_claimed(outbox)

    async def answer_in_session(self, turn_id: str, message: InboundMessage,
                                session_id: str) -> None:
        """Answer a turn addressed to a session directly (sessions over the API)."""
        session = await self.store.sessions.get(session_id)
        if session is None:
            return
        route = Route(None, session.agent, session.scope_key)
        async with self.scope_lock(route.agent, route.key):
            await self.store.sessions.touch(session_id, None)
            outbox = await self.answer([turn_id], message, route, session)
            await self.deliver_reply(outbox)

    async def answer_held(self, held: list[TurnRecord], binding: Binding,
                          session: SessionRecord) -> None:
        """After resume: run the agent once over every turn held while the session was
        paused (their user messages are in the transcript already), and deliver."""
        route = Route(binding, session.agent, session.scope_key)
        async with self.scope_lock(binding.agent, route.key):
            outbox = await self.answer([t.id for t in held], message_from_turn(held[-1]), route,
                                       session, already_in_transcript=True)
        await self.deliver_reply(outbox)

    async def answer(self, turn_ids: list[str], message: InboundMessage, route: Route,
                     session: SessionRecord, already_in_transcript: bool = False
                     ) -> OutboxEntry | None:
        """Run the agent and record its reply with its outbox row (leased to this process for
        the first attempt); None when the agent failed."""
        turn_id, session_id = turn_ids[-1], session.id
        agent = self.config.agents[route.agent]
        model = (session.model_override if agent.allow_model_override else None) \
            or (route.binding.model if route.binding else None) or agent.model
        handler = self.handlers[route.agent]
        transcript: list[dict[str, Any]] = []
        if getattr(handler, "wants_transcript", True):
            transcript = transcript_json(await self.store.sessions.transcript(session_id,
                                                                              limit=50))
        turn = turn_view(turn_id, message)
        if self.files is not None:  # settled before the agent runs: fetched or given up
            settled = await self.files.settle(turn_ids, message, session_id)
            if settled.files or settled.skipped:
                turn |= {"files": settled.files, "files_skipped": settled.skipped}
        request = AgentRequest(
            turn=turn, session=session_json(session),
            transcript=transcript, model=model,
            on_delta=lambda delta: self._delta(session_id, turn_id, delta))
        try:
            async with self.agent_slots:
                result = await run_timed(handler, request)
        except AgentError as error:
            self.metrics.turns.labels(message.provider, "failed").inc(len(turn_ids))
            for failed in turn_ids:
                await self.store.turns.update(failed, "agent_failed", {"error": str(error)},
                                              status="failed", error=str(error))
                self.events.publish("turn.failed", {"turn_id": failed, "error": str(error),
                                                    "session_id": session_id})
            return None
        self.metrics.agent.labels(route.agent).observe(result.duration_ms / 1000)
        out, opening = self.reply_to(message, result.reply), None
        if result.files and self.files is not None:
            out = await self.keep_agent_files(turn_id, session_id, result, out)
        if result.interaction is not None:  # the reply asks people something (interactions.py)
            request = parse_request(result.interaction, f"agent {route.agent}")
            prompt, out = self.interactions.prompt_for(request, result.reply, out)
            opening = self.interactions.opening(request, prompt, turn_id, session, out)
        outbox = await self.store.outbox.record_reply(
            turn_ids, session_id, None if already_in_transcript else message.text, result,
            out, lease=self.delivery.lease, also=opening)
        if opening is not None:
            self.interactions.requested(opening)
        self.events.publish("session.message.created", {"session_id": session_id,
                                                        "turn_id": turn_id, "role": "agent",
                                                        "text": result.reply})
        return outbox

    async def keep_agent_files(self, turn_id: str, session_id: str, result: AgentResult,
                               outbound: OutboundMessage) -> OutboundMessage:
        """Keep the agent's files; an adapter that carries files inside the reply (a mail)
        finds them in the reply's `extra["files"]`, the others get each delivered after it."""
        assert self.files is not None
        adapter = self.delivery.adapters.get(outbound.account)
        in_reply = bool(getattr(adapter, "files_in_reply", False))
        kept = await self.files.keep_agent_files(turn_id, session_id, result.files, outbound,
                                                 in_reply=in_reply)
        attached = [{"id": f.id, "name": f.name, "type": f.type, "size": f.size,
                     "sha256": f.sha256} for f in kept if f.status == "with_reply"]
        if not attached:
            return outbound
        return replace(outbound, extra={**outbound.extra, "files": attached})

    async def deliver_reply(self, outbox: OutboxEntry | None) -> None:
        """Deliver the reply, then the agent's files (each on its own: a failing file never
        holds the text back)."""
        if outbox is None:
            return
        await self.delivery.deliver_claimed(outbox)
        if self.file_delivery is not None:
            await self.file_delivery.deliver_turn(outbox.turn_id)

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        """Where a reply goes is the account's adapter's to say (a thread, a quote, a mail
        thread); an account that is not running gets the plain reply, whose delivery fails."""
        adapter = self.delivery.adapters.get(message.account)
        return adapter.reply_to(message, text) if adapter is not None \
            else reply_in_thread(message, text)

    def publish_transitions(self, transitions: Iterable[StateChange]) -> None:
        for moved in transitions:
            self.events.publish("session.state_changed", moved.event())

    async def _delta(self, session_id: str, turn_id: str, delta: str) -> None:
        self.events.publish("generation.delta", {"session_id": session_id, "turn_id": turn_id,
                                                 "delta": delta})


def scope(message: InboundMessage, binding: Binding) -> Route:
    """The session scope of the turn under the binding's `session_scope`."""
    thread = message.reply_thread if binding.session_scope == "thread" else None
    key = scope_key(binding.session_scope, account=message.account,
                    conversation=message.conversation, thread=thread, sender=message.sender)
    return Route(binding, binding.agent, key)


def turn_view(turn_id: str, message: InboundMessage) -> dict[str, Any]:
    """The turn as an agent handler sees it."""
    return {"id": turn_id, "provider": message.provider, "account": message.account,
            "event_id": message.event_id, "conversation": message.conversation,
            "kind": message.kind, "thread": message.thread, "sender": message.sender,
            "sender_name": message.sender_name, "text": message.text,
            **({"interaction": message.extra["interaction"]}
               if message.extra.get("interaction") else {})}


def message_from_turn(turn: TurnRecord) -> InboundMessage:
    """Rebuild the routed view of a recorded turn (after a restart, or a resume)."""
    extra = dict(turn.extra or {})
    return InboundMessage(
        provider=turn.provider, account=turn.account, event_id=turn.event_id,
        conversation=turn.conversation, kind=turn.kind or "channel",  # type: ignore[arg-type]
        sender=turn.sender, text=turn.text, message_id=turn.message_id, thread=turn.thread,
        mentioned=bool(extra.pop("mentioned", False)),
        starts_thread=bool(extra.pop("starts_thread", False)),
        for_agent=extra.pop("for_agent", None), sender_name=turn.sender_name,
        ignore_reason=extra.pop("ignore_reason", None), raw=turn.payload or {}, extra=extra)
