"""One running Switchboard: the parts built from the config, started and stopped in order.

Composition only: what an account does at start (a bot's identity, Socket Mode, polling, an
SMTP server) is its provider's (`switchboard.accounts` opens them through the registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from channels.adapter import Provider
from sessions.events import EventHub
from switchboard.accounts import RunningAccounts
from switchboard.agents import build_handlers
from switchboard.api_sessions import TranscriptOnly
from switchboard.clock import Clock
from switchboard.config import Config
from switchboard.controls import SessionControls
from switchboard.current_config import CurrentConfig
from switchboard.db import database_url as configured_database_url
from switchboard.delivery import Delivery
from switchboard.feed import EventFeed
from switchboard.file_delivery import FileDelivery
from switchboard.file_flow import FileFlow
from switchboard.files import DirectoryBlobs, FileService, files_dir
from switchboard.hook_delivery import HookDelivery, HookSchedule
from switchboard.metrics import Metrics
from switchboard.models import new_id
from switchboard.operators import Operator, Operators
from switchboard.pipeline import Pipeline
from switchboard.providers import PROVIDERS
from switchboard.recovery import Recovery
from switchboard.redact import AccountErrors, Redactor, install_logging
from switchboard.services import AppServices
from switchboard.store import Store, create_engine
from switchboard.work import Tasks

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything one `serve` process runs. Built once, started by the app's lifespan."""

    config: Config
    database_url: str | None = None
    clock: Clock = field(default_factory=Clock)
    sweep_interval: float = 1.0
    smtp_host: str = "127.0.0.1"
    smtp_port: int | None = 2525
    session_sweep: float = 30.0
    heartbeat_interval: float | None = None
    freeze_gc: bool = False  # serve: keep start-up objects out of the cyclic collector
    rejections_flush: float = 1.0  # seconds between writes of the rejection counters
    rejections_summary: float = 10.0  # seconds between log lines summing them up
    operators_refresh: float = 1.0  # seconds between reads of the operators in the database
    interactions_sweep: float = 1.0  # seconds between expiries of interactions (within 5 s)
    providers: Mapping[str, Provider] = field(default_factory=lambda: PROVIDERS)
    listen_url: str | None = None  # where `serve` listens: download links when no public_url
    files_root: str | None = None  # where blobs go when `files.dir` is not set (tests)
    hook_schedule: HookSchedule = field(default_factory=HookSchedule)  # webhook retries

    def __post_init__(self) -> None:
        self.current = CurrentConfig(self.config)  # what the routers read (reload.apply)
        self.redact = Redactor.from_config(self.config,
                                           self.database_url or configured_database_url(),
                                           providers=self.providers)
        self.engine = create_engine(self.database_url)
        self.worker_id = new_id("wkr")
        self.store = Store(self.engine, self.clock, worker=self.worker_id, redact=self.redact)
        self.events = EventHub()
        self.stale_after = self.config.delivery.worker_timeout or timedelta(seconds=15)
        if self.heartbeat_interval is None:
            self.heartbeat_interval = max(self.stale_after.total_seconds() / 3, 0.2)
        self.http = httpx.AsyncClient(timeout=30)
        self.account_errors = AccountErrors(self.redact)
        self.adapters: dict[str, Any] = {"api": TranscriptOnly()}
        self.metrics = Metrics()
        self.controls = SessionControls(
            self.store, self.events, origin=self.worker_id, agents=self.config.agents,
            on_resumed=lambda session_id: self.recovery.resume_held(session_id),
            forget_blobs=lambda shas: self.files.forget(shas))
        self.tasks = Tasks()
        self.delivery = Delivery(self.store, self.adapters, self.config.delivery,
                                 self.config.disabled, self.events, self.metrics, self.tasks)
        root = files_dir(self.config.files, self.database_url or configured_database_url())
        if self.files_root and not self.config.files.dir:
            root = Path(self.files_root)
        self.files = FileService(
            self.store, DirectoryBlobs(root),
            self.config.files,
            self.config.public_url or self.listen_url or "http://127.0.0.1:8080")
        self.file_flow = FileFlow(self.config, self.store, self.files, self.adapters,
                                  self.metrics, self.http)
        self.file_delivery = FileDelivery(self.store, self.files, self.adapters,
                                          self.config.delivery, self.metrics, self.tasks,
                                          self.delivery.backoff)
        self.pipeline = Pipeline(self.config, self.store,
                                 build_handlers(self.config.agents, self.http), self.events,
                                 self.controls, self.delivery, self.tasks, self.metrics,
                                 files=self.file_flow, file_delivery=self.file_delivery)
        self.recovery = Recovery(self.store, self.pipeline, self.config.bindings, self.tasks)
        self.feed = EventFeed(self.store, self.events, origin=self.worker_id,
                              react=self.pipeline.interactions.elsewhere)
        listen = {"smtp": (self.smtp_host, self.smtp_port)} if self.smtp_port is not None \
            else {}
        self.services = AppServices(config=self.config, store=self.store,
                                    pipeline=self.pipeline, controls=self.controls,
                                    events=self.events, metrics=self.metrics,
                                    account_errors=self.account_errors, listen=listen,
                                    files=self.files)
        self.accounts = RunningAccounts(self.config, self.providers, self.services,
                                        self.adapters)
        self.operators = Operators(self.store, self.operators_refresh)
        self.hook_delivery = HookDelivery(self.store, lambda: self.config.webhooks,
                                          self.metrics, self.hook_schedule)
        self.hook_delivery.configure()
        self.webhooks: Any = None  # the app's `Webhooks`, set by create_app (reload.py)
        self._background: list[asyncio.Task[Any]] = []
        self._stopping = asyncio.Event()
        self._rejections: asyncio.Task[None] | None = None
        self._unredact: Any = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._unredact = install_logging(self.redact)
        # The database thread runs Python (the ORM) too; hand the GIL back to the event loop
        # sooner than the default 5 ms, so acknowledgements are not kept waiting for it.
        sys.setswitchinterval(0.0005)
        await self.store.workers.register()
        await self.operators.load(self.config)
        self._background.append(asyncio.create_task(self.operators.follow()))
        await self.files.start()
        await self.accounts.start()
        self._background.append(asyncio.create_task(self._sweep_outbox()))
        self._background.append(asyncio.create_task(self._sweep_interactions()))

        self._background.append(asyncio.create_task(self._sweep_files()))
        self._background.append(asyncio.create_task(self.hook_delivery.run()))
        self._background.append(asyncio.create_task(self.store.text_index.run()))
        self._rejections = asyncio.create_task(self._write_rejections())
        self.scheduler = AsyncIOScheduler()
        self.scheduler.add_job(self.sweep_sessions, "interval", seconds=self.session_sweep,
                               max_instances=1, coalesce=True, id="session-sweep")
        self.scheduler.start()
        self._background.append(asyncio.create_task(self._heartbeat()))
        await self.feed.start()
        self._background.append(asyncio.create_task(self.feed.run()))
        if self.freeze_gc:
            # Everything built so far lives as long as the process. Left to the collector,
            # each full pass walks all of it and stalls the event loop for a hundred ms or
            # more under load (the acknowledgement p99); frozen, it is never walked again.
            gc.collect()
            gc.freeze()
            # and collect the young generation less often: under load most objects die young
            gc.set_threshold(20_000, 20, 20)

    async def _heartbeat(self) -> None:
        """Say this process is alive; take over what dead processes left unanswered."""
        while True:
            try:
                await self.store.workers.heartbeat()
                await self.recovery.recover(self.stale_after)
            except Exception:
                log.exception("heartbeat or recovery failed")
            await asyncio.sleep(self.heartbeat_interval or 5.0)

    async def _write_rejections(self) -> None:
        """Write the rejection counters every `rejections_flush` seconds, and once more when
        stopping; log one line summing them up every `rejections_summary` seconds."""
        summed = self.loop.time()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.rejections_flush)
            try:
                await self.store.accounts.flush_rejected()
            except Exception:  # the counts stay in memory for the next attempt
                log.exception("writing the rejected request counts failed")
            now = self.loop.time()
            if now - summed >= self.rejections_summary or self._stopping.is_set():
                line = self.store.accounts.rejections.summary(round(now - summed, 1))
                if line:
                    log.warning("%s", line)
                summed = now

    async def sweep_sessions(self) -> int:
        """Idle, end and cap sessions by policy. Safe in every process at once: each change is
        a conditional update that only one process wins."""
        moved = 0
        for agent in self.config.agents:
            transitions = await self.store.sessions.sweep(agent, self.config.policy_for(agent))
            self.pipeline.publish_transitions(transitions)
            moved += len(transitions)
        return moved

    def operator(self, token: str) -> Operator | None:
        return self.operators(token)

    async def _sweep_outbox(self) -> None:
        """Deliver what is due and retry what a dead worker left behind."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.delivery.deliver_due()
                await self.recovery.release_due()
            except Exception:
                log.exception("outbox sweep failed")

    async def _sweep_interactions(self) -> None:
        """Expire interactions nobody answered in time; the agent hears of each."""
        while True:
            await asyncio.sleep(self.interactions_sweep)
            try:
                await self.pipeline.interactions.sweep()
            except Exception:
                log.exception("interaction sweep failed")

    async def _sweep_files(self) -> None:
        """Deliver the agent's files that are due (retries, leases a dead process left) every
        sweep interval; remove files past `files.retention` every `files.sweep_interval`."""
        loop = asyncio.get_running_loop()
        retained = loop.time()
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.file_delivery.deliver_due()
                if loop.time() - retained >= self.config.files.sweep_interval.total_seconds():
                    retained = loop.time()
                    await self.sweep_files()
            except Exception:
                log.exception("file sweep failed")

    async def sweep_files(self) -> int:
        """Remove files older than `files.retention` (rows, then blobs nothing references);
        sets the stored-bytes gauge."""
        removed = 0
        if self.config.files.retention:
            cutoff = self.clock.now() - self.config.files.retention
            unreferenced = await self.store.files.forget_older(cutoff)
            await self.files.forget(unreferenced)
            removed = len(unreferenced)
        self.metrics.files_bytes.set(await self.store.files.bytes_stored())
        return removed

    async def stop(self) -> None:
        if getattr(self, "scheduler", None) is not None:
            self.scheduler.shutdown(wait=False)
        await self.accounts.stop_listeners()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pipeline.queue.clear()  # still recorded as this process's: recovery takes them
        await self.tasks.drain()
        await self.hook_delivery.stop()
        await self.feed.stop()
        self._stopping.set()
        if self._rejections is not None:
            await self._rejections
        await self.accounts.stop()
        await self.http.aclose()
        await self.store.workers.retire()
        self.store.close()
        await self.engine.dispose()
        if self._unredact is not None:
            self._unredact()


__all__ = ["Operator", "Runtime"]
