"""The one SMTP server of `serve`, for every email account: aiosmtpd on the app's own event
loop, accepting mail for live inboxes only, each accepted mail handed to its account's adapter
and recorded before the client hears 250."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.adapter import Services
from inbox.adapter import EmailAdapter
from inbox.errors import MalformedEmail
from inbox.parse import parse_email
from inbox.provider import MailDirectory
from inbox.settings import SmtpSettings
from inbox.smtp import InboxHandler, SessionLimits, start_smtp_server

log = logging.getLogger(__name__)
SHUTDOWN_WAIT = 5.0  # seconds open SMTP sessions may hold up a stop


class SmtpListener:
    """One SMTP server for the running email accounts (`adapters`, by account name); it
    listens where `services.listen_address("smtp")` says, within the `smtp:` limits."""

    def __init__(self, adapters: Mapping[str, EmailAdapter], smtp: SmtpSettings,
                 services: Services, directory: MailDirectory) -> None:
        self.adapters = dict(adapters)
        self.smtp = smtp
        self.services = services
        self.directory = directory
        self.server: asyncio.base_events.Server | None = None
        self._account_of: dict[str, str] = {}  # recipient address → account, learned at RCPT

    async def start(self) -> None:
        where = self.services.listen_address("smtp")
        if where is None or not self.adapters:
            return
        host, port = where
        quiet_protocol_log()
        limit = max(a.settings.max_message_bytes for a in self.adapters.values())
        handler = AccountLimits(self, accepts=self.accepts, deliver=self.deliver,
                                max_message_bytes=limit)
        hostname = next(iter(self.adapters.values())).settings.domain
        try:
            self.server = await start_smtp_server(handler, host, port, limit, hostname=hostname,
                                                  limits=session_limits(self.smtp))
        except OSError as error:  # the port is taken: the rest of Switchboard still serves
            words = f"the SMTP server cannot listen on {host}:{port}: {error.strerror or error}"
            log.error("%s", words)
            for name in self.adapters:
                self.services.note_error(name, words)

    async def stop(self) -> None:
        """Stop accepting connections; sessions in flight are cut off at shutdown."""
        if self.server is None:
            return
        self.server.close()
        with contextlib.suppress(TimeoutError):  # open SMTP sessions must not hold up shutdown
            await asyncio.wait_for(self.server.wait_closed(), SHUTDOWN_WAIT)
        self.server = None

    async def accepts(self, address: str) -> bool:
        """RCPT: a provisioned, live inbox of one of the running email accounts."""
        inbox = await self.directory.active_inbox(address, self.adapters)
        if inbox is not None:
            self._account_of[inbox.address] = inbox.account
        return inbox is not None

    def limit_for(self, recipients: Iterable[str]) -> int:
        """The smallest max_message_bytes among the recipients' accounts."""
        limits = [self.adapters[self._account_of[r]].settings.max_message_bytes
                  for r in recipients if self._account_of.get(r) in self.adapters]
        return min(limits, default=max(a.settings.max_message_bytes
                                       for a in self.adapters.values()))

    def note_rejected(self, recipients: Iterable[str], reason: str) -> None:
        """Count mail refused after RCPT (too big, unreadable) on each recipient's account."""
        for account in {self._account_of[r] for r in recipients if r in self._account_of}:
            self.services.note_rejected(account, reason)

    async def deliver(self, envelope_sender: str, recipients: list[str], raw: bytes) -> None:
        """DATA: one turn per recipient inbox, recorded before the client hears 250."""
        try:
            parsed = await asyncio.to_thread(parse_email, raw)
        except MalformedEmail:
            self.note_rejected(recipients, "malformed")
            raise
        own = await self.directory.all_inbox_addresses()
        for address in recipients:
            inbox = await self.directory.active_inbox(address, self.adapters)
            if inbox is None:  # revoked between RCPT and DATA
                log.info("mail to %s dropped: the inbox was revoked during the session", address)
                continue
            await self.adapters[inbox.account].receive(inbox, parsed, raw, envelope_sender, own)


class AccountLimits(InboxHandler):
    """`InboxHandler` with each account's own size limit: the server advertises the largest."""

    def __init__(self, listener: SmtpListener, **kw: Any) -> None:
        super().__init__(**kw)
        self.listener = listener

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        limit = self.listener.limit_for(envelope.rcpt_tos)
        if len(raw) > limit:
            self.listener.note_rejected(envelope.rcpt_tos, "too_big")
            return f"552 5.3.4 Message too big; this inbox takes at most {limit} bytes"
        return await super().handle_DATA(server, session, envelope)


def quiet_protocol_log() -> None:
    """aiosmtpd logs every SMTP command at INFO on `mail.log`; keep that for `--log-level
    debug` only, so serve's output shows turns rather than protocol chatter."""
    protocol_log = logging.getLogger("mail.log")
    if protocol_log.level == logging.NOTSET and not logging.getLogger().isEnabledFor(
            logging.DEBUG):
        protocol_log.setLevel(logging.WARNING)


def session_limits(smtp: SmtpSettings) -> SessionLimits:
    """The `smtp:` section as the SMTP server takes it."""
    return SessionLimits(
        max_sessions=smtp.max_sessions, max_inflight_bytes=smtp.max_inflight_bytes,
        max_line_bytes=smtp.max_line_bytes, idle_timeout=smtp.idle_timeout.total_seconds(),
        data_timeout=smtp.data_timeout.total_seconds(),
        session_timeout=smtp.session_timeout.total_seconds())


__all__ = ["AccountLimits", "SmtpListener", "quiet_protocol_log", "session_limits"]
