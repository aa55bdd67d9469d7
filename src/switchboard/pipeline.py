"""The turn pipeline, read top to bottom.

receive → dedupe → record turn (acknowledge here) → match bindings → admit (DM policy, rate
limits, loop guard) → find or open session → run agent → record reply with its outbox row →
deliver → record delivery.

Order: a turn takes its place in its conversation's line before its first await, so routing
happens in arrival order; it takes its place in its session scope's line before it leaves the
first, so answers do too (and, across processes, it waits for earlier unanswered turns).

`receive` is the acknowledged part; `handle` is the rest of one turn's journey, each step a
call. The queue that runs journeys is in `work.py`, delivery and its retries in `delivery.py`,
what a restart or a resume picks up again in `recovery.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from channels.adapter import Recorded, reply_in_thread
from channels.live import LIVE_KEY
from channels.messages import InboundMessage, OutboundMessage
from channels.payload import storable_message
from channels.rules import Binding, Match, NoMatch, match
from sessions import StateChange, scope_key
from sessions.events import EventHub
from switchboard.admission import Admission, Refusal
from switchboard.agents import AgentRequest, Handler, run_timed
from switchboard.config import Config
from switchboard.controls import CHAT_COMMANDS, SessionControls
from switchboard.delivery import Delivery
from switchboard.errors import AgentError
from switchboard.file_delivery import FileDelivery
from switchboard.file_flow import FileFlow
from switchboard.handoffs import both, handoff_of
from switchboard.interactions import InteractionDesk, parse_request
from switchboard.live import LiveTurn, live_turn
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
from switchboard.work import Line, Place, ScopeLocks, Tasks, TurnQueue

log = logging.getLogger(__name__)

API = "api"  # the provider of turns typed into a session over the operator API
REFUSED_NOTICE = ("You already have the maximum number of open conversations with this agent. "
                  "End one (for example with /end) before starting another.")


@dataclass(frozen=True)
class Route:
    """Where a routed turn goes: its binding, the agent answering, the session scope."""

    binding: Binding | None
    agent: str
    key: str


@dataclass(frozen=True)
class Answered:
    """The agent's reply recorded with its outbox row (None: the agent failed), and the live
    side of the reply (indicator, live message) still to finish when it is delivered."""

    outbox: OutboxEntry | None
    live: LiveTurn | None = None
    files: bool = False  # the agent answered with files, delivered after the reply


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
        self.queue = TurnQueue(self.handle, config.delivery.workers, tasks,
                               config.delivery.queue_limit, self.read_back)
        metrics.queued.set_function(lambda: len(self.queue))
        metrics.backlog.set_function(lambda: self.queue.waiting)
        self.scope_lock = ScopeLocks()
        self.arrivals = Line()  # per conversation: routing in arrival order
        self.admission = Admission(config.accounts, store, self.reply_to)
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
        spill = self.queue.arrive()  # the queue is full: the turn waits in the database
        try:
            recorded = await self.store.turns.record(message, message.raw, extra, queued=spill)
        except BaseException:
            self.queue.arrived(spill)
            raise
        if recorded.duplicate_of is not None:
            self.queue.arrived(spill)
            self.metrics.turns.labels(message.provider, "duplicate").inc()
        else:
            self.events.publish("turn.received", {"turn_id": recorded.turn_id,
                                                  "provider": message.provider,
                                                  "account": message.account})
            # the payload is recorded; the queue keeps the message without it, so a long
            # queue holds few objects for the cyclic collector to walk
            self.queue.arrived(spill, recorded.turn_id, replace(message, raw={}))
        return recorded

    async def read_back(self, limit: int) -> list[tuple[str, InboundMessage]]:
        """Turns that waited in the database for room in the queue, oldest first."""
        turns = await self.store.backlog.take(limit)
        self.metrics.refilled.inc(len(turns))
        return [(turn.id, replace(message_from_turn(turn), raw={})) for turn in turns]

    # --- the journey after the acknowledgement -----------------------------------------------

    async def handle(self, turn_id: str, message: InboundMessage | None = None) -> None:
        """Route, answer and deliver one recorded turn (read back when `message` is None:
        after a restart, when a live message the dead process started is gone on with)."""
        resume = None
        if message is None:
            turn = await self.store.turns.get(turn_id)
            if turn is None:
                return
            message = message_from_turn(turn)
            resume = await self.store.turns.live_started(turn_id)
        if message.provider == API:  # typed into a session: no bindings to match
            await self.answer_in_session(turn_id, message, message.conversation)
            return
        if message.extra.get("interaction_session"):  # an interaction's answer or expiry
            await self.answer_in_session(turn_id, message, message.extra["interaction_session"])
            return
        # before the first await: the place in line is the turn's place in the queue
        async with self.arrivals.take(f"{message.account}:{message.conversation}"):
            decision = await self.route(turn_id, message)
            if isinstance(decision, NoMatch):
                return
            refusal = await self.admission.check(turn_id, message, decision.binding)
            route = scope(message, decision.binding)
            place = None if refusal is not None else \
                self.scope_lock(route.agent, route.key, (turn_id, message, decision.reason))
        if place is None:
            assert refusal is not None
            await self.ignore(turn_id, message, refusal)
            return
        async with place:
            if place.taken:  # answered together with the turn ahead of it (coalesce)
                return
            await self.store.turns.wait_for_earlier(turn_id, message.account,
                                                    message.conversation,
                                                    timeout=self.order_wait(route.agent))
            if message.extra.get("command") in CHAT_COMMANDS:
                await self.chat_command(turn_id, message, route)
                return
            opened = await self.join_session(turn_id, message, route, decision.reason)
            if opened.refused:
                await self.ignore(turn_id, message, Refusal(opened.refused, REFUSED_NOTICE))
                return
            if opened.state == "paused":
                await self.hold(turn_id, message, opened.session_id)
                return
            assert opened.session is not None
            answering = Route(route.binding, opened.agent, route.key)
            turns = await self.gather(place, answering, opened.session.id)
            if opened.state == "waiting":  # the message may be the answer the agent waits for
                turns[0] = (turn_id, await self.interactions.take_reply(turn_id, message,
                                                                        opened.session))
            together = None if len(turns) == 1 else "\n\n".join(
                agent_text(m) for _, m in turns)
            answered = await self.answer([t for t, _ in turns], turns[-1][1], answering,
                                         opened.session, already_in_transcript=len(turns) > 1,
                                         text=together, resume=resume)
            await self.deliver_reply(answered)

    async def route(self, turn_id: str, message: InboundMessage) -> Match | NoMatch:
        """Match the bindings; an ignored turn is recorded here, a match with its session."""
        replied = frozenset[str]()
        if message.thread:
            replied = await self.store.turns.bindings_replied_in_thread(
                message.account, message.conversation, message.thread)
        decision = match(message, self.config.bindings, replied)
        if isinstance(decision, NoMatch):
            await self.ignore(turn_id, message, Refusal(decision.reason))
            return decision
        b = decision.binding
        self.events.publish("turn.routed", {"turn_id": turn_id, "binding": b.name,
                                            "agent": b.agent, "reason": decision.reason})
        return decision

    async def ignore(self, turn_id: str, message: InboundMessage, refusal: Refusal) -> None:
        """The turn is not answered: record why, and tell the person when there is a notice
        (a pairing code, a rate limit, the concurrency limit), through the outbox."""
        reason, outbox = refusal.reason, None
        if refusal.notice:  # first: whoever sees the turn ignored sees its notice on its way
            outbox = await self.store.outbox.record_notice(
                turn_id, self.reply_to(message, refusal.notice), lease=self.delivery.lease)
        await self.store.turns.update(turn_id, "ignored", {"reason": reason, **refusal.detail},
                                      status="ignored", route_reason=reason)
        self.events.publish("turn.routed", {"turn_id": turn_id, "status": "ignored",
                                            "reason": reason})
        self.metrics.turns.labels(message.provider, "ignored").inc()
        if outbox is not None:
            await self.delivery.deliver_claimed(outbox)

    async def gather(self, place: Place, route: Route, session_id: str
                     ) -> list[tuple[str, InboundMessage]]:
        """The turns this agent run answers: this one, and with `coalesce: true` those already
        waiting behind it for the same session (routed into it, their messages into the
        transcript, each timeline saying with which)."""
        ahead = place.item[:2]
        if route.binding is None or not route.binding.coalesce:
            return [ahead]
        waiting = self.scope_lock.take_over(
            place, lambda item: item is not None
            and item[1].extra.get("command") not in CHAT_COMMANDS)
        if not waiting:
            return [ahead]
        for turn_id, message, reason in waiting:
            await self.join_session(turn_id, message, route, reason)
        turns = [ahead, *((t, m) for t, m, _ in waiting)]
        await self.store.turns.coalesce(session_id, [(t, m.text) for t, m in turns])
        return turns

    def order_wait(self, agent: str) -> float:
        """How long a turn waits for earlier ones other processes answer: their agent's
        time, and a little."""
        timeout = self.config.agents[agent].timeout if agent in self.config.agents else None
        return (timeout.total_seconds() if timeout else 30.0) + 5.0

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

    async def hold(self, turn_id: str, message: InboundMessage, session_id: str) -> None:
        """The session is paused: keep the turn in its transcript, answered after resume."""
        await self.store.turns.hold(turn_id, session_id, message.text)
        self.metrics.turns.labels(message.provider, "held").inc()
        self.events.publish("turn.held", {"turn_id": turn_id, "session_id": session_id,
                                          "sender": message.sender, "text": message.text})

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
            await self.deliver_reply(await self.answer([turn_id], message, route, session))

    async def answer_held(self, held: list[TurnRecord], binding: Binding,
                          session: SessionRecord) -> None:
        """After resume: run the agent once over every turn held while the session was
        paused (their user messages are in the transcript already), and deliver."""
        route = Route(binding, session.agent, session.scope_key)
        async with self.scope_lock(binding.agent, route.key):
            answered = await self.answer([t.id for t in held], message_from_turn(held[-1]),
                                         route, session, already_in_transcript=True)
        await self.deliver_reply(answered)

    async def answer(self, turn_ids: list[str], message: InboundMessage, route: Route,
                     session: SessionRecord, already_in_transcript: bool = False,
                     text: str | None = None, resume: dict[str, Any] | None = None
                     ) -> Answered:
        """Run the agent, showing that it works and what it writes where the account can, and
        record its reply with its outbox row (leased to this process for the first attempt).
        `text`: what the agent is asked, when it is not the message's own (several turns
        answered together)."""
        turn_id, session_id = turn_ids[-1], session.id
        agent = self.config.agents[route.agent]
        model = (session.model_override if agent.allow_model_override else None) \
            or (route.binding.model if route.binding else None) or agent.model
        handler = self.handlers[route.agent]
        transcript: list[dict[str, Any]] = []
        if getattr(handler, "wants_transcript", True):
            transcript = transcript_json(await self.store.sessions.transcript(session_id,
                                                                              limit=50))
        live = None if getattr(handler, "instant", False) else live_turn(
            turn_id, message, self.delivery.adapters, self.store, self.metrics,
            self.delivery.pacer, resume)
        if live is not None:
            live.begin()
        try:
            return await self._run_agent(turn_ids, message, route, session, handler, model,
                                         transcript, already_in_transcript, live, text)
        except BaseException:  # a bug, a shutdown: no indicator or stream is left running
            if live is not None:
                live.cancel()
            raise

    async def _run_agent(self, turn_ids: list[str], message: InboundMessage, route: Route,
                         session: SessionRecord, handler: Handler, model: str | None,
                         transcript: list[dict[str, Any]], already_in_transcript: bool,
                         live: LiveTurn | None, text: str | None) -> Answered:
        """The agent's run and its recorded reply (or its failure), for `answer`."""
        turn_id, session_id = turn_ids[-1], session.id
        turn = turn_view(turn_id, message, text)
        if self.files is not None:  # settled before the agent runs: fetched or given up
            settled = await self.files.settle(turn_ids, message, session_id)
            if settled.files or settled.skipped:
                turn |= {"files": settled.files, "files_skipped": settled.skipped}
        request = AgentRequest(
            turn=turn, session=session_json(session),
            transcript=transcript, model=model,
            on_delta=lambda delta: self._delta(session_id, turn_id, delta, live))
        try:
            async with self.agent_slots:
                result = await run_timed(handler, request)
        except AgentError as error:
            if live is not None:  # the indicator goes, a started live message is closed
                await live.abandon()
                await live.clear(replied=False)
                await self.store.turns.note(turn_id, live.notes)
            self.metrics.turns.labels(message.provider, "failed").inc(len(turn_ids))
            for failed in turn_ids:
                log.warning("turn %s: agent %s failed: %s", failed, route.agent, error,
                            extra={"turn_id": failed, "agent": route.agent,
                                   "account": message.account})
                await self.store.turns.update(failed, "agent_failed", {"error": str(error)},
                                              status="failed", error=str(error))
                self.events.publish("turn.failed", {"turn_id": failed, "error": str(error),
                                                    "session_id": session_id})
            return Answered(None)
        self.metrics.agent.labels(route.agent).observe(result.duration_ms / 1000)
        out, opening = self.reply_to(message, result.reply), None
        if result.files and self.files is not None:
            out = await self.keep_agent_files(turn_id, session_id, result, out)
        if result.interaction is not None:  # the reply asks people something (interactions.py)
            request = parse_request(result.interaction, f"agent {route.agent}")
            prompt, out = self.interactions.prompt_for(request, result.reply, out)
            opening = self.interactions.opening(request, prompt, turn_id, session, out)
        shown = await live.settle() if live is not None else None
        if shown is not None:  # the final delivery finishes the message shown so far
            out = replace(out, extra={**out.extra, LIVE_KEY: shown})
        handoff = handoff_of(self.store, result, session_id, turn_id, route.agent)
        outbox = await self.store.outbox.record_reply(
            turn_ids, session_id, None if already_in_transcript else message.text, result,
            out, lease=self.delivery.lease, notes=live.notes if live is not None else (),
            also=both(opening, handoff))
        if opening is not None:
            self.interactions.requested(opening)
        if handoff is not None:  # the agent asked for a person (handoffs.py)
            handoff.announce(self.events)
        self.events.publish("session.message.created", {"session_id": session_id,
                                                        "turn_id": turn_id, "role": "agent",
                                                        "text": result.reply})
        return Answered(outbox, live, files=bool(result.files))

    async def deliver_reply(self, answered: Answered) -> None:
        """The first delivery attempt of a recorded reply: the working indicator stops before
        it (never shown after the reply), and is cleared after it; then the agent's files,
        each on its own (a failing file never holds the text back)."""
        if answered.live is None:
            if answered.outbox is not None:
                await self.delivery.deliver_claimed(answered.outbox)
        else:
            try:
                await answered.live.stop_working()
                if answered.outbox is not None:
                    await self.delivery.deliver_claimed(answered.outbox)
            finally:
                await answered.live.clear(replied=answered.outbox is not None)
        if answered.files and answered.outbox is not None and self.file_delivery is not None:
            await self.file_delivery.deliver_turn(answered.outbox.turn_id)

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

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        """Where a reply goes is the account's adapter's to say (a thread, a quote, a mail
        thread); an account that is not running gets the plain reply, whose delivery fails."""
        adapter = self.delivery.adapters.get(message.account)
        return adapter.reply_to(message, text) if adapter is not None \
            else reply_in_thread(message, text)

    def publish_transitions(self, transitions: Iterable[StateChange]) -> None:
        for moved in transitions:
            self.events.publish("session.state_changed", moved.event())

    async def _delta(self, session_id: str, turn_id: str, delta: str,
                     live: LiveTurn | None) -> None:
        self.events.publish("generation.delta", {"session_id": session_id, "turn_id": turn_id,
                                                 "delta": delta})
        if live is not None:
            await live.delta(delta)


def scope(message: InboundMessage, binding: Binding) -> Route:
    """The session scope of the turn under the binding's `session_scope`."""
    thread = message.reply_thread if binding.session_scope == "thread" else None
    key = scope_key(binding.session_scope, account=message.account,
                    conversation=message.conversation, thread=thread, sender=message.sender)
    return Route(binding, binding.agent, key)


def turn_view(turn_id: str, message: InboundMessage, text: str | None = None
              ) -> dict[str, Any]:
    """The turn as an agent handler sees it."""
    return {"id": turn_id, "provider": message.provider, "account": message.account,
            "event_id": message.event_id, "conversation": message.conversation,
            "kind": message.kind, "thread": message.thread, "sender": message.sender,
            "sender_name": message.sender_name,
            "text": agent_text(message) if text is None else text,
            **{key: message.extra[key] for key in ("interaction", "handback")
               if message.extra.get(key)}}


def agent_text(message: InboundMessage) -> str:
    """What the agent reads of a message: the adapter's readable copy (a chat's own markup
    removed), else the raw text."""
    return message.extra.get("agent_text") or message.text


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
