"""The inbound SMTP server: aiosmtpd speaks the protocol, `InboxHandler` makes the decisions,
`InboxSMTP` bounds what all sessions together may hold and for how long."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from inbox.errors import MalformedEmail, SenderCheckDeferred

log = logging.getLogger(__name__)

Accepts = Callable[[str], Awaitable[bool]]
Deliver = Callable[[str, list[str], bytes], Awaitable[None]]

MAX_RECIPIENTS = 100


class InboxHandler:
    """Accepts mail for provisioned inboxes only and hands each message to `deliver`.

    `accepts(address)` says whether a (lowercased) recipient is one of our inboxes.
    `deliver(envelope_sender, recipients, raw)` runs before the client hears 250; the null
    sender of bounces arrives as "". If it raises, the client is told 451 and retries later
    (`SenderCheckDeferred`: 451 4.7.5 with its words); `MalformedEmail` is answered 554
    instead, since retrying the same bytes cannot help.
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
            return f"554 5.6.0 {one_line(str(exc))}"
        except SenderCheckDeferred as exc:
            log.info("deferred a message from %s: %s", sender, exc)
            return f"451 4.7.5 {one_line(str(exc))}; try again later"
        except Exception:  # the protocol must answer; the sender retries a 451
            log.exception("delivering a message from %s to %s failed", sender, envelope.rcpt_tos)
            return "451 4.3.0 Message not stored; try again later"
        return "250 2.0.0 Message accepted for delivery"


def one_line(words: str) -> str:
    """Words fit for an SMTP reply: one ASCII line, short enough (replies stop at 512 octets)."""
    return " ".join(words.split()).encode("ascii", "backslashreplace").decode()[:400]


KIB, MIB = 2**10, 2**20


@dataclass(frozen=True)
class SessionLimits:
    """What all sessions of one server may hold at once, and how long anything may take (s)."""

    max_sessions: int = 50
    max_inflight_bytes: int = 64 * MIB  # DATA read and not yet answered, all sessions together
    max_line_bytes: int = 64 * KIB  # RFC 5321 says 1000; Outlook and SES send more
    idle_timeout: float = 300.0  # silence between commands or DATA lines
    data_timeout: float = 600.0  # one DATA, from 354 to the final dot
    session_timeout: float = 1800.0  # one connection; a DATA under way may finish first


class Capacity:
    """Sessions open and DATA bytes held across one server's sessions; refusals are logged as
    a count at most once a minute, so a flood does not fill the log."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self.sessions = 0
        self.inflight = 0
        self.refusals = 0
        self._noted = 0.0

    def admit(self) -> bool:
        if self.sessions >= self.limits.max_sessions:
            self.refused(f"already has {self.sessions} sessions (max_sessions)")
            return False
        self.sessions += 1
        return True

    def take(self, size: int) -> bool:
        if self.inflight + size > self.limits.max_inflight_bytes:
            self.refused(f"holds {self.inflight} bytes of DATA (max_inflight_bytes)")
            return False
        self.inflight += size
        return True

    def leave(self) -> None:
        self.sessions -= 1

    def give_back(self, size: int) -> None:
        self.inflight -= size

    def refused(self, why: str) -> None:
        self.refusals += 1
        now = time.monotonic()
        if now - self._noted >= 60:
            log.warning("SMTP server %s: refusing more (%d refusals so far)", why, self.refusals)
            self._noted = now


class InboxSMTP(SMTP):
    """aiosmtpd's SMTP with limits across sessions (`max_sessions`, a DATA byte budget) and
    deadlines that a trickle of lines or NOOPs cannot push back: aiosmtpd's own `timeout`
    restarts with every command (here with DATA lines too), so it bounds silence only;
    `data_timeout` and `session_timeout` bound the rest. Envelope content is always bytes."""

    def __init__(self, handler: object, *, capacity: Capacity, **kw: object) -> None:
        limits = capacity.limits
        self.line_length_limit = limits.max_line_bytes  # SMTP.__init__ sizes its reader by it
        super().__init__(handler, timeout=limits.idle_timeout, **kw)  # type: ignore[arg-type]
        self.capacity = capacity
        self._admitted = False
        self._in_data = False
        self._expired = False
        self._held = 0
        self._body = bytearray()
        self._session_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the second call STARTTLS makes
            self._admitted = self.capacity.admit()
            self._session_timer = self.loop.call_later(
                self.capacity.limits.session_timeout, self._session_over)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.capacity.leave()
        if self._session_timer is not None:
            self._session_timer.cancel()
        self._release()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if not self._admitted:  # 421 in place of the greeting, as a busy MTA answers
            await self.push("421 4.7.0 Too many connections; try again later")
            self._close()
            return
        await super()._handle_client()

    def _session_over(self) -> None:
        if self._in_data:
            self._expired = True  # answered once this DATA is, within data_timeout
        else:
            self._close("421 4.4.2 This session has lasted long enough; closing")

    def _close(self, answer: str | None = None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if answer:
            self._writer.write(answer.encode("ascii") + b"\r\n")
        self.transport.close()

    def _release(self) -> None:
        self.capacity.give_back(self._held)
        self._held = 0
        self._body = bytearray()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the body read into one buffer charged to the server's budget,
        within `data_timeout`; refusals are answered after the final dot (RFC 5321 4.2.5)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        if self.capacity.inflight >= self.capacity.limits.max_inflight_bytes:
            self.capacity.refused("is full of DATA (max_inflight_bytes)")
            await self.push("452 4.3.1 Too much mail in progress here; try again later")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._in_data = True
        try:
            await self._data_then_answer()
        finally:
            self._in_data = False
            self._release()
            if self._expired:
                self._close("421 4.4.2 This session has lasted long enough; closing")

    async def _data_then_answer(self) -> None:
        limit = self.capacity.limits.data_timeout
        try:
            async with asyncio.timeout(limit):
                refusal = await self._read_body()
        except TimeoutError:
            log.info("%r DATA took longer than %s s; closing", self.session and
                     self.session.peer, limit)
            self._close(f"421 4.4.2 DATA took longer than {limit:g} seconds; closing")
            return
        assert self.envelope is not None
        if refusal:
            self._set_post_data_state()
            await self.push(refusal)
            return
        content, self._body = bytes(self._body), bytearray()  # still counted as held
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks \
            else MISSING
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_body(self) -> str | None:
        """Read DATA up to the lone dot, unstuffing dots (RFC 5321 4.5.2); the refusal to answer
        once the dot has come (a line too long, too much, the budget spent), or None."""
        refusal: str | None = None
        size, limit = 0, self.data_size_limit
        in_long_line = False
        last_sign_of_life = self.loop.time()
        every = min(1.0, self.capacity.limits.idle_timeout / 4)  # a timer per line would cost
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as error:
                await self._reader.read(error.consumed)  # dropped: the answer will be 500
                in_long_line = True
                refusal = refusal or (f"500 5.5.2 Line too long; this server takes lines of "
                                      f"up to {self.line_length_limit} bytes")
                self._release()
                continue
            if self.loop.time() - last_sign_of_life > every:  # lines are signs of life; the
                last_sign_of_life = self.loop.time()  # DATA as a whole has its deadline
                self._reset_timeout()
            if in_long_line:  # the end of that line, even when it looks like a lone dot
                in_long_line = False
                continue
            if line == b".\r\n":
                return refusal
            if refusal:
                continue
            size += len(line)
            if limit and size > limit:
                refusal = f"552 5.3.4 Message too big; this server takes at most {limit} bytes"
            elif not self.capacity.take(len(line)):
                refusal = "452 4.3.1 Too much mail in progress here; try again later"
            if refusal:
                self._release()
                continue
            self._held += len(line)
            self._body += memoryview(line)[1:] if line.startswith(b".") else line


async def start_smtp_server(
    handler: InboxHandler,
    host: str,
    port: int,
    max_message_bytes: int,
    *,
    hostname: str | None = None,
    limits: SessionLimits | None = None,
) -> asyncio.base_events.Server:
    """Serve SMTP on the running loop (not aiosmtpd's Controller, which runs its own thread).

    aiosmtpd advertises SIZE and refuses `MAIL FROM ... SIZE=` over the limit with 552; an
    oversized body is read to its end (and dropped) before the 552, so the session stays usable.
    Port 0 picks a free port: see `server.sockets[0].getsockname()`.
    """
    loop = asyncio.get_running_loop()
    name = hostname or socket.gethostname()
    capacity = Capacity(limits or SessionLimits())

    def protocol() -> SMTP:
        return InboxSMTP(handler, capacity=capacity, data_size_limit=max_message_bytes,
                         hostname=name, enable_SMTPUTF8=True, loop=loop)

    server = await loop.create_server(protocol, host, port)
    log.info("SMTP listening on %s", [s.getsockname() for s in server.sockets])
    return server
