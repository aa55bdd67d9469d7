"""An existing mailbox read over IMAP (`mode: imap`): each new message recorded as a turn
through the same path as mail to `serve`'s SMTP server, then marked `\\Seen` (or moved to
`processed_folder`); answers filed in the Sent folder.

The position is the folder's UIDVALIDITY and the last UID recorded, kept as the account's
cursor after every message, so a restart neither loses nor re-reads mail. On the first start,
or when UIDVALIDITY changes (the folder was recreated), the folder's unseen messages are read:
the Message-ID dedupe records any already answered as duplicates, never a second answer. A
crash between recording a message and marking it leaves it unseen at worst.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from channels.adapter import Services
from inbox.errors import MailboxError, MalformedEmail, SenderCheckDeferred
from inbox.imap import Folder, ImapSession
from inbox.settings import EmailSettings

log = logging.getLogger(__name__)

Receive = Callable[[bytes], Awaitable[str]]  # raw mail → the turn id it was recorded as


class MailboxReader:
    """Reads one account's mailbox for as long as `run` runs, reconnecting with backoff;
    what it is doing is `health()` (and the account's error while it cannot read)."""

    def __init__(self, name: str, settings: EmailSettings, services: Services,
                 receive: Receive) -> None:
        self.name = name
        self.settings = settings
        self.services = services
        self.receive = receive
        self.cursor_name = f"imap:{settings.folder}"
        self.connected = False
        self.waiting = ""  # "idle" or "poll" once connected
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.last_message_at: datetime | None = None
        self.sent_folder: str | None = None  # found once, by its \Sent flag
        self.connected_once = False  # the last session got as far as reading the folder
        quiet_library_log()

    def health(self) -> dict[str, Any]:
        last_message_at = _iso(self.last_message_at)
        return {"connected": self.connected, "last_message_at": last_message_at, "connection": {
            "mailbox": self.settings.mailbox_address, "folder": self.settings.folder,
            "waiting": self.waiting or None, "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at), "last_message_at": last_message_at}}

    async def run(self) -> None:
        """Connect, catch up, wait for more (IDLE or polling); on any failure say why and
        try again after a backoff that doubles up to `reconnect_max`."""
        settings = self.settings
        delay = settings.reconnect_min.total_seconds()
        while True:
            try:
                await self._session()
            except MailboxError as error:
                self._failed(f"{error}")
            except (OSError, TimeoutError) as error:
                self._failed(f"the connection failed: {error}")
            except SenderCheckDeferred as error:  # a DKIM key did not come: read it later
                self._failed(f"a sender cannot be checked now: {error}")
            except Exception as error:  # a bug must not end the reading for good
                log.exception("mailbox of account %s failed", self.name)
                self._failed(f"reading failed: {error}")
            else:
                delay = settings.reconnect_min.total_seconds()
                continue
            if self.connected_once:
                delay = settings.reconnect_min.total_seconds()
                self.connected_once = False
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, settings.reconnect_max.total_seconds())

    def _failed(self, words: str) -> None:
        self.connected = False
        self.waiting = ""
        self.last_error, self.last_error_at = words, datetime.now(UTC)
        self.services.note_error(self.name, f"mailbox {self.settings.mailbox_address}: {words}")
        log.warning("mailbox of account %s: %s", self.name, words)

    async def _session(self) -> None:
        settings = self.settings
        session = await ImapSession.open(settings)
        try:
            if settings.processed_folder:
                await session.ensure_folder(settings.processed_folder)
            folder = await session.select(settings.folder)
            idle = settings.use_idle and session.has("IDLE")
            self.connected, self.connected_once = True, True
            self.waiting = "idle" if idle else "poll"
            self.services.note_error(self.name, None)
            log.info("mailbox of account %s: reading %s (%s)", self.name, settings.folder,
                     "IDLE" if idle else f"polling every {settings.poll_interval}")
            while True:
                session.new_mail()
                await self.catch_up(session, folder)
                if session.new_mail():  # came while catching up: look again first
                    continue
                if idle:
                    await session.idle(settings.idle_interval.total_seconds())
                else:
                    await asyncio.sleep(settings.poll_interval.total_seconds())
                    await session.noop()
        finally:
            self.connected = False
            await session.close()

    async def catch_up(self, session: ImapSession, folder: Folder) -> None:
        """Record every message past the position, oldest first."""
        position = await self._position()
        if position.get("uidvalidity") != folder.uidvalidity:
            # first start, or the folder was recreated: its UIDs mean nothing now. Read what
            # is unseen; what is already answered is found again by its Message-ID.
            unseen = await session.search("UNSEEN")
            if position:
                log.warning("mailbox of account %s: UIDVALIDITY of %s changed (%s → %s); "
                            "reading its %d unseen messages again", self.name, folder.name,
                            position.get("uidvalidity"), folder.uidvalidity, len(unseen))
            position = {"uidvalidity": folder.uidvalidity,
                        "uid": max([folder.uidnext - 1, *unseen, 0]), "rescan": unseen}
            await self._save(position)
        for uid in list(position.get("rescan", [])):
            await self.take(session, uid, position)
        for uid in await session.uids_after(int(position["uid"])):
            await self.take(session, uid, position)

    async def take(self, session: ImapSession, uid: int, position: dict[str, Any]) -> None:
        """One message: recorded, the position saved, then marked processed."""
        settings = self.settings
        size = await session.size(uid)
        raw = None
        if size is not None and size > settings.max_message_bytes:
            self.services.note_rejected(self.name, "too_big")
            log.warning("mailbox of account %s: message %s has %d bytes, more than "
                        "max_message_bytes (%d); left unread", self.name, uid, size,
                        settings.max_message_bytes)
        elif size is not None:
            raw = await session.fetch(uid)
        recorded = False
        if raw is not None:
            try:
                await self.receive(raw)
                recorded = True
            except MalformedEmail as error:
                self.services.note_rejected(self.name, "malformed")
                log.warning("mailbox of account %s: message %s is no email (%s); left unread",
                            self.name, uid, error)
        rescan = [left for left in position.get("rescan", []) if left != uid]
        position.update(uid=max(int(position["uid"]), uid), rescan=rescan)
        await self._save(position)
        if recorded:
            self.last_message_at = datetime.now(UTC)
            await session.mark_processed(uid, settings.processed_folder)

    async def _position(self) -> dict[str, Any]:
        value = await self.services.get_cursor(self.name, self.cursor_name)
        try:
            found = json.loads(value) if value else {}
        except ValueError:
            found = {}
        return found if isinstance(found, dict) else {}

    async def _save(self, position: dict[str, Any]) -> None:
        if not position.get("rescan"):
            position.pop("rescan", None)
        await self.services.set_cursor(self.name, self.cursor_name, json.dumps(position))

    async def file_sent(self, raw: bytes) -> dict[str, str]:
        """APPEND an answer to the Sent folder (`\\Seen`), on a connection of its own; what
        happened, for the delivery's record. A failure is told, never raised: the answer
        has already left."""
        try:
            session = await ImapSession.open(self.settings)
        except MailboxError as error:
            return self._not_filed(str(error))
        try:
            folder = self.sent_folder or await session.sent_folder()
            if folder is None:
                return self._not_filed("the mailbox has no folder flagged \\Sent; set "
                                       "sent_folder")
            await session.append(folder, raw)
            self.sent_folder = folder
            return {"sent_folder": folder}
        except MailboxError as error:
            return self._not_filed(str(error))
        finally:
            await session.close()

    def _not_filed(self, words: str) -> dict[str, str]:
        log.warning("mailbox of account %s: the answer was sent but not filed in Sent: %s",
                    self.name, words)
        return {"sent_folder_error": words}


def quiet_library_log() -> None:
    """aioimaplib logs each untagged answer it does not use at INFO; keep that for
    `--log-level debug`, so serve's output shows turns rather than protocol chatter."""
    library = logging.getLogger("aioimaplib")
    if library.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        library.setLevel(logging.WARNING)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


__all__ = ["MailboxReader"]
