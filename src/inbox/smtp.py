"""The inbound SMTP server: aiosmtpd speaks the protocol, `InboxHandler` makes the decisions."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from inbox.parse import MalformedEmail

log = logging.getLogger(__name__)

Accepts = Callable[[str], Awaitable[bool]]
Deliver = Callable[[str, list[str], bytes], Awaitable[None]]

MAX_RECIPIENTS = 100


class InboxHandler:
    """Accepts mail for provisioned inboxes only and hands each message to `deliver`.

    `accepts(address)` says whether a (lowercased) recipient is one of our inboxes.
    `deliver(envelope_sender, recipients, raw)` runs before the client hears 250; the null
    sender of bounces arrives as "". If it raises, the client is told 451 and retries later;
    `MalformedEmail` is answered 554 instead, since retrying the same bytes cannot help.
    """

    def __init__(self, *, accepts: Accepts, deliver: Deliver, max_message_bytes: int) -> None:
        self.accepts = accepts
        self.deliver = deliver
        self.max_message_bytes = max_message_bytes

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Refuse unknown recipients at RCPT time, so senders get a bounce from their own MTA."""
        recipient = address.strip().lower()
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            known = await self.accepts(recipient)
        except Exception:  # the protocol must answer; the sender retries a 451
            log.exception("checking recipient %s failed", recipient)
            return "451 4.3.0 Cannot check this recipient now; try again later"
        if not known:
            log.info("refused %s from %s: no such inbox", recipient, session.peer)
            return f"550 5.1.1 <{address}>: no such inbox here"
        if recipient not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(recipient)
            envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Check the size ourselves (SIZE is optional for clients), then deliver."""
        raw = envelope.original_content or b""
        if len(raw) > self.max_message_bytes:
            limit = self.max_message_bytes
            return f"552 5.3.4 Message too big; this inbox takes at most {limit} bytes"
        mail_from = envelope.mail_from or ""
        sender = "" if mail_from == "<>" else mail_from
        try:
            await self.deliver(sender, list(envelope.rcpt_tos), raw)
        except MalformedEmail as exc:
            log.info("refused unreadable message from %s: %s", session.peer, exc)
            words = " ".join(str(exc).split()).encode("ascii", "backslashreplace").decode()
            return f"554 5.6.0 {words[:400]}"  # one ASCII line; replies stop at 512 octets
        except Exception:  # the protocol must answer; the sender retries a 451
            log.exception("delivering a message from %s to %s failed", sender, envelope.rcpt_tos)
            return "451 4.3.0 Message not stored; try again later"
        return "250 2.0.0 Message accepted for delivery"


async def start_smtp_server(
    handler: InboxHandler,
    host: str,
    port: int,
    max_message_bytes: int,
    *,
    hostname: str | None = None,
    timeout: float = 300.0,
) -> asyncio.base_events.Server:
    """Serve SMTP on the running loop (not aiosmtpd's Controller, which runs its own thread).

    aiosmtpd advertises SIZE, refuses `MAIL FROM ... SIZE=` over the limit with 552 and reads
    an oversized body to its end before answering 552, so the session stays usable.
    Port 0 picks a free port: see `server.sockets[0].getsockname()`.
    """
    loop = asyncio.get_running_loop()
    name = hostname or socket.gethostname()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=max_message_bytes,
            hostname=name,
            enable_SMTPUTF8=True,
            timeout=timeout,
            loop=loop,
        )

    server = await loop.create_server(protocol, host, port)
    log.info("SMTP listening on %s", [s.getsockname() for s in server.sockets])
    return server
