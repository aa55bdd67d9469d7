"""Interactions: an agent asks people for an approval, a choice or an answer, and waits.

The rules are plain functions (`switchboard.interaction_rules`: what an agent may ask, who may
answer, which option a reply names, what the agent is handed); `InteractionDesk` does the I/O
around them: it records the
request with the agent's reply, takes answers from every place (a button at a provider, a
reply, the console, the CLI), expires what nobody answered, tells the adapters to replace the
buttons with the decision, and queues the turn that hands the answer back to the agent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from channels.interactions import AnswerAttempt, Prompt, PromptMessage, Settles, Verdict
from channels.messages import InboundMessage, OutboundMessage
from sessions.events import EventHub
from switchboard.errors import ActionRefused, NotFound
from switchboard.interaction_rules import (
    CONSOLE,
    Request,
    answer_view,
    decided_event,
    decision_text,
    expiry_view,
    interaction_json,
    judge,
    may_answer,
    parse_request,
    refusal_text,
    resolve,
)
from switchboard.models import new_id
from switchboard.store import SessionRecord, Store
from switchboard.store.interactions import Attempt, Decided, InteractionRecord
from switchboard.work import Tasks

log = logging.getLogger(__name__)
RETRY_BASE, RETRY_CAP = 1.0, 60.0  # seconds between attempts to hand a failed answer again


@dataclass
class Opening:
    """An interaction to write inside the transaction that records the agent's reply."""

    store: Store
    now: datetime
    values: dict[str, Any]
    moved: list[Any] = field(default_factory=list)

    def __call__(self, db: Any) -> None:
        self.moved = self.store.interactions.open_in(db, self.values, self.now)


async def offline_answer(store: Store, interaction_id: str, operator: str, given: str,
                         via: str = "cli") -> Decided:
    """An operator's answer written straight into the database (the CLI): `given` is an
    option (id, number, label) or an input's text. It is shared with every running `serve`
    (the live-events table, feed.py): one of them hands its turn to the agent and shows the
    decision at the provider (`InteractionDesk.elsewhere`); ActionRefused when not taken."""
    record = await store.interactions.get(interaction_id)
    if record is None:
        raise NotFound(f"no interaction {interaction_id}")
    attempt = Attempt(via=via, by_provider=None, by_id=operator, by_name=operator,
                      option=None if record.kind == "input" else given,
                      text=given if record.kind == "input" else None)
    decided = await store.interactions.answer(interaction_id, attempt, judge,
                                              answer_view(attempt), decision_text)
    if not decided.accepted:
        raise ActionRefused(f"interaction {interaction_id}: {refusal_text(decided)}")
    origin = new_id("cli")
    for change in decided.transitions:
        await store.live.share(origin, "session.state_changed", change.event())
    await store.live.share(origin, *decided_event(decided.interaction))
    return decided


class InteractionDesk:
    """Where every answer to an interaction arrives, and expiries are made."""

    def __init__(self, store: Store, events: EventHub, adapters: Mapping[str, Any],
                 tasks: Tasks, enqueue: Callable[[str], None]) -> None:
        self.store = store
        self.events = events
        self.adapters = adapters
        self.tasks = tasks
        self.enqueue = enqueue
        self.retry_base = RETRY_BASE
        self._retries: dict[str, tuple[float, float]] = {}  # turn: (next attempt, delay)

    # --- asking ------------------------------------------------------------------------------

    def prompt_for(self, request: Request, reply: str, out: OutboundMessage
                   ) -> tuple[Prompt, OutboundMessage]:
        """The prompt and the outbound message carrying it: its text says it all in words
        (numbered options), its extra lets a provider with buttons show them instead."""
        prompt = Prompt.from_extra({"interaction": {
            "id": new_id("int"), "kind": request.kind, "prompt": request.prompt,
            "options": list(request.options), "reply": reply}})
        assert prompt is not None
        text = "\n\n".join(part for part in (reply.strip(), prompt.numbered()) if part)
        return prompt, replace(out, text=text, extra={**out.extra, "interaction":
                                                      prompt.as_extra()})

    def opening(self, request: Request, prompt: Prompt, turn_id: str,
                session: SessionRecord, out: OutboundMessage) -> Opening:
        """What the reply's transaction also writes: the interaction and the session waiting."""
        now = self.store.clock.now()
        responders = request.responders if request.responders is not None \
            else ((session.user_id,) if session.user_id else ())
        return Opening(self.store, now, {
            "id": prompt.id, "session_id": session.id, "agent": session.agent,
            "turn_id": turn_id, "kind": request.kind, "prompt": request.prompt,
            "options": list(request.options), "responders": list(responders),
            "provider": out.provider, "account": out.account, "conversation": out.conversation,
            "thread": out.thread,
            "expires_at": now + request.expires_in if request.expires_in else None})

    def requested(self, opening: Opening) -> None:
        """After the reply's transaction committed: announce what `opening` wrote."""
        for change in opening.moved:
            self.events.publish("session.state_changed", change.event())
        values = opening.values
        data = {"interaction_id": values["id"], "session_id": values["session_id"],
                "turn_id": values["turn_id"], "agent": values["agent"], "kind": values["kind"],
                "prompt": values["prompt"]}
        self.events.publish("interaction.requested", data)
        if self.events.relay is None:  # a relayed hub shares what it publishes (feed.py)
            self.tasks.spawn(self.store.live.share(self.origin, "interaction.requested", data))

    # --- answering ---------------------------------------------------------------------------

    async def answer(self, attempt: AnswerAttempt) -> Verdict:
        """A person's click at a provider (`Services.answer_interaction`)."""
        stored = Attempt(via=attempt.provider, by_provider=attempt.provider,
                         by_id=attempt.by_id, by_name=attempt.by_name or attempt.by_id,
                         option=attempt.choice, text=attempt.text)
        record = await self.store.interactions.get(attempt.interaction_id)
        if record is None or record.account != attempt.account:
            return Verdict(False, "this request is not known here")
        decided = await self.decide(attempt.interaction_id, stored)
        if decided.accepted:
            return Verdict(True, decision_text(decided.interaction,
                                               decided.interaction.answer or {}))
        answer = decided.interaction.answer or {}
        by = answer.get("by") or {}
        chosen = resolve(attempt.choice or "", decided.interaction.options)
        repeated = (by.get("id") == attempt.by_id and by.get("provider") == attempt.provider
                    and answer.get("option") == chosen)  # the same click again
        return Verdict(False, refusal_text(decided), repeated=repeated)

    async def answer_as_operator(self, interaction_id: str, operator: str,
                                 option: str | None, text: str | None,
                                 via: str = CONSOLE) -> Decided:
        """An operator's answer (console, API, CLI); ActionRefused when it is not taken."""
        decided = await self.decide(interaction_id, Attempt(
            via=via, by_provider=None, by_id=operator, by_name=operator, option=option,
            text=text))
        if not decided.accepted:
            raise ActionRefused(f"interaction {interaction_id}: {refusal_text(decided)}")
        return decided

    async def decide(self, interaction_id: str, attempt: Attempt,
                     turn_id: str | None = None) -> Decided:
        decided = await self.store.interactions.answer(
            interaction_id, attempt, judge, answer_view(attempt), decision_text,
            turn_id=turn_id)
        if decided.accepted:
            self.after(decided, queue=turn_id is None)
        return decided

    async def take_reply(self, turn_id: str, message: InboundMessage,
                         session: SessionRecord) -> InboundMessage:
        """A message in a waiting session from someone who may answer: when it answers the
        oldest pending interaction (an input's text, an option's number or label on its first
        line), the message goes to the agent as that answer."""
        for record in await self.store.interactions.listing(state="pending",
                                                            session_id=session.id):
            if not may_answer(record, message.sender):
                continue
            first = next((line for line in message.text.splitlines() if line.strip()), "")
            if record.kind != "input" and resolve(first, record.options) is None:
                continue
            attempt = Attempt(via=message.provider, by_provider=message.provider,
                              by_id=message.sender, by_name=message.sender_name or message.sender,
                              option=first if record.kind != "input" else None,
                              text=message.text if record.kind == "input" else None)
            decided = await self.decide(record.id, attempt, turn_id=turn_id)
            if decided.accepted:
                return replace(message, extra={**message.extra,
                                               "interaction": decided.interaction.answer})
        return message

    # --- expiring ----------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Expire what is due (the agent hears of it) and what ended sessions left pending."""
        done = await self.store.interactions.expire_due(expiry_view)
        for decided in done:
            self.after(decided)
        for record in await self.store.interactions.expire_ended():
            self._announce(record)
            self.tasks.spawn(self.settle(record))
        await self.retry_unheard()
        return len(done)

    async def retry_unheard(self) -> None:
        """Hand answers the agent failed to take to it again, backing off to RETRY_CAP."""
        now = time.monotonic()
        failed = await self.store.interactions.unheard()
        self._retries = {t: v for t, v in self._retries.items() if t in failed}
        for turn_id in failed:
            due, delay = self._retries.get(turn_id, (0.0, self.retry_base / 2))
            if now < due:
                continue
            delay = min(delay * 2, RETRY_CAP)
            self._retries[turn_id] = (now + delay, delay)
            if await self.store.interactions.hand_again(turn_id):
                self.enqueue(turn_id)

    # --- after a decision --------------------------------------------------------------------

    def after(self, decided: Decided, queue: bool = True) -> None:
        for change in decided.transitions:
            self.events.publish("session.state_changed", change.event())
        self._announce(decided.interaction)
        if queue and decided.turn_id:
            self.enqueue(decided.turn_id)
        self.tasks.spawn(self.settle(decided.interaction))

    def _announce(self, record: InteractionRecord) -> None:
        """On this process's live events, and shared with the other processes."""
        name, data = decided_event(record)
        self.events.publish(name, data)
        if self.events.relay is None:  # a relayed hub shares what it publishes (feed.py)
            self.tasks.spawn(self.store.live.share(self.origin, name, data))

    @property
    def origin(self) -> str:
        return self.store.interactions.worker or "desk"

    def elsewhere(self, name: str, data: Mapping[str, Any]) -> None:
        """Another process decided an interaction (the CLI, another `serve`): its answer's
        turn, if nobody works on it, is taken up here and its prompt's buttons replaced
        (each once, of every process that follows the shared events)."""
        if name in ("interaction.answered", "interaction.expired"):
            self.tasks.spawn(self._decided_elsewhere(str(data.get("interaction_id") or "")))

    async def _decided_elsewhere(self, interaction_id: str) -> None:
        record = await self.store.interactions.get(interaction_id)
        if record is None or record.state == "pending":
            return
        turn_id = record.answer_turn_id
        if turn_id and await self.store.interactions.take_answer_turn(turn_id):
            self.enqueue(turn_id)
        await self.settle(record)

    async def settle(self, record: InteractionRecord) -> None:
        """Replace the prompt's buttons at its provider with the decision, where it can (once,
        whichever process does it)."""
        adapter = self.adapters.get(record.account)
        if not isinstance(adapter, Settles) or record.answer is None:
            return
        message_id = await self.store.interactions.prompt_message_id(record)
        if not message_id or not await self.store.interactions.claim_settle(record.id):
            return
        prompt = Prompt.from_extra({"interaction": {**interaction_json(record),
                                                    "reply": ""}})
        text = f"{record.prompt}\n\n{decision_text(record, record.answer)}"
        try:
            await adapter.settle(PromptMessage(record.account, record.conversation, message_id,
                                               record.thread, {"prompt": prompt}), text)
        except Exception:  # the decision stands; only its display at the provider is stale
            log.exception("interaction %s: showing the decision at %s failed", record.id,
                          record.account)


__all__ = ["InteractionDesk", "Opening", "Request", "decision_text", "interaction_json",
           "judge", "offline_answer", "parse_request", "resolve"]
