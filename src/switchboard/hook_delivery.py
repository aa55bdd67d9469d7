"""Delivering outbound webhooks: due deliveries claimed from the database, POSTed signed, each
attempt and the receiver's answer kept; retried with backoff for a day, then dead.

A receiver never slows turns: deliveries are written inside the turns' own transactions (a row
each, only for subscribed events) and POSTed here, by a bounded set of tasks with their own
HTTP client, never awaited by the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import httpx
from prometheus_client import Counter

from switchboard.hooks import BODY_SHOWN, WebhookConfig, body, headers, webhook_for
from switchboard.metrics import Metrics
from switchboard.store import HookRecord, Store, iso

log = logging.getLogger(__name__)


@dataclass
class HookSchedule:
    """How often and how long deliveries are tried (seconds). The first retry comes within
    `first_retry`, each later one waits twice as long (at most `max_backoff`); once the waits
    add up to more than `give_up` the delivery is dead. Tests shorten these."""

    interval: float = 0.5  # between looks for due deliveries
    first_retry: float = 10.0
    max_backoff: float = 3600.0
    give_up: float = 86400.0
    timeout: float = 10.0  # one POST
    concurrency: int = 8  # POSTs in flight per process

    def delay(self, attempt: int) -> float | None:
        """Seconds until the attempt after failed attempt number `attempt` (1-based); None
        once the waits so far would pass `give_up`."""
        waits = [min(self.first_retry * 2 ** (n - 1), self.max_backoff)
                 for n in range(1, attempt + 1)]
        return waits[-1] if sum(waits) <= self.give_up else None


class HookDelivery:
    """The webhook deliveries of one process: `run()` is its background task."""

    def __init__(self, store: Store, webhooks: Callable[[], Sequence[WebhookConfig]],
                 metrics: Metrics, schedule: HookSchedule | None = None) -> None:
        self.store = store
        self.webhooks = webhooks  # the running config's (a reload changes them)
        self.schedule = schedule or HookSchedule()
        self.outcomes = Counter("switchboard_webhook_deliveries",
                                "Outbound webhook attempts by event and outcome (delivered, "
                                "retrying, dead)", ["event", "outcome"],
                                registry=metrics.registry)
        self._inflight: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def configure(self) -> None:
        """Point the store at the configured webhooks (at start and after a reload)."""
        self.store.hook_routes.configure(self.webhooks())

    async def run(self) -> None:
        """Every `interval`: claim what is due, up to the free delivery slots, and POST it."""
        while True:
            await asyncio.sleep(self.schedule.interval)
            try:
                await self.deliver_due()
            except Exception:
                log.exception("webhook delivery sweep failed")

    async def deliver_due(self) -> int:
        free = self.schedule.concurrency - len(self._inflight)
        if free <= 0 or not self.webhooks():
            return 0
        lease = timedelta(seconds=self.schedule.timeout * 3 + 5)
        claimed = await self.store.hooks.claim_due(free, lease)
        for delivery in claimed:
            task = asyncio.create_task(self.attempt(delivery))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(claimed)

    async def attempt(self, delivery: HookRecord) -> None:
        """One signed POST of a claimed delivery and its outcome."""
        hook = webhook_for(self.webhooks(), delivery.url, delivery.event)
        if hook is None:
            await self._settle(delivery, None, None, "no webhook for this URL takes this event "
                               "any more (the config changed)", 0, dead=True)
            return
        raw = body(delivery.id, delivery.event, iso(delivery.created_at) or "", delivery.data)
        sent = time.monotonic()
        status: int | None = None
        text: str | None = None
        error: str | None = None
        try:
            # httpx's timeout is per read: a receiver trickling its answer would outlast the
            # lease, and the delivery be claimed and POSTed again meanwhile
            async with asyncio.timeout(self.schedule.timeout * 2):
                response = await self._http().post(
                    hook.url, content=raw, headers=headers(
                        hook.secret, delivery.id, delivery.event, int(time.time()), raw))
            status, text = response.status_code, response.text[:BODY_SHOWN]
            if not 200 <= status < 300:
                error = f"the receiver answered HTTP {status}"
        except (httpx.TimeoutException, TimeoutError):
            error = f"no answer within {self.schedule.timeout:g} s"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:BODY_SHOWN]
        except Exception as failure:  # not httpx's own (an ExceptionGroup from a connect):
            # recorded as a failed attempt, so the delivery is retried, then dead, not leased
            # again forever by a task that died
            log.exception("webhook delivery %s: the POST raised", delivery.id)
            while isinstance(failure, ExceptionGroup) and failure.exceptions:
                failure = failure.exceptions[0]
            error = f"{type(failure).__name__}: {failure}"[:BODY_SHOWN]
        ms = int((time.monotonic() - sent) * 1000)
        await self._settle(delivery, status, text, error, ms, dead=False)

    async def _settle(self, delivery: HookRecord, status: int | None, text: str | None,
                      error: str | None, ms: int, *, dead: bool) -> None:
        retry_at = None
        if error is None:
            state = "delivered"
        else:
            wait = None if dead else self.schedule.delay(delivery.attempts)
            state = "dead" if wait is None else "retrying"
            if wait is not None:
                retry_at = self.store.clock.now() + timedelta(seconds=wait)
        try:
            await self.store.hooks.attempted(delivery, status=status, body=text, error=error,
                                             ms=ms, state=state, retry_at=retry_at)
        except Exception:  # the lease runs out and the delivery is tried again
            log.exception("recording webhook delivery %s failed", delivery.id)
            return
        self.outcomes.labels(delivery.event, state).inc()
        if error is not None:
            log.info("webhook delivery %s (%s) attempt %d: %s; %s", delivery.id,
                     delivery.event, delivery.attempts, error,
                     f"again at {iso(retry_at)}" if retry_at else "dead")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.schedule.timeout,
                limits=httpx.Limits(max_connections=self.schedule.concurrency))
        return self._client

    async def stop(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        for task in list(self._inflight):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()


__all__ = ["HookDelivery", "HookSchedule"]
