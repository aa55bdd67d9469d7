"""Delivery of the agent's files, with the outbox's guarantees and apart from the text reply:
each file is its own row, leased per attempt, retried with backoff, failed for good with the
provider's words; a failing file never holds the reply back (it is sent first, on its own).

Adapters that carry files inside the reply (a mail's attachments, `files_in_reply`) get none
of these: their files go with the reply's outbox row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from channels.adapter import Capability
from channels.errors import DeliveryError
from channels.files import OutboundFile
from channels.messages import DeliveryReceipt, OutboundMessage
from switchboard.config import DeliveryConfig
from switchboard.files import FileService
from switchboard.metrics import Metrics
from switchboard.store import FileRecord, Store
from switchboard.work import Tasks

log = logging.getLogger(__name__)


class FileDelivery:
    """Attempts, records and retries deliveries of the agent's files."""

    def __init__(self, store: Store, files: FileService, adapters: Mapping[str, Any],
                 settings: DeliveryConfig, metrics: Metrics, tasks: Tasks,
                 backoff: Any) -> None:
        self.store = store
        self.files = files
        self.adapters = adapters
        self.settings = settings
        self.metrics = metrics
        self.tasks = tasks
        self.backoff = backoff  # the outbox's: the same schedule for files as for text
        self.lease = settings.lease or timedelta(seconds=30)

    async def deliver_turn(self, turn_id: str) -> None:
        """Attempt every undelivered file of a turn, in order (after its reply's attempt)."""
        files = [f for f in await self.store.files.of_turns([turn_id]) if f.direction == "out"]
        for file in files:
            if file.status == "pending":
                await self.deliver(file.id, first=True)
        attached = [f for f in files if f.status == "with_reply"]
        if attached:  # attachments of the reply: delivered when it was
            turn = await self.store.turns.get(turn_id)
            if turn is not None and turn.delivery_status == "delivered":
                for file in attached:
                    await self.store.files.delivered(file, turn.provider_message_id or "",
                                                     {"with_reply": True})
                    self.metrics.files.labels(file.provider, "out", "delivered").inc()

    async def deliver_due(self) -> None:
        """Retries whose timer was lost with a restart, and attempts a dead process left."""
        for file_id in await self.store.files.due():
            await self.deliver(file_id)

    async def deliver(self, file_id: str, *, first: bool = False) -> None:
        """Lease one file and attempt it (`first`: the journey's attempt, after the reply's)."""
        file = await self.store.files.claim(file_id, self.lease, first=first)
        if file is None:
            return
        adapter = self.adapters.get(file.account)
        files = adapter is not None and Capability.FILES in getattr(adapter, "capabilities", ())
        send = adapter.deliver_file if files else None
        if send is None or not file.sha256:
            why = "the account is not running" if adapter is None else \
                "this provider cannot send files"
            await self.store.files.delivery_failed(file, why, None)
            self.metrics.files.labels(file.provider, "out", "failed").inc()
            return
        try:
            receipt = await send(self._where(file), self._outbound(file))
        except DeliveryError as error:
            await self._failed(file, str(error), error.permanent, error.retry_after)
            return
        except Exception as error:  # an adapter bug must not lose the file: retry it
            log.exception("delivery of file %s raised", file.id)
            await self._failed(file, f"{type(error).__name__}: {error}", False, None)
            return
        if not isinstance(receipt, DeliveryReceipt):
            receipt = DeliveryReceipt(str(receipt))
        await self.store.files.delivered(file, receipt.provider_message_id, receipt.detail)
        self.metrics.files.labels(file.provider, "out", "delivered").inc()

    def _where(self, file: FileRecord) -> OutboundMessage:
        ref = file.ref or {}
        return OutboundMessage(provider=file.provider, account=file.account,
                               conversation=str(ref.get("conversation") or ""), text="",
                               thread=ref.get("thread"), reply_to=ref.get("reply_to"))

    def _outbound(self, file: FileRecord) -> OutboundFile:
        sha = file.sha256 or ""
        return OutboundFile(id=file.id, name=file.name, type=file.type, size=file.size or 0,
                            sha256=sha, chunks=lambda: self.files.read(sha))

    async def _failed(self, file: FileRecord, error: str, permanent: bool,
                      retry_after: float | None) -> None:
        self.metrics.file_failures.labels(file.provider, "out").inc()
        retry_at = None
        if not permanent and file.attempts < self.settings.max_attempts:
            delay = retry_after if retry_after is not None else self.backoff(file.attempts)
            retry_at = self.store.clock.now() + timedelta(seconds=delay)
        error = self.store.outbox.redact(error)
        await self.store.files.delivery_failed(file, error, retry_at)
        if retry_at is None:
            self.metrics.files.labels(file.provider, "out", "failed").inc()
            return
        delay = (retry_at - self.store.clock.now()).total_seconds()
        self.tasks.spawn(self._retry_later(file.id, max(delay, 0.0)))

    async def _retry_later(self, file_id: str, delay: float) -> None:
        await asyncio.sleep(delay + 0.01)
        await self.deliver(file_id)


__all__ = ["FileDelivery"]
