"""Files on a turn's journey: a person's files settled before the agent runs (fetched, skipped
by the account's limits, or given up after retries, each on the timeline), and the agent's
files kept before its reply is recorded.

Everything provider-specific is the adapter's (`channels.adapter.FileAdapter`): this module
asks it for a stream by the `ref` it put on the message, and never names a provider.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx

from channels.adapter import Capability
from channels.files import (
    CHUNK,
    FileFetchError,
    FileLimits,
    FileTooLarge,
    human_size,
    safe_name,
    safe_type,
    skip_reason,
)
from channels.messages import InboundMessage, OutboundMessage
from switchboard.config import Config
from switchboard.files import FileService, file_json
from switchboard.metrics import Metrics
from switchboard.store import FileRecord, NewFile, Store

log = logging.getLogger(__name__)
MORE_LISTED = 20  # files over a message's limit still listed (as skipped) on its turn


@dataclass(frozen=True)
class TurnFiles:
    """What the agent is told of a turn's files: those it can fetch, and those it cannot."""

    files: list[dict[str, Any]]
    skipped: list[dict[str, Any]]


class FileFlow:
    """Settles inbound files and keeps the agent's files, for the pipeline."""

    def __init__(self, config: Config, store: Store, files: FileService,
                 adapters: Mapping[str, Any], metrics: Metrics, http: httpx.AsyncClient) -> None:
        self.config = config
        self.hold = config.delivery.lease or timedelta(seconds=30)  # see FileRows.add
        self.store = store
        self.files = files
        self.adapters = adapters
        self.metrics = metrics
        self.http = http

    def limits(self, account: str) -> FileLimits:
        settings = self.config.accounts.get(account)
        return settings.files if settings is not None else FileLimits()

    # --- inbound ---------------------------------------------------------------------------

    async def settle(self, turn_ids: list[str], message: InboundMessage,
                     session_id: str | None) -> TurnFiles:
        """Record, fetch (with retries) or skip the files of the last turn; the agent's view of
        every file of `turn_ids`. Idempotent: a turn worked again fetches only what is left."""
        listed: list[tuple[str, list[dict[str, Any]]]] = []
        for turn_id in turn_ids:  # several after a pause: each held turn's files
            extra = message.extra
            if turn_id != turn_ids[-1]:
                turn = await self.store.turns.get(turn_id)
                extra = (turn.extra or {}) if turn is not None else {}
            listed.append((turn_id, [e for e in extra.get("files") or [] if isinstance(e, dict)]))
        if not any(entries for _, entries in listed):
            # file rows come only from the files a message lists: none, nothing to look up
            # (this runs before every agent run, on the database thread every turn shares)
            return TurnFiles([], [])
        for turn_id, entries in listed:
            known = [f for f in await self.store.files.of_turns([turn_id])
                     if f.direction == "in"]
            if entries and not known:
                known = await self._record(turn_id, message, entries, session_id)
            for file in known:
                if file.status == "pending":
                    await self._fetch(file)
        if session_id is not None:
            await self.store.files.set_session(turn_ids, session_id)
        return self.view([f for f in await self.store.files.of_turns(turn_ids)
                          if f.direction == "in"])

    def view(self, records: list[FileRecord]) -> TurnFiles:
        files, skipped = [], []
        for record in records:
            if record.status == "stored":
                shown = file_json(record, self.files)
                files.append({k: shown[k] for k in ("id", "name", "type", "size", "sha256",
                                                    "url")})
            else:
                skipped.append({"name": record.name, "size": record.size,
                                "reason": record.reason or "not fetched"})
        return TurnFiles(files, skipped)

    async def _record(self, turn_id: str, message: InboundMessage,
                      entries: list[dict[str, Any]], session_id: str | None) -> list[FileRecord]:
        limits = self.limits(message.account)
        new: list[NewFile] = []
        unwanted: set[str] = set()
        # past the limit files are only listed as skipped; a hostile payload's thousands stop
        kept = entries[:limits.max_files_per_message + MORE_LISTED]
        for index, entry in enumerate(kept):
            name = safe_name(str(entry.get("name") or ""))
            mime = safe_type(str(entry.get("type") or ""))
            size = entry.get("size") if isinstance(entry.get("size"), int) else None
            reason = skip_reason(limits, name, mime, size, index)
            sha = entry.get("sha256") if isinstance(entry.get("sha256"), str) else None
            if reason is not None:
                status = "skipped"
                if sha:
                    unwanted.add(sha)
                    sha = None
            else:
                status = "stored" if sha else "pending"
            new.append(NewFile(turn_id=turn_id, provider=message.provider,
                               account=message.account, direction="in", position=index,
                               name=name, type=mime, size=size, status=status, sha256=sha,
                               reason=reason, ref=entry.get("ref") or {},
                               session_id=session_id))
            if status != "pending":
                self.metrics.files.labels(message.provider, "in", status).inc()
        records = []
        for status in ("stored", "skipped", "pending"):
            batch = [n for n in new if n.status == status]
            if batch:
                event = {"stored": "file_stored", "skipped": "file_skipped",
                         "pending": "file_received"}[status]
                records += await self.store.files.add(batch, event)
        await self.files.forget(unwanted)
        return sorted(records, key=lambda r: r.position)

    async def _fetch(self, file: FileRecord) -> None:
        """Stream one file from its provider into the store, retried with backoff."""
        adapter = self.adapters.get(file.account)
        if adapter is None or Capability.FILES not in adapter.capabilities:
            why = f"account {file.account} is not running" if adapter is None else \
                "this provider does not hand over files"
            await self._give_up(file, f"{file.name} could not be fetched: {why}", 0)
            return
        opener = adapter.open_file
        settings = self.config.files
        limit = self.limits(file.account).max_file_bytes
        attempts, error = settings.fetch_attempts, ""
        for attempt in range(1, attempts + 1):
            try:
                blob = await asyncio.wait_for(
                    self.files.put(opener(file.ref), max_bytes=limit),
                    settings.fetch_timeout.total_seconds())
            except FileTooLarge:
                reason = f"{file.name} skipped: it is over the {human_size(limit)} limit"
                await self.store.files.settled(file.id, status="skipped", reason=reason,
                                               attempts=attempt, event="file_skipped")
                self.metrics.files.labels(file.provider, "in", "skipped").inc()
                return
            except FileFetchError as failure:
                error = str(failure)
                if failure.permanent:
                    break
            except (TimeoutError, httpx.HTTPError, OSError) as failure:
                error = f"{type(failure).__name__}: {failure}" if str(failure) \
                    else type(failure).__name__
            else:
                await self.store.files.settled(file.id, status="stored", sha256=blob.sha256,
                                               size=blob.size, attempts=attempt,
                                               event="file_stored")
                self.metrics.files.labels(file.provider, "in", "stored").inc()
                return
            self.metrics.file_failures.labels(file.provider, "in").inc()
            if attempt < attempts:
                delay = settings.fetch_backoff.total_seconds() * 2 ** (attempt - 1)
                await self.store.files.note(file.turn_id, "file_fetch_retry", {
                    "file_id": file.id, "name": file.name, "attempt": attempt,
                    "error": self.store.outbox.redact(error), "retry_in_s": delay})
                await asyncio.sleep(delay)
        await self._give_up(file, f"{file.name} could not be fetched: "
                            f"{self.store.outbox.redact(error)}", attempts)

    async def _give_up(self, file: FileRecord, reason: str, attempts: int) -> None:
        await self.store.files.settled(file.id, status="failed", reason=reason,
                                       attempts=attempts, event="file_fetch_failed")
        self.metrics.files.labels(file.provider, "in", "failed").inc()

    # --- outbound --------------------------------------------------------------------------

    async def keep_agent_files(self, turn_id: str, session_id: str,
                               files: tuple[dict[str, Any], ...],
                               out: OutboundMessage, *, in_reply: bool = False
                               ) -> list[FileRecord]:
        """Keep the agent's files (base64 content, or a URL fetched with the account's size
        limit and `files.fetch_timeout`); each is recorded to deliver where `out` goes, or
        failed with the reason. With `in_reply` (the adapter carries files inside the reply)
        they are kept as `with_reply`: the caller lists them in the reply's `extra["files"]`."""
        await self.files.forget(await self.store.files.drop_unsent(turn_id))
        limit = self.limits(out.account).max_file_bytes
        new: list[NewFile] = []
        destination = {"conversation": out.conversation, "thread": out.thread,
                       "reply_to": out.reply_to}
        for index, item in enumerate(files):
            name = safe_name(str(item.get("name") or ""), default=f"file-{index + 1}")
            mime = safe_type(str(item.get("type") or ""))
            base = NewFile(turn_id=turn_id, provider=out.provider, account=out.account,
                           direction="out", position=index, name=name, type=mime, size=None,
                           status="pending", ref=destination, session_id=session_id)
            try:
                blob = await asyncio.wait_for(self.files.put(self._agent_bytes(item),
                                                             max_bytes=limit),
                                              self.config.files.fetch_timeout.total_seconds())
            except FileTooLarge:
                new.append(_failed(base, f"{name} not sent: it is over the "
                                   f"{human_size(limit)} limit"))
            except (ValueError, binascii.Error) as error:
                new.append(_failed(base, f"{name} not sent: {error}"))
            except (TimeoutError, httpx.HTTPError) as error:
                new.append(_failed(base, f"{name} not sent: its url could not be fetched "
                                   f"({type(error).__name__})"))
            else:
                new.append(replace(base, sha256=blob.sha256, size=blob.size,
                                   status="with_reply" if in_reply else "pending"))
        if not new:
            return []
        records = await self.store.files.add(new, "file_from_agent", hold=self.hold)
        for record in records:
            outcome = "failed" if record.status == "failed" else "stored"
            self.metrics.files.labels(out.provider, "out", outcome).inc()
        return records

    async def _agent_bytes(self, item: dict[str, Any]) -> AsyncIterator[bytes]:
        content = item.get("content_base64")
        if isinstance(content, str):
            step = CHUNK // 3 * 4  # whole base64 quanta: each slice decodes on its own
            text = "".join(content.split())
            for start in range(0, len(text), step):
                yield base64.b64decode(text[start:start + step], validate=True)
            return
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("a file needs content_base64 or an http(s) url")
        async with self.http.stream("GET", url, follow_redirects=True) as response:
            if response.status_code // 100 != 2:
                raise ValueError(f"its url answered HTTP {response.status_code}")
            async for chunk in response.aiter_bytes(CHUNK):
                yield chunk


def _failed(base: NewFile, reason: str) -> NewFile:
    return replace(base, status="failed", reason=reason)


__all__ = ["FileFlow", "TurnFiles"]
