"""Delivery of the outbox: one attempt per lease, retries with backoff, the final failure.

A reply is written to the outbox with the transcript, leased to this process for its first
attempt (`deliver_claimed` right after the agent answered). A failed attempt is retried after
the provider's `retry_after` or an exponential backoff with full jitter; a row whose lease ran
out (its process died mid-attempt) is picked up by `deliver_due`, from any process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal, Protocol

from channels.errors import DeliveryError
from channels.live import LIVE_KEY, Pace
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage
from sessions.events import EventHub
from switchboard.config import DeliveryConfig
from switchboard.metrics import Metrics
from switchboard.pacing import Pacer, words
from switchboard.store import OutboxEntry, Store
from switchboard.work import Tasks

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=30)  # a delivery attempt takes at most ~15 s (HTTP timeouts)


class Adapter(Protocol):
    """What the pipeline asks of an account's adapter (`channels.adapter.AccountAdapter`):
    where a reply goes, and its delivery."""

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage: ...

    async def deliver(self, out: OutboundMessage) -> str | DeliveryReceipt: ...


class Delivery:
    """Attempts, records and retries deliveries of outbox rows."""

    def __init__(self, store: Store, adapters: Mapping[str, Adapter], settings: DeliveryConfig,
                 disabled: Mapping[str, str], events: EventHub, metrics: Metrics,
                 tasks: Tasks) -> None:
        """`adapters` maps running account names to their adapters (filled as they start);
        `disabled` says why a configured account is not running."""
        self.store = store
        self.adapters = adapters
        self.settings = settings
        self.disabled = disabled
        self.events = events
        self.metrics = metrics
        self.tasks = tasks
        self.lease = settings.lease or LEASE
        self.pacer = Pacer()  # shared with the live messages of this process

    async def deliver(self, outbox_id: int) -> None:
        """Lease an outbox row (a retry, or one a dead process left) and attempt delivery."""
        row = await self.store.outbox.claim(outbox_id, self.lease)
        if row is not None:
            await self.deliver_claimed(row)

    async def deliver_claimed(self, row: OutboxEntry) -> None:
        """One delivery attempt of a leased outbox row; schedules the retry when it fails."""
        adapter = self.adapters.get(row.account)
        if adapter is None:
            reason = self.disabled.get(row.account, "the account is not running")
            error = f"account {row.account} is disabled: {reason}"
            await self.store.outbox.failed(row, error, retry_at=None, detail={})
            _attention("turn %s: delivery failed: %s", row, error)
            return
        outbound = OutboundMessage(provider=row.provider, account=row.account,
                                   conversation=row.conversation, text=row.text,
                                   thread=row.thread, reply_to=row.reply_to, extra=row.extra)
        pace = await self._pace(row, adapter)
        if pace is False:
            return
        try:
            receipt = await adapter.deliver(outbound)
        except DeliveryError as error:
            if error.retry_after is not None:
                self.pacer.hold(row.account, row.conversation, error.retry_after)
            await self._failed(row, str(error), error.permanent, error.retry_after,
                               error.resume_extra)
            return
        except Exception as error:  # an adapter bug must not lose the reply: retry it
            log.exception("delivery of outbox %s raised", row.id)
            await self._failed(row, f"{type(error).__name__}: {error}", False, None)
            return
        if pace is not None:
            self.pacer.sent(row.account, row.conversation, pace[1], pace[0])
        if not isinstance(receipt, DeliveryReceipt):
            receipt = DeliveryReceipt(str(receipt))
        provider_id = receipt.provider_message_id
        await self.store.outbox.delivered(row, provider_id, receipt.detail,
                                          self._live_notes(row, receipt))
        if not row.notice:
            self.metrics.turns.labels(row.provider, "delivered").inc(1 + len(row.batch))
        elapsed = (self.store.clock.now() - row.created_at).total_seconds()
        self.metrics.delivery.labels(row.provider).observe(max(elapsed, 0.0))
        self.events.publish("turn.delivered", {"turn_id": row.turn_id,
                                               "session_id": row.session_id,
                                               "provider_message_id": provider_id})

    async def _pace(self, row: OutboxEntry, adapter: Adapter
                    ) -> tuple[Pace, bool] | Literal[False] | None:
        """Wait for the account's and the conversation's limits; a long wait is on the
        turn's timeline ("waiting 3.2 s for …'s per-chat limit"). The limits used, if any;
        False when the wait is longer than the lease: the row is postponed, not attempted."""
        pace = getattr(adapter, "pace", None)
        if pace is None:
            return None
        group = adapter.is_group(row.conversation)  # type: ignore[attr-defined]
        waited = await self.pacer.wait(row.account, row.conversation, group, pace,
                                       longest=self.lease.total_seconds() / 2)
        if waited.postponed:  # another process must not take the row meanwhile
            await self.store.outbox.postpone(row, self.store.clock.now() + timedelta(
                seconds=waited.seconds), {"waited_s": round(waited.seconds, 2),
                                          "why": words(waited)})
            self.tasks.spawn(self._retry_later(row.id, waited.seconds))
            return False
        if waited.seconds <= 0:
            return pace, group
        self.metrics.paced.labels(row.provider).observe(waited.seconds)
        if waited.seconds >= 0.05:
            await self.store.turns.update(row.turn_id, "paced",
                                          {"waited_s": round(waited.seconds, 2),
                                           "why": words(waited)})
        return pace, group

    def _live_notes(self, row: OutboxEntry, receipt: DeliveryReceipt
                    ) -> list[tuple[str, dict[str, Any]]]:
        """How the live message of the reply ended, from what the adapter said."""
        shown = row.extra.get(LIVE_KEY) if isinstance(row.extra, dict) else None
        how = receipt.detail.get(LIVE_KEY) if isinstance(receipt.detail, dict) else None
        if not isinstance(shown, dict) or not isinstance(how, dict):
            return []
        base = {"mode": shown.get("mode"), "updates": shown.get("updates", 0),
                "attempt": row.attempts}
        if how.get("finished"):
            self.metrics.streams.labels(row.provider, "finished").inc()
            return [("stream.finished", {**base, "how": how.get("how", "")})]
        self.metrics.streams.labels(row.provider, "fell_back").inc()
        return [("stream.failed", {**base, "error": how.get("error", ""),
                                   "fallback": how.get("how", "one fresh complete message")})]

    async def _failed(self, row: OutboxEntry, error: str, permanent: bool,
                      retry_after: float | None,
                      resume_extra: dict[str, Any] | None = None) -> None:
        """Record a failed attempt: schedule the next one, or fail the turn for good. With
        `resume_extra` (a part went out), the next attempt sends only what is left."""
        retry_at = None
        if not permanent and row.attempts < self.settings.max_attempts:
            delay = retry_after if retry_after is not None else self.backoff(row.attempts)
            retry_at = self.store.clock.now() + timedelta(seconds=delay)
        await self.store.outbox.failed(row, error, retry_at=retry_at,
                                       detail={"permanent": permanent}, extra=resume_extra)
        if retry_at is None:
            _attention("turn %s: delivery failed after %d attempt(s): %s", row, row.attempts,
                       error)
            if not row.notice:
                self.metrics.turns.labels(row.provider, "failed").inc(1 + len(row.batch))
            self.events.publish("turn.failed", {"turn_id": row.turn_id, "error": error,
                                                "session_id": row.session_id})
        else:
            self.metrics.retries.labels(row.provider).inc()
            delay = (retry_at - self.store.clock.now()).total_seconds()
            _attention("turn %s: delivery attempt %d failed, retry in %.1f s: %s", row,
                       row.attempts, max(delay, 0.0), error)
            self.tasks.spawn(self._retry_later(row.id, max(delay, 0.0)))

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter, capped."""
        base = self.settings.backoff.total_seconds() if self.settings.backoff else 1.0
        cap = self.settings.max_backoff.total_seconds() if self.settings.max_backoff else 300.0
        return random.uniform(base / 2, min(cap, base * 2 ** (attempts - 1)))

    async def _retry_later(self, outbox_id: int, delay: float) -> None:
        await asyncio.sleep(delay + 0.01)  # a timer may fire a hair early; the claim checks
        await self.deliver(outbox_id)

    async def deliver_due(self) -> None:
        """Attempt every row that is due and not leased: retries whose timer was lost with a
        restart, and attempts a dead process left half-done."""
        for outbox_id in await self.store.outbox.due():
            await self.deliver(outbox_id)


def _attention(message: str, row: OutboxEntry, *args: object) -> None:
    """A WARNING an operator acts on, naming the turn (and, in JSON logs, as fields)."""
    log.warning(message, row.turn_id, *args,
                extra={"turn_id": row.turn_id, "account": row.account,
                       "provider": row.provider})
