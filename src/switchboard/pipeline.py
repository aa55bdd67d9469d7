"""The turn pipeline, read top to bottom.

receive → dedupe → record turn (acknowledge here) → match bindings → find or open session →
run agent → record reply with its outbox row → deliver → record delivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, Protocol

from channels.messages import DeliveryError, InboundMessage, OutboundMessage
from channels.rules import Binding, Match, NoMatch, match
from sessions import scope_key
from sessions.events import EventHub
from switchboard.agents import AgentError, AgentRequest, Handler, run_timed
from switchboard.config import Config
from switchboard.models import Outbox, Turn
from switchboard.store import Opened, Recorded, ScopeRequest, Store, session_dict, turn_dict

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)


class Adapter(Protocol):
    async def deliver(self, out: OutboundMessage) -> str: ...


class Pipeline:
    """Carries each turn from its provider event to its delivered reply."""

    def __init__(self, config: Config, store: Store, adapters: dict[str, Adapter],
                 handlers: dict[str, Handler], events: EventHub) -> None:
        self.config = config
        self.store = store
        self.adapters = adapters
        self.handlers = handlers
        self.events = events
        self.agent_slots = asyncio.Semaphore(config.delivery.agent_concurrency)
        self._scope_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- the acknowledged part: dedupe and record ------------------------------------------

    async def receive(self, message: InboundMessage, extra: dict[str, Any] | None = None
                      ) -> Recorded:
        """Record the turn durably (or a duplicate of the original) and hand it to the worker.

        The caller acknowledges the provider when this returns.
        """
        recorded = await self.store.record_turn(message, message.raw, extra)
        if recorded.duplicate_of is None:
            self.events.publish("turn.received", {"turn_id": recorded.turn_id,
                                                  "provider": message.provider,
                                                  "account": message.account})
            self.spawn(self.handle(recorded.turn_id, message))
        return recorded

    # --- after the acknowledgement -----------------------------------------------------------

    async def handle(self, turn_id: str, message: InboundMessage | None = None) -> None:
        """Route, answer and deliver one recorded turn."""
        if message is None:
            row = await self.store.get_turn_row(turn_id)
            if row is None:
                return
            message = message_from_turn(row)
        decision = await self.route(turn_id, message)
        if isinstance(decision, NoMatch):
            return
        binding = decision.binding
        key = scope_key(binding.session_scope, account=message.account,
                        conversation=message.conversation,
                        thread=message.reply_thread if message.kind != "dm" else message.thread,
                        sender=message.sender)
        async with self._scope_lock(f"{binding.agent}:{key}"):
            opened = await self.join_session(turn_id, message, binding, key)
            outbox_id = await self.answer(turn_id, message, binding, opened)
            if outbox_id is not None:
                await self.deliver(outbox_id)

    async def route(self, turn_id: str, message: InboundMessage) -> Match | NoMatch:
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
            return decision
        b = decision.binding
        await self.store.update_turn(turn_id, "routed", {"binding": b.name, "agent": b.agent,
                                                         "reason": decision.reason},
                                     binding=b.name, agent=b.agent, route_reason=decision.reason)
        self.events.publish("turn.routed", {"turn_id": turn_id, "binding": b.name,
                                            "agent": b.agent, "reason": decision.reason})
        return decision

    async def join_session(self, turn_id: str, message: InboundMessage, binding: Binding,
                           key: str) -> Opened:
        request = ScopeRequest(agent=binding.agent, scope_key=key, binding=binding.name,
                               account=message.account, provider=message.provider,
                               source=message.provider, user_id=message.sender,
                               user_name=message.sender_name)
        opened = await self.store.open_session(request, self.config.policy_for(binding.agent))
        event = {"created": "session_created", "reopened": "session_reopened"}.get(
            opened.how, "session_resumed")
        await self.store.update_turn(turn_id, event, {"session_id": opened.session_id,
                                                      "scope": key},
                                     session_id=opened.session_id)
        if opened.how == "created":
            self.events.publish("session.created", {"session_id": opened.session_id,
                                                    "agent": binding.agent})
        return opened

    async def answer(self, turn_id: str, message: InboundMessage, binding: Binding,
                     opened: Opened) -> int | None:
        """Run the agent and record its reply with the outbox row; None when it failed."""
        session = await self.store.session_row(opened.session_id)
        assert session is not None
        model = session.model_override or binding.model or self.config.agents[binding.agent].model
        turn = await self.store.get_turn_row(turn_id)
        assert turn is not None
        request = AgentRequest(
            turn=turn_dict(turn), session=session_dict(session),
            transcript=await self.store.transcript(opened.session_id, limit=50), model=model,
            on_delta=lambda delta: self._delta(opened.session_id, turn_id, delta))
        try:
            async with self.agent_slots:
                result = await run_timed(self.handlers[binding.agent], request)
        except AgentError as error:
            await self.store.update_turn(turn_id, "agent_failed", {"error": str(error)},
                                         status="failed", error=str(error))
            self.events.publish("turn.failed", {"turn_id": turn_id, "error": str(error)})
            return None
        outbound = reply_for(message, result.reply)
        outbox_id = await self.store.record_reply(turn_id, opened.session_id, message.text,
                                                  result, outbound)
        self.events.publish("session.message.created", {"session_id": opened.session_id,
                                                        "turn_id": turn_id, "role": "agent"})
        return outbox_id

    async def deliver(self, outbox_id: int) -> None:
        """One delivery attempt of a leased outbox row; schedules the retry when it fails."""
        row = await self.store.claim_outbox(outbox_id, LEASE)
        if row is None:
            return
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
            provider_id = await adapter.deliver(outbound)
        except DeliveryError as error:
            await self._delivery_failed(row, str(error), error.permanent, error.retry_after)
            return
        except Exception as error:  # an adapter bug must not lose the reply: retry it
            log.exception("delivery of outbox %s raised", row.id)
            await self._delivery_failed(row, f"{type(error).__name__}: {error}", False, None)
            return
        await self.store.delivery_succeeded(row, provider_id, {})
        await self.store.note_traffic(row.account, outbound=True)
        self.events.publish("turn.delivered", {"turn_id": row.turn_id,
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
        await self.store.note_traffic(row.account, error=error)
        if retry_at is None:
            self.events.publish("turn.failed", {"turn_id": row.turn_id, "error": error})
        else:
            delay = (retry_at - self.store.clock.now()).total_seconds()
            self.spawn(self._retry_later(row.id, max(delay, 0.0)))  # type: ignore[arg-type]

    def _backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter, capped."""
        settings = self.config.delivery
        base = settings.backoff.total_seconds() if settings.backoff else 1.0
        cap = settings.max_backoff.total_seconds() if settings.max_backoff else 300.0
        return random.uniform(base / 2, min(cap, base * 2 ** (attempts - 1)))

    async def _retry_later(self, outbox_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.deliver(outbox_id)

    async def _delta(self, session_id: str, turn_id: str, delta: str) -> None:
        self.events.publish("generation.delta", {"session_id": session_id, "turn_id": turn_id,
                                                 "delta": delta})

    # --- recovery and housekeeping -----------------------------------------------------------

    async def recover(self) -> None:
        """After a restart: run turns whose agent never ran; deliver what is due."""
        for turn_id in await self.store.turns_waiting_for_agent():
            self.spawn(self.handle(turn_id))
        await self.deliver_due()

    async def deliver_due(self) -> None:
        for outbox_id in await self.store.due_outbox():
            await self.deliver(outbox_id)

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

    def _scope_lock(self, key: str) -> asyncio.Lock:
        lock = self._scope_locks.get(key)
        if lock is None:
            lock = self._scope_locks[key] = asyncio.Lock()
        return lock

    async def drain(self, timeout: float = 10.0) -> None:
        """Let in-flight turns finish (shutdown), then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()


def reply_for(message: InboundMessage, text: str) -> OutboundMessage:
    """Where the reply goes: Slack threads, Telegram topics and quotes, email threading."""
    thread: str | None
    reply_to: str | None = None
    if message.provider == "slack":
        thread = message.thread if message.kind == "dm" else message.reply_thread
    elif message.provider == "telegram":
        thread = message.thread
        reply_to = message.message_id if message.kind != "dm" else None
    else:
        thread = message.thread
        reply_to = message.message_id
    return OutboundMessage(provider=message.provider, account=message.account,
                           conversation=message.conversation, text=text, thread=thread,
                           reply_to=reply_to, extra=dict(message.extra.get("reply_extra") or {}))


def message_from_turn(row: Turn) -> InboundMessage:
    """Rebuild the routed view of a recorded turn (used after a restart)."""
    extra = dict(row.extra or {})
    return InboundMessage(
        provider=row.provider, account=row.account, event_id=row.event_id,
        conversation=row.conversation, kind=row.kind or "channel",  # type: ignore[arg-type]
        sender=row.sender, text=row.text, message_id=row.message_id, thread=row.thread,
        mentioned=bool(extra.pop("mentioned", False)), sender_name=row.sender_name,
        ignore_reason=extra.pop("ignore_reason", None), raw=row.payload or {}, extra=extra)
