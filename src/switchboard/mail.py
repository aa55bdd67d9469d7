"""Email wired into `serve`: the SMTP server for every inbox, each mail a turn, replies by mail.

Inbound: aiosmtpd on the app's own event loop accepts mail for provisioned inboxes only; each
accepted message is parsed, its sender authenticated, checked for loops, threaded through
Message-ID/In-Reply-To/References, and recorded by the pipeline before the client hears 250.
Outbound: `EmailAdapter` composes the threaded reply to the authenticated sender (never to a
Reply-To: `inbox.auth.reply_address`) and hands it to the account's relay, or drops it into the
account's maildir when no relay is configured.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterable
from email.errors import MessageError
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.errors import DeliveryError
from channels.messages import DeliveryReceipt, OutboundMessage
from inbox import (
    DnsFunc,
    InboxHandler,
    MalformedEmail,
    ParsedEmail,
    SessionLimits,
    auto_reply_reason,
    check_sender,
    compose_reply,
    parse_email,
    reply_address,
    send_via_relay,
    start_smtp_server,
    to_inbound,
    txt_lookup,
    write_to_maildir,
)
from switchboard.config import EmailAccount, SmtpConfig
from switchboard.errors import AddressTaken
from switchboard.store import Inbox, Store

if TYPE_CHECKING:
    from switchboard.runtime import Runtime

log = logging.getLogger(__name__)


def email_accounts(runtime: Runtime) -> dict[str, EmailAccount]:
    """The enabled email accounts of the config."""
    config = runtime.config
    return {name: settings for name, settings in config.accounts.items()
            if isinstance(settings, EmailAccount) and name not in config.disabled}


class MailService:
    """The email side of one `serve` process: one SMTP server for all email accounts, and an
    outbound adapter per account."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store: Store = runtime.store
        self.accounts = email_accounts(runtime)
        # where `sender_auth: dkim` fetches keys: the account's dns_resolver, else the system's
        self.key_lookups: dict[str, DnsFunc] = {
            name: txt_lookup(s.dns_resolver, s.dns_timeout.total_seconds())
            for name, s in self.accounts.items()}
        self.server: asyncio.base_events.Server | None = None
        self._account_of: dict[str, str] = {}  # recipient address → account, learned at RCPT

    async def start(self, host: str, port: int | None) -> None:
        """Register the outbound adapters; serve SMTP when a port is given."""
        for name, settings in self.accounts.items():
            self.runtime.adapters[name] = EmailAdapter(name, settings, self.store)
            await self.provision_declared(name, settings)
        if port is None or not self.accounts:
            return
        quiet_protocol_log()
        limit = max(s.max_message_bytes for s in self.accounts.values())
        handler = AccountLimits(self, accepts=self.accepts, deliver=self.deliver,
                                max_message_bytes=limit)
        hostname = next(iter(self.accounts.values())).domain
        try:
            self.server = await start_smtp_server(handler, host, port, limit, hostname=hostname,
                                                  limits=session_limits(self.runtime.config.smtp))
        except OSError as error:  # the port is taken: the rest of Switchboard still serves
            words = f"the SMTP server cannot listen on {host}:{port}: {error.strerror or error}"
            log.error("%s", words)
            for name in self.accounts:
                self.runtime.account_errors[name] = words

    async def provision_declared(self, account: str, settings: EmailAccount) -> None:
        """Addresses the config declares (`inboxes:` on the account) exist from the start;
        one an operator revoked stays revoked."""
        for local, agent in settings.inboxes.items():
            address = f"{local}@{settings.domain}".lower()
            try:
                await self.store.inboxes.provision(address, agent, account)
            except AddressTaken:
                current = await self.store.inboxes.active(address, [account])
                if current is None or current.agent != agent:
                    log.warning("inbox %s from the config is revoked or belongs to another "
                                "agent; left as it is", address)

    async def stop(self) -> None:
        """Stop accepting connections; sessions in flight are cut off at shutdown."""
        if self.server is None:
            return
        self.server.close()
        with contextlib.suppress(TimeoutError):  # open SMTP sessions must not hold up shutdown
            await asyncio.wait_for(self.server.wait_closed(), 5)
        self.server = None

    # --- inbound -------------------------------------------------------------------------------

    async def accepts(self, address: str) -> bool:
        """RCPT: a provisioned, live inbox of one of our enabled email accounts."""
        inbox = await self.store.inboxes.active(address, self.accounts)
        if inbox is not None:
            self._account_of[inbox.address] = inbox.account
        return inbox is not None

    def limit_for(self, recipients: Iterable[str]) -> int:
        """The smallest max_message_bytes among the recipients' accounts."""
        limits = [self.accounts[self._account_of[r]].max_message_bytes for r in recipients
                  if self._account_of.get(r) in self.accounts]
        return min(limits, default=max(s.max_message_bytes for s in self.accounts.values()))

    async def note_rejected(self, recipients: Iterable[str], reason: str) -> None:
        """Count mail refused after RCPT (too big, unreadable) on each recipient's account."""
        for account in {self._account_of[r] for r in recipients if r in self._account_of}:
            await self.store.accounts.note_rejected(account, reason)

    async def deliver(self, envelope_sender: str, recipients: list[str], raw: bytes) -> None:
        """DATA: one turn per recipient inbox, recorded before the client hears 250."""
        try:
            parsed = await asyncio.to_thread(parse_email, raw)
        except MalformedEmail:
            await self.note_rejected(recipients, "malformed")
            raise
        own = await self.store.inboxes.all_addresses()
        for address in recipients:
            inbox = await self.store.inboxes.active(address, self.accounts)
            if inbox is None:  # revoked between RCPT and DATA
                log.info("mail to %s dropped: the inbox was revoked during the session", address)
                continue
            await self.receive(inbox, parsed, raw, envelope_sender, own)

    async def receive(self, inbox: Inbox, parsed: ParsedEmail, raw: bytes,
                      envelope_sender: str, own: set[str]) -> str:
        """Turn one email to one inbox into a recorded turn; returns the turn id."""
        settings = self.accounts[inbox.account]
        reason = await self.ignore_reason(inbox.account, parsed, raw, envelope_sender, own)
        answer, passed_over = reply_address(parsed, envelope_sender, settings.sender_auth)
        message = to_inbound(parsed, account=inbox.account, inbox_address=inbox.address,
                             raw=raw, ignore_reason=reason)
        own_id = parsed.message_id or message.event_id
        root = await self.store.inboxes.thread_root(
            inbox.account, [parsed.in_reply_to, *reversed(parsed.references)]) or own_id
        if reason is None:
            await self.store.inboxes.remember_thread(inbox.account, parsed.message_id, root)
        message = dataclasses.replace(
            message,
            # one mail to two inboxes of an account is two turns, so the id names the inbox
            event_id=f"{inbox.address}:{message.event_id}",
            thread=root,
            for_agent=inbox.agent,
            raw={**message.raw, "envelope": {"mail_from": envelope_sender,
                                             "rcpt_to": inbox.address},
                 **raw_payload(raw)},
            extra={**message.extra, "inbox_agent": inbox.agent,
                   "text_from_html": parsed.text_from_html,
                   "reply_extra": {**reply_extra(parsed, inbox.address, settings.domain),
                                   "to": answer, "ignored": passed_over}},
        )
        recorded = await self.runtime.pipeline.receive(message)
        self.runtime.events.publish("email.received", {
            "turn_id": recorded.turn_id, "account": inbox.account, "from": parsed.from_addr,
            "to": inbox.address, "subject": parsed.subject, "message_id": parsed.message_id,
            **({"ignored": reason} if reason else {}),
            **({"duplicate_of": recorded.duplicate_of} if recorded.duplicate_of else {})})
        return recorded.turn_id

    async def ignore_reason(self, account: str, parsed: ParsedEmail, raw: bytes,
                            envelope_sender: str, own: set[str]) -> str | None:
        """Why this mail must be recorded but never answered: automatic mail (auto-replies,
        bounces, reports, lists, our own inboxes) that could loop, or an unauthenticated From.
        Automatic mail is told first: a bounce's From names no one to authenticate.
        `SenderCheckDeferred` when the sender cannot be checked now (the client hears 451)."""
        settings = self.accounts[account]
        automatic = auto_reply_reason(parsed, own, envelope_sender=envelope_sender)
        if automatic:
            return automatic
        try:
            forged = await asyncio.to_thread(check_sender, raw, parsed, settings.sender_auth,
                                             settings.authserv_id, self.key_lookups[account])
        except ValueError as error:  # authentication-results without an authserv_id
            forged = f"sender authentication is not configured correctly: {error}"
        return forged


def quiet_protocol_log() -> None:
    """aiosmtpd logs every SMTP command at INFO on `mail.log`; keep that for `--log-level
    debug` only, so serve's output shows turns rather than protocol chatter."""
    protocol_log = logging.getLogger("mail.log")
    if protocol_log.level == logging.NOTSET and not logging.getLogger().isEnabledFor(
            logging.DEBUG):
        protocol_log.setLevel(logging.WARNING)


class AccountLimits(InboxHandler):
    """`InboxHandler` with each account's own size limit: the server advertises the largest."""

    def __init__(self, service: MailService, **kw: Any) -> None:
        super().__init__(**kw)
        self.service = service

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        limit = self.service.limit_for(envelope.rcpt_tos)
        if len(raw) > limit:
            await self.service.note_rejected(envelope.rcpt_tos, "too_big")
            return f"552 5.3.4 Message too big; this inbox takes at most {limit} bytes"
        return await super().handle_DATA(server, session, envelope)


def session_limits(smtp: SmtpConfig) -> SessionLimits:
    """The `smtp:` section as the SMTP server takes it."""
    return SessionLimits(
        max_sessions=smtp.max_sessions, max_inflight_bytes=smtp.max_inflight_bytes,
        max_line_bytes=smtp.max_line_bytes, idle_timeout=smtp.idle_timeout.total_seconds(),
        data_timeout=smtp.data_timeout.total_seconds(),
        session_timeout=smtp.session_timeout.total_seconds())


def reply_extra(parsed: ParsedEmail, inbox_address: str, domain: str) -> dict[str, Any]:
    """What `EmailAdapter` needs to compose the threaded reply, kept with the turn."""
    return {"subject": parsed.subject, "message_id": parsed.message_id,
            "references": list(parsed.references), "sender": parsed.from_addr,
            "inbox": inbox_address, "domain": domain}


def raw_payload(raw: bytes) -> dict[str, str]:
    """The raw message for debugging: as text when it is clean UTF-8, else base64."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return {"raw": text}
    return {"raw_base64": base64.b64encode(raw).decode("ascii")}


# --- outbound ----------------------------------------------------------------------------------

class EmailAdapter:
    """Delivers a reply as a threaded email from the inbox, through the relay or to a maildir."""

    def __init__(self, name: str, settings: EmailAccount, store: Store) -> None:
        self.name = name
        self.settings = settings
        self.store = store

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt:
        extra = out.extra
        to = extra.get("to") or extra.get("sender")  # never a Reply-To: see reply_address
        if not to:
            raise DeliveryError("the turn has no sender address to answer", permanent=True)
        try:
            msg = compose_reply(
                inbox_address=extra.get("inbox") or out.conversation, to=to,
                subject=extra.get("subject") or "", message_id=extra.get("message_id") or "",
                reply_text=out.text, domain=extra.get("domain") or self.settings.domain,
                references=extra.get("references") or [])
        except (ValueError, MessageError) as error:  # the same on every attempt: permanent
            raise DeliveryError(f"the reply cannot be composed: {error}",
                                permanent=True) from error
        ours = str(msg["Message-ID"])
        said = {"to": to, **({"ignored": extra["ignored"]} if extra.get("ignored") else {})}
        # before sending: a reply to our answer must find the thread even if we crash right after
        await self.store.inboxes.remember_thread(self.name, ours,
                                                 out.thread or extra.get("message_id") or ours)
        settings = self.settings
        if settings.relay_host:
            await send_via_relay(msg, settings.relay_host, settings.relay_port,
                                 starttls=settings.relay_starttls,
                                 username=settings.relay_username,
                                 password=settings.relay_password)
            return DeliveryReceipt(ours, {"relay": f"{settings.relay_host}:{settings.relay_port}",
                                          **said})
        folder = os.path.abspath(settings.maildir)
        try:
            path = await asyncio.to_thread(write_to_maildir, msg, folder)
        except OSError as error:
            raise DeliveryError(f"cannot write to the maildir {folder}: {error}",
                                permanent=False) from error
        except (ValueError, MessageError) as error:  # the message cannot be written out
            raise DeliveryError(f"the reply cannot be written: {error}",
                                permanent=True) from error
        return DeliveryReceipt(ours, {"maildir": path, **said})


__all__ = [
    "AccountLimits", "EmailAdapter", "MailService", "email_accounts", "raw_payload",
    "session_limits",
]
