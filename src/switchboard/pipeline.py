"""The turn pipeline, read top to bottom.

receive → dedupe → record turn (acknowledge here) → match bindings → find or open session →
run agent → record reply with its outbox row → deliver → record delivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from channels.adapter import reply_in_thread
from channels.messages import DeliveryError, DeliveryReceipt, InboundMessage, OutboundMessage
from channels.payload import storable_message
from channels.rules import Binding, Match, NoMatch, match
from sessions import StateChange, scope_key
from sessions.events import EventHub
from switchboard.agents import AgentError, AgentRequest, Handler, run_timed
from switchboard.config import Config
from switchboard.controls import SessionControls
from switchboard.metrics import Metrics
from switchboard.models import Outbox, Turn
from switchboard.store import (
    Opened,
    Recorded,
    ScopeRequest,
    Store,
    aware,
    session_dict,
)

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=30)  # a delivery attempt takes at most ~15 s (HTTP timeouts)


class Adapter(Protocol):
    """What the pipeline asks of an account's adapter (`channels.adapter.AccountAdapter`)."""

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage: ...

    async def deliver(self, out: OutboundMessage) -> str | DeliveryReceipt: ...


CHAT_COMMANDS = ("new", "end")


@dataclass(frozen=True)
class Route:
    """Where a routed turn goes: its binding, the agent answering, the session scope."""

    binding: Binding | None
    agent: str
    key: str


class Pipeline:
    """Carries each turn from its provider event to its delivered reply."""

    def __init__(self, config: Config, store: Store, adapters: dict[str, Adapter],
                 handlers: dict[str, Handler], events: EventHub, controls: SessionControls,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.store = store
        self.adapters = adapters
        self.handlers = handlers
        self.events = events
        self.agent_slots = asyncio.Semaphore(config.delivery.agent_concurrency)
        self._queue: deque[tuple[str, InboundMessage | None]] = deque()
        self._runners = 0
        self.lease = config.delivery.lease or LEASE
        self._scope_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.controls = controls

    # --- the acknowledged part: dedupe and record ------------------------------------------

    async def receive(self, message: InboundMessage, extra: dict[str, Any] | None = None
                      ) -> Recorded:
        """Record the turn durably (or a duplicate of the original) and hand it to the worker.

        The caller acknowledges the provider when this returns.
        """
        message = storable_message(message)  # what an adapter let through must not fail a commit
        recorded = await self.store.record_turn(message, message.raw, extra)
        if recorded.duplicate_of is not None:
            self.metrics.turns.labels(message.provider, "duplicate").inc()
        else:
            self.events.publish("turn.received", {"turn_id": recorded.turn_id,
                                                  "provider": message.provider,
                                                  "account": message.account})
            # the payload is recorded; the queue keeps the message without it, so a long
            # queue holds few objects for the cyclic collector to walk
            self.enqueue(recorded.turn_id, replace(message, raw={}))
        return recorded

    def enqueue(self, turn_id: str, message: InboundMessage | None = None) -> None:
        """Queue a recorded turn for `handle`. At most `delivery.workers` turns are worked at
        once; the rest wait as plain entries in a queue (not as tasks), which keeps a flood of
        acknowledged turns cheap to hold until their replies catch up."""
        self._queue.append((turn_id, message))
        if self._runners < self.config.delivery.workers:
            self._runners += 1
            self.spawn(self._work_queue())

    async def _work_queue(self) -> None:
        try:
            while self._queue:
                await self._guard(self.handle(*self._queue.popleft()))
        finally:
            self._runners -= 1

    # --- after the acknowledgement -----------------------------------------------------------

    async def handle(self, turn_id: str, message: InboundMessage | None = None) -> None:
        """Route, answer and deliver one recorded turn."""
        if message is None:
            row = await self.store.get_turn_row(turn_id)
            if row is None:
                return
            message = message_from_turn(row)
        if message.provider == "api":  # typed into a session: no bindings to match
            await self.answer_in_session(turn_id, message, message.conversation)
            return
        decision = await self.route(turn_id, message)
        if isinstance(decision, NoMatch):
            return
        route = self.scope(message, decision.binding)
        async with self.scope_lock(f"{route.agent}:{route.key}"):
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
            outbox = await self.answer([turn_id], message,
                                       Route(route.binding, opened.agent, route.key),
                                       opened.session)
            if outbox is not None:
                await self.deliver_claimed(outbox)

    async def route(self, turn_id: str, message: InboundMessage) -> Match | NoMatch:
        """Match the bindings; an ignored turn is recorded here, a match with its session."""
        replied = frozenset[str]()
        if message.thread:
            replied = await self.store.bindings_replied_in_thread(
                message.account, message.conversation, message.thread)
        decision = match(message, self.config.bindings, replied)
        if isinstance(decision, NoMatch):
            await self.store.update_turn(turn_id, "ignored", {"reason": decision.reason},
                                         status="ignored", route_reason=decision.reason)
            self.events.publish("turn.routed", {"turn_id": turn_id, "status": "ignored",
                                                "reason": decision.reason})
            self.metrics.turns.labels(message.provider, "ignored").inc()
            return decision
        b = decision.binding
        self.events.publish("turn.routed", {"turn_id": turn_id, "binding": b.name,
                                            "agent": b.agent, "reason": decision.reason})
        return decision

    @staticmethod
    def scope(message: InboundMessage, binding: Binding) -> Route:
        """The session scope of the turn under the binding's `session_scope`."""
        thread = message.reply_thread if binding.session_scope == "thread" else None
        key = scope_key(binding.session_scope, account=message.account,
                        conversation=message.conversation, thread=thread,
                        sender=message.sender)
        return Route(binding, binding.agent, key)

    async def join_session(self, turn_id: str, message: InboundMessage, route: Route,
                           reason: str) -> Opened:
        """Record the route and find, reopen or start the session (a transferred scope goes
        to its new agent), in one transaction."""
        request = ScopeRequest(agent=route.agent, scope_key=route.key,
                               binding=route.binding.name if route.binding else None,
                               account=message.account,
                               provider=message.provider, source=message.provider,
                               user_id=message.sender, user_name=message.sender_name)
        opened = await self.store.route_to_session(turn_id, request,
                                                   self.config.policy_for(route.agent), reason)
        self.publish_transitions(opened.transitions)
        if opened.how == "created":
            self.events.publish("session.created", {"session_id": opened.session_id,
                                                    "agent": opened.agent})
        return opened

    async def refuse(self, turn_id: str, message: InboundMessage, reason: str) -> None:
        """Over the concurrency limit: ignore the turn, and tell the person why in the chat."""
        await self.store.update_turn(turn_id, "ignored", {"reason": reason}, status="ignored",
                                     route_reason=reason)
        notice = ("You already have the maximum number of open conversations with this "
                  "agent. End one (for example with /end) before starting another.")
        outbox = await self.store.record_notice(turn_id, self.reply_to(message, notice),
                                                lease=self.lease)
        await self.deliver_claimed(outbox)

    async def hold(self, turn_id: str, message: InboundMessage, session_id: str) -> None:
        await self.store.hold_turn(turn_id, session_id, message.text)
        self.metrics.turns.labels(message.provider, "held").inc()
        self.events.publish("turn.held", {"turn_id": turn_id, "session_id": session_id})

    def resume_held(self, session_id: str) -> None:
        """A session was resumed here: answer what it held now, not at the next sweep."""
        self.spawn(self.release_held(session_id))

    async def release_held(self, session_id: str) -> None:
        """After resume: run the agent once over everything held while the session was paused."""
        held = await self.store.claim_held(session_id)
        if not held:
            return
        last = message_from_turn(held[-1])
        session = await self.store.session_row(session_id)
        if session is None or not held[-1].binding:
            return
        binding = next((b for b in self.config.bindings if b.name == held[-1].binding), None)
        if binding is None:
            return
        route = Route(binding, session.agent, session.scope_key)
        async with self.scope_lock(f"{binding.agent}:{route.key}"):
            outbox = await self.answer([t.id for t in held], last, route,
                                       session_dict(session), already_in_transcript=True)
        if outbox is not None:
            await self.deliver_claimed(outbox)

    async def chat_command(self, turn_id: str, message: InboundMessage, route: Route) -> None:
        """`/new` and `/end` from the person who owns the session."""
        command = message.extra["command"]
        transfer = await self.store.transfer_target(route.agent, route.key)
        agent = transfer[0] if transfer else route.agent
        reply = await self.controls.user_command(command, agent=agent, scope=route.key,
                                                 user=message.sender)
        await self.store.update_turn(turn_id, "command", {"command": command, "answer": reply},
                                     route_reason=f"the chat command /{command}")
        outbox = await self.store.record_notice(turn_id, self.reply_to(message, reply),
                                                keep_status=False, lease=self.lease)
        await self.deliver_claimed(outbox)

    async def answer_in_session(self, turn_id: str, message: InboundMessage,
                                session_id: str) -> None:
        """Answer a turn addressed to a session directly (sessions over the API)."""
        session = await self.store.session_row(session_id)
        if session is None:
            return
        route = Route(None, session.agent, session.scope_key)
        async with self.scope_lock(f"{route.agent}:{route.key}"):
            await self.store.touch_session(session_id, None)
            outbox = await self.answer([turn_id], message, route, session_dict(session))
            if outbox is not None:
                await self.deliver_claimed(outbox)

    async def answer(self, turn_ids: list[str], message: InboundMessage, route: Route,
                     session: dict[str, Any], already_in_transcript: bool = False
                     ) -> Outbox | None:
        """Run the agent and record its reply with its outbox row (leased to this process for
        the first attempt); None when the agent failed."""
        turn_id, session_id = turn_ids[-1], session["id"]
        agent = self.config.agents[route.agent]
        model = (session.get("model_override") if agent.allow_model_override else None) \
            or (route.binding.model if route.binding else None) or agent.model
        handler = self.handlers[route.agent]
        transcript = []
        if getattr(handler, "wants_transcript", True):
            transcript = await self.store.transcript(session_id, limit=50)
        request = AgentRequest(
            turn=turn_view(turn_id, message), session=session, transcript=transcript,
            model=model, on_delta=lambda delta: self._delta(session_id, turn_id, delta))
        try:
            async with self.agent_slots:
                result = await run_timed(handler, request)
        except AgentError as error:
            self.metrics.turns.labels(message.provider, "failed").inc(len(turn_ids))
            for failed in turn_ids:
                await self.store.update_turn(failed, "agent_failed", {"error": str(error)},
                                             status="failed", error=str(error))
                self.events.publish("turn.failed", {"turn_id": failed, "error": str(error),
                                                    "session_id": session_id})
            return None
        self.metrics.agent.labels(route.agent).observe(result.duration_ms / 1000)
        outbox = await self.store.record_reply(
            turn_ids, session_id, None if already_in_transcript else message.text, result,
            self.reply_to(message, result.reply), lease=self.lease)
        self.events.publish("session.message.created", {"session_id": session_id,
                                                        "turn_id": turn_id, "role": "agent",
                                                        "text": result.reply})
        return outbox

    async def deliver(self, outbox_id: int) -> None:
        """Lease an outbox row (a retry, or one a dead process left) and attempt delivery."""
        row = await self.store.claim_outbox(outbox_id, self.lease)
        if row is not None:
            await self.deliver_claimed(row)

    async def deliver_claimed(self, row: Outbox) -> None:
        """One delivery attempt of a leased outbox row; schedules the retry when it fails."""
        adapter = self.adapters.get(row.account)
        if adapter is None:
            reason = self.config.disabled.get(row.account, "the account is not running")
            await self.store.delivery_failed(row, f"account {row.account} is disabled: {reason}",
                                             retry_at=None, detail={})
            return
        outbound = OutboundMessage(provider=row.provider, account=row.account,
                                   conversation=row.conversation, text=row.text,
                                   thread=row.thread, reply_to=row.reply_to, extra=row.extra)
        try:
            receipt = await adapter.deliver(outbound)
        except DeliveryError as error:
            await self._delivery_failed(row, str(error), error.permanent, error.retry_after)
            return
        except Exception as error:  # an adapter bug must not lose the reply: retry it
            log.exception("delivery of outbox %s raised", row.id)
            await self._delivery_failed(row, f"{type(error).__name__}: {error}", False, None)
            return
        if not isinstance(receipt, DeliveryReceipt):
            receipt = DeliveryReceipt(str(receipt))
        provider_id = receipt.provider_message_id
        await self.store.delivery_succeeded(row, provider_id, receipt.detail)
        if not row.notice:
            self.metrics.turns.labels(row.provider, "delivered").inc(1 + len(row.batch))
        received = aware(row.created_at)
        if received is not None:
            elapsed = (self.store.clock.now() - received).total_seconds()
            self.metrics.delivery.labels(row.provider).observe(max(elapsed, 0.0))
        self.events.publish("turn.delivered", {"turn_id": row.turn_id,
                                               "session_id": row.session_id,
                                               "provider_message_id": provider_id})

    async def _delivery_failed(self, row: Outbox, error: str, permanent: bool,
                               retry_after: float | None) -> None:
        settings = self.config.delivery
        retry_at = None
        if not permanent and row.attempts < settings.max_attempts:
            delay = retry_after if retry_after is not None else self._backoff(row.attempts)
            retry_at = self.store.clock.now() + timedelta(seconds=delay)
        await self.store.delivery_failed(row, error, retry_at=retry_at,
                                         detail={"permanent": permanent})
        if retry_at is None:
            if not row.notice:
                self.metrics.turns.labels(row.provider, "failed").inc(1 + len(row.batch))
            self.events.publish("turn.failed", {"turn_id": row.turn_id, "error": error,
                                                "session_id": row.session_id})
        else:
            self.metrics.retries.labels(row.provider).inc()
            delay = (retry_at - self.store.clock.now()).total_seconds()
            self.spawn(self._retry_later(row.id, max(delay, 0.0)))  # type: ignore[arg-type]

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        """Where a reply goes is the account's adapter's to say (a thread, a quote, a mail
        thread); an account that is not running gets the plain reply, whose delivery fails."""
        adapter = self.adapters.get(message.account)
        return adapter.reply_to(message, text) if adapter is not None \
            else reply_in_thread(message, text)

    def publish_transitions(self, transitions: Iterable[StateChange]) -> None:
        for moved in transitions:
            self.events.publish("session.state_changed", moved.event())

    def _backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter, capped."""
        settings = self.config.delivery
        base = settings.backoff.total_seconds() if settings.backoff else 1.0
        cap = settings.max_backoff.total_seconds() if settings.max_backoff else 300.0
        return random.uniform(base / 2, min(cap, base * 2 ** (attempts - 1)))

    async def _retry_later(self, outbox_id: int, delay: float) -> None:
        await asyncio.sleep(delay + 0.01)  # a timer may fire a hair early; the claim checks
        await self.deliver(outbox_id)

    async def _delta(self, session_id: str, turn_id: str, delta: str) -> None:
        self.events.publish("generation.delta", {"session_id": session_id, "turn_id": turn_id,
                                                 "delta": delta})

    # --- recovery and housekeeping -----------------------------------------------------------

    async def recover(self, stale_after: timedelta = timedelta(seconds=15)) -> int:
        """Run turns whose process died before their agent ran (this one's, after a restart,
        or another's). Deliveries a dead process left half-done are retried by deliver_due()
        when their lease expires."""
        orphans = await self.store.orphaned_turns(stale_after)
        for turn_id in orphans:
            self.enqueue(turn_id)
        return len(orphans)

    async def deliver_due(self) -> None:
        for outbox_id in await self.store.due_outbox():
            await self.deliver(outbox_id)
        for session_id in await self.store.sessions_with_held_turns():
            await self.release_held(session_id)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # the turn stays recorded; recover() picks it up on restart
            log.exception("turn work failed")

    def scope_lock(self, key: str) -> asyncio.Lock:
        lock = self._scope_locks.get(key)
        if lock is None:
            lock = self._scope_locks[key] = asyncio.Lock()
        return lock

    async def drain(self, timeout: float = 10.0) -> None:
        """Let in-flight turns finish (shutdown), then cancel what is left. Turns still queued
        stay recorded as this process's; recovery takes them over."""
        self._queue.clear()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()


def turn_view(turn_id: str, message: InboundMessage) -> dict[str, Any]:
    """The turn as an agent handler sees it."""
    return {"id": turn_id, "provider": message.provider, "account": message.account,
            "event_id": message.event_id, "conversation": message.conversation,
            "kind": message.kind, "thread": message.thread, "sender": message.sender,
            "sender_name": message.sender_name, "text": message.text}


def message_from_turn(row: Turn) -> InboundMessage:
    """Rebuild the routed view of a recorded turn (used after a restart)."""
    extra = dict(row.extra or {})
    return InboundMessage(
        provider=row.provider, account=row.account, event_id=row.event_id,
        conversation=row.conversation, kind=row.kind or "channel",  # type: ignore[arg-type]
        sender=row.sender, text=row.text, message_id=row.message_id, thread=row.thread,
        mentioned=bool(extra.pop("mentioned", False)),
        starts_thread=bool(extra.pop("starts_thread", False)),
        for_agent=extra.pop("for_agent", None), sender_name=row.sender_name,
        ignore_reason=extra.pop("ignore_reason", None), raw=row.payload or {}, extra=extra)
