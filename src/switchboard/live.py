"""A reply while it is being written: the working indicator, and the live message that grows
with the agent's deltas, for adapters with the `typing`, `stream` or `edit` capabilities
(`channels.live` has the shapes; this module never asks which provider it talks to).

The live message is best-effort and throttled: at most one start/update per `edit_interval`,
deltas coalesced, an update skipped when pacing has no token for it. What the person keeps is
the final message, delivered through the outbox as every reply is: the live message's state
goes into the outbox row, and the adapter's `deliver` finishes that message or sends a fresh
one, so a retry or another process after a crash finishes it exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from channels.adapter import Capability
from channels.errors import DeliveryError
from channels.live import LiveAdapter, LiveReply, Working, split_text
from channels.messages import InboundMessage, OutboundMessage
from switchboard.metrics import Metrics
from switchboard.pacing import Pacer
from switchboard.store import Store

log = logging.getLogger(__name__)
STOP_WAIT = 5.0  # seconds a call in flight may take to finish when the indicator stops


class LiveTurn:
    """The live side of one reply: `begin` (indicator), `delta` (live message), `settle`
    (before the reply is recorded), `stop_working` (before the final message), `clear`."""

    def __init__(self, turn_id: str, message: InboundMessage, adapter: Any, store: Store,
                 metrics: Metrics, pacer: Pacer, resume: dict[str, Any] | None) -> None:
        self.turn_id = turn_id
        self.message = message
        self.adapter: LiveAdapter = adapter
        self.store = store
        self.metrics = metrics
        self.pacer = pacer
        caps = adapter.capabilities
        self.working: Working | None = adapter.working(message) \
            if Capability.TYPING in caps else None
        self.reply: LiveReply | None = None
        if Capability.STREAM in caps or Capability.EDIT in caps:
            out: OutboundMessage = adapter.reply_to(message, "")
            self.reply = adapter.live(message, out, resume)
        settings = getattr(adapter, "settings", None)
        interval = getattr(settings, "edit_interval", None)
        self.interval = interval.total_seconds() if interval else 1.0
        self.limit: int = getattr(self.reply, "limit", 4096)
        self.notes: list[tuple[str, dict[str, Any]]] = []  # written with the reply
        self.text = ""
        self.shown = ""
        self.started = resume is not None and self.reply is not None
        self.failed = False
        self.updates = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._settled = asyncio.Event()
        self._stop = asyncio.Event()
        self._updater: asyncio.Task[None] | None = None
        self._indicator: asyncio.Task[None] | None = None
        self._group = adapter.is_group(message.conversation) if self.reply else False
        if self.started:
            self.notes.append(("stream.resumed", {"mode": resume.get("mode"),  # type: ignore[union-attr]
                                                  "message_id": resume.get("id"),  # type: ignore[union-attr]
                                                  "how": "a restarted process goes on with the "
                                                         "message the dead one started"}))

    @property
    def provider(self) -> str:
        return self.message.provider

    # --- the working indicator -------------------------------------------------------------

    def begin(self) -> None:
        """Show the working indicator now, and again every `refresh` seconds."""
        if self.working is not None:
            self._indicator = asyncio.get_running_loop().create_task(self._keep_working())

    async def _keep_working(self) -> None:
        assert self.working is not None
        first = True
        while not self._stop.is_set():
            try:
                how = await self.working.show()
            except DeliveryError as error:
                if first:
                    self.notes.append(("working.failed", {"error": str(error)}))
                if error.retry_after:
                    self.pacer.hold(self.message.account, self.message.conversation,
                                    error.retry_after)
                return
            self.metrics.typing.labels(self.provider, how).inc()
            if first:
                self.notes.append(("working", {"shown": how}))
                first = False
            if not self.working.refresh:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.working.refresh)

    async def stop_working(self) -> None:
        """No indicator call after this returns (one in flight is let finish, not cut)."""
        self._stop.set()
        if self._indicator is not None:
            await _finish(self._indicator)

    async def clear(self, replied: bool) -> None:
        """Take the indicator away (a reaction removed, a status cleared)."""
        if self.working is None:
            return
        await self.stop_working()
        try:
            await self.working.clear(replied)
        except DeliveryError as error:
            log.info("clearing the working indicator of %s failed: %s", self.turn_id, error)

    # --- the live message ------------------------------------------------------------------

    async def delta(self, delta: str) -> None:
        """The agent wrote more: shown at the next update."""
        if self.reply is None or self.failed or self._closing:
            return
        self.text += delta
        if self._updater is None:
            self._updater = asyncio.get_running_loop().create_task(self._update_loop())
        self._wake.set()

    async def _update_loop(self) -> None:
        last = 0.0
        while not self._closing and not self.failed:
            await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            wait = last + self.interval - time.monotonic()
            if wait > 0 and self.started:
                await self._pause(wait)  # coalesce what comes meanwhile
                if self._closing:
                    return
            text = split_text(self.text, self.limit)[0]
            if not text.strip() or text == self.shown:
                continue
            if not self.pacer.try_take(self.message.account, self.message.conversation,
                                       self._group, self.adapter.pace):
                self._wake.set()  # no token now: try again shortly, with what is new by then
                await self._pause(min(self.interval, 0.25))
                continue
            await self._send(text)
            last = time.monotonic()  # the interval counts from the end of the call
            self.pacer.sent(self.message.account, self.message.conversation, self._group,
                            self.adapter.pace)

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the reply is settled meanwhile (the final message must not wait)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), seconds)

    async def _send(self, text: str) -> None:
        assert self.reply is not None
        try:
            if self.started:
                await self.reply.update(text)
                self.updates += 1
            else:
                await self.reply.start(text)
                self.started = True
                self.metrics.streams.labels(self.provider, "started").inc()
                started = {"mode": self.reply.mode, "message_id": self.reply.message_id}
                if refused := getattr(self.reply, "refused", None):
                    started["refused"] = refused  # the provider's words; the fallback used
                # durable at once: a process taking the turn over goes on with this message
                notes, self.notes = [*self.notes, ("stream.started", started)], []
                await self.store.turns.note(self.turn_id, notes)
            self.metrics.edits.labels(self.provider, self.reply.mode).inc()
            self.shown = text
        except DeliveryError as error:
            if error.retry_after is not None:
                self.pacer.hold(self.message.account, self.message.conversation,
                                error.retry_after)
                self._wake.set()
                return
            if error.permanent or not self.started:
                self.failed = True
                self.metrics.streams.labels(self.provider, "failed").inc()
                fallback = "the final message finishes the one shown so far" if self.started \
                    else "one complete message when the agent is done"
                self.notes.append(("stream.failed", {"error": str(error), "fallback": fallback,
                                                     "mode": self.reply.mode}))

    async def settle(self) -> dict[str, Any] | None:
        """The agent is done: no more updates; the live message's state for the outbox row
        (None: nothing was shown, the reply goes as a fresh message)."""
        self._closing = True
        self._settled.set()
        self._wake.set()
        if self._updater is not None:
            await _finish(self._updater)
        if self.reply is None or not self.started:
            return None
        return {**self.reply.state(), "updates": self.updates}

    async def abandon(self) -> None:
        """The agent failed after the live message started: close it (a stream is never left
        open); the person keeps what was shown."""
        await self.settle()
        if self.reply is not None and self.started:
            try:
                await self.reply.abandon()  # type: ignore[attr-defined]
            except DeliveryError as error:
                log.info("closing the live message of %s failed: %s", self.turn_id, error)
            self.notes.append(("stream.failed", {"error": "the agent failed",
                                                 "fallback": "the message shown so far was "
                                                             "closed as it is"}))


    def cancel(self) -> None:
        """Stop everything at once (an error that is not the agent's, a shutdown)."""
        self._closing = True
        self._stop.set()
        self._settled.set()
        for task in (self._indicator, self._updater):
            if task is not None:
                task.cancel()


async def _finish(task: asyncio.Task[None]) -> None:
    """Let a task end by itself (a call in flight completes); cut it after STOP_WAIT."""
    try:
        await asyncio.wait_for(asyncio.shield(task), STOP_WAIT)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def live_turn(turn_id: str, message: InboundMessage, adapters: Mapping[str, Any], store: Store,
              metrics: Metrics, pacer: Pacer, resume: dict[str, Any] | None = None
              ) -> LiveTurn | None:
    """The live side of a reply to `message`, when its adapter has any (else None)."""
    adapter = adapters.get(message.account)
    caps = getattr(adapter, "capabilities", frozenset())
    if adapter is None or not {Capability.TYPING, Capability.STREAM, Capability.EDIT} & caps:
        return None
    if not hasattr(adapter, "live"):
        return None
    return LiveTurn(turn_id, message, adapter, store, metrics, pacer, resume)


__all__ = ["LiveTurn", "live_turn"]
