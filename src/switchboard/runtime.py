"""One running Switchboard: config, store, adapters, handlers and pipeline, started and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from channels.errors import RejectedRequest
from channels.messages import InboundMessage
from channels.rules import NoMatch, match
from channels.slack import SlackAccount
from channels.telegram import TelegramAccount
from sessions import scope_key
from sessions.events import EventHub
from switchboard.agents import build_handlers
from switchboard.api_sessions import TranscriptOnly
from switchboard.clock import Clock
from switchboard.config import Config
from switchboard.config import SlackAccount as SlackSettings
from switchboard.config import TelegramAccount as TelegramSettings
from switchboard.controls import SessionControls
from switchboard.db import database_url as configured_database_url
from switchboard.delivery import Delivery
from switchboard.feed import EventFeed
from switchboard.mail import MailService
from switchboard.metrics import Metrics
from switchboard.models import new_id
from switchboard.pipeline import Pipeline
from switchboard.recovery import Recovery
from switchboard.redact import AccountErrors, Redactor, install_logging
from switchboard.store import Store, create_engine, token_hash
from switchboard.work import Tasks

log = logging.getLogger(__name__)
ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class Operator:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


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

    def __post_init__(self) -> None:
        self.redact = Redactor.from_config(self.config,
                                           self.database_url or configured_database_url())
        self.engine = create_engine(self.database_url)
        self.worker_id = new_id("wkr")
        self.store = Store(self.engine, self.clock, worker=self.worker_id, redact=self.redact)
        self.events = EventHub()
        self.stale_after = self.config.delivery.worker_timeout or timedelta(seconds=15)
        if self.heartbeat_interval is None:
            self.heartbeat_interval = max(self.stale_after.total_seconds() / 3, 0.2)
        self.http = httpx.AsyncClient(timeout=30)
        self.slack: dict[str, SlackAccount] = {}
        self.telegram: dict[str, TelegramAccount] = {}
        self.account_errors = AccountErrors(self.redact)
        self.adapters: dict[str, Any] = {"api": TranscriptOnly()}
        self.metrics = Metrics()
        self.controls = SessionControls(
            self.store, self.events, origin=self.worker_id, agents=self.config.agents,
            on_resumed=lambda session_id: self.recovery.resume_held(session_id))
        self.tasks = Tasks()
        self.delivery = Delivery(self.store, self.adapters, self.config.delivery,
                                 self.config.disabled, self.events, self.metrics, self.tasks)
        self.pipeline = Pipeline(self.config, self.store,
                                 build_handlers(self.config.agents, self.http), self.events,
                                 self.controls, self.delivery, self.tasks, self.metrics)
        self.recovery = Recovery(self.store, self.pipeline, self.config.bindings, self.tasks)
        self.feed = EventFeed(self.store, self.events, origin=self.worker_id)
        self.mail = MailService(self)
        self.operators: dict[str, Operator] = {}
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
        await self._load_operators()
        for name, settings in self.config.accounts.items():
            if name in self.config.disabled:
                log.warning("account %s is disabled: %s", name, self.config.disabled[name])
                continue
            if isinstance(settings, SlackSettings):
                await self._start_slack(name, settings)
            elif isinstance(settings, TelegramSettings):
                await self._start_telegram(name, settings)
        await self.mail.start(self.smtp_host, self.smtp_port)
        self._background.append(asyncio.create_task(self._sweep_outbox()))
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

    async def _start_slack(self, name: str, settings: SlackSettings) -> None:
        account = SlackAccount(name, bot_token=settings.bot_token,
                               signing_secret=settings.signing_secret, api_url=settings.api_url,
                               app_token=settings.app_token, allow_bots=settings.allow_bots)
        await account.start()
        self.slack[name] = account
        self.adapters[name] = account
        if settings.mode == "socket":
            try:
                await account.start_socket_mode(
                    lambda payload, extra: self.receive_slack(account, payload, extra))
            except Exception as error:  # a bad app token must not stop the other accounts
                self.account_errors[name] = f"socket mode failed to connect: {error}"
                log.error("slack account %s: socket mode failed: %s", name, error)

    async def _start_telegram(self, name: str, settings: TelegramSettings) -> None:
        try:
            account = telegram_account(name, settings)
            await account.start()
        except Exception as error:  # a bad token or an unreachable API: this account only
            self.account_errors[name] = f"getMe failed: {error}"
            log.error("telegram account %s: getMe failed: %s", name, error)
            return
        self.telegram[name] = account
        self.adapters[name] = account
        if settings.mode == "polling":
            self._background.append(asyncio.create_task(
                self._poll_telegram(account, settings.poll_timeout)))

    async def _poll_telegram(self, account: TelegramAccount, timeout: int) -> None:
        """Long-poll getUpdates; the offset lives in the database, so a restart neither replays
        nor skips. Each update is recorded before the offset moves past it."""
        await account.delete_webhook()
        while True:
            stored = await self.store.cursors.get(account.name, "telegram_offset")
            try:
                updates = await account.get_updates(int(stored) if stored else None, timeout)
                self.account_errors.pop(account.name, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.account_errors[account.name] = f"getUpdates failed: {error}"
                log.warning("telegram %s: getUpdates failed: %s", account.name, error)
                await asyncio.sleep(2)
                continue
            for update in updates:
                try:
                    message = account.to_inbound(update)
                except RejectedRequest as error:  # not one Telegram sends; asking again won't help
                    log.warning("telegram %s: skipped an update: %s", account.name, error)
                else:
                    await self.pipeline.receive(message)
                if isinstance(update_id := update.get("update_id"), int):
                    await self.store.cursors.set(account.name, "telegram_offset",
                                                 str(update_id + 1))

    async def receive_telegram(self, account: TelegramAccount, body: bytes,
                               headers: Any) -> Any:
        """Webhook: secret, JSON, record. Raises RejectedRequest for what must not be a turn."""
        account.verify(headers)
        update = account.parse_body(body)
        return await self.pipeline.receive(account.to_inbound(update))

    async def receive_slack(self, account: SlackAccount, payload: dict[str, Any],
                            extra: dict[str, Any]) -> None:
        if payload.get("type") != "event_callback":
            return
        if account.bot_user_id is None:
            await account.start()
        await self.pipeline.receive(account.to_inbound(payload), extra)

    async def slash_command(self, account: str, form: dict[str, Any]) -> str:
        """`/agent new` and `/agent end` from Slack, for the person's own session."""
        settings = self.config.accounts[account]
        expected = getattr(settings, "slash_command", None)
        command = str(form.get("command", ""))
        if not expected or command != expected:
            return f"{command} is not a command this app knows."
        words = str(form.get("text", "")).strip().lower().split()
        action = words[0] if words else ""
        if action not in ("new", "end"):
            return f"Usage: {expected} new | {expected} end"
        channel, user = str(form.get("channel_id", "")), str(form.get("user_id", ""))
        probe = InboundMessage(provider="slack", account=account, event_id="slash",
                               conversation=channel,
                               kind="dm" if channel.startswith("D") else "channel",
                               sender=user, text="", mentioned=True)
        decision = match(probe, self.config.bindings)
        if isinstance(decision, NoMatch):
            return f"No agent answers here: {decision.reason}"
        binding = decision.binding
        thread_scope = binding.session_scope == "thread"
        scope = scope_key(binding.session_scope, account=account, conversation=channel,
                          thread=None, sender=user)
        if thread_scope:
            scope = scope.removesuffix("-")
        return await self.pipeline.controls.user_command(action, agent=binding.agent,
                                                         scope=scope, user=user,
                                                         prefix=thread_scope)

    async def _load_operators(self) -> None:
        for op in self.config.operators:
            if op.token:
                self.operators[token_hash(op.token)] = Operator(op.name, op.role)
        for row in await self.store.tokens.generated():
            self.operators[row.token_hash] = Operator(row.name, row.role)
        if not self.operators:
            token = "sb_" + secrets.token_urlsafe(24)
            await self.store.tokens.add("admin", "admin", token)
            self.operators[token_hash(token)] = Operator("admin", "admin")
            print("\n  No operator token is configured, so an admin token was created.\n"
                  f"  It is shown only this once; only its hash is stored:\n\n    {token}\n",
                  flush=True)

    def operator(self, token: str) -> Operator | None:
        return self.operators.get(token_hash(token))

    async def _sweep_outbox(self) -> None:
        """Deliver what is due and retry what a dead worker left behind."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.delivery.deliver_due()
                await self.recovery.release_due()
            except Exception:
                log.exception("outbox sweep failed")

    async def stop(self) -> None:
        if getattr(self, "scheduler", None) is not None:
            self.scheduler.shutdown(wait=False)
        await self.mail.stop()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pipeline.queue.clear()  # still recorded as this process's: recovery takes them
        await self.tasks.drain()
        self._stopping.set()
        if self._rejections is not None:
            await self._rejections
        for account in self.slack.values():
            await account.close()
        for bot in self.telegram.values():
            await bot.close()
        await self.http.aclose()
        await self.store.workers.retire()
        self.store.close()
        await self.engine.dispose()
        if self._unredact is not None:
            self._unredact()


def telegram_account(name: str, settings: TelegramSettings) -> TelegramAccount:
    return TelegramAccount(name, settings.token, webhook_secret=settings.webhook_secret,
                           base_url=settings.base_url, mode=settings.mode)


__all__ = ["Operator", "RejectedRequest", "Runtime", "telegram_account"]
