"""The inbound SMTP server on a free port, driven by the standard library's SMTP client."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest
import pytest_asyncio
from aiosmtpd.smtp import Envelope, Session

from inbox.errors import MalformedEmail
from inbox.parse import parse_email
from inbox.smtp import InboxHandler, start_smtp_server

LIMIT = 20_000
INBOX = "agent@inbox.test"
T = TypeVar("T")


class Inbox:
    """What the server handed over, and how deliver() should behave."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, list[str], bytes]] = []
        self.failure: Exception | None = None

    async def accepts(self, address: str) -> bool:
        return address == INBOX

    async def deliver(self, sender: str, recipients: list[str], raw: bytes) -> None:
        if self.failure:
            raise self.failure
        parse_email(raw)
        self.delivered.append((sender, recipients, raw))


@pytest_asyncio.fixture
async def smtp_server() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    handler = InboxHandler(accepts=inbox.accepts, deliver=inbox.deliver, max_message_bytes=LIMIT)
    server = await start_smtp_server(handler, "127.0.0.1", 0, LIMIT, hostname="mx.inbox.test")
    yield inbox, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def message(body: str = "Please restart the nightly job.") -> bytes:
    return (
        "From: Bob <bob@acme.com>\r\nTo: agent@inbox.test\r\nSubject: Job\r\n"
        f"Message-ID: <s1@acme.com>\r\n\r\n{body}\r\n"
    ).encode()


def big_body() -> str:
    return "\r\n".join("x" * 99 for _ in range(LIMIT // 100 + 50))


async def client(port: int, session: Callable[[smtplib.SMTP], T]) -> T:
    """Run a blocking smtplib conversation in a thread while the server runs on this loop."""

    def run() -> T:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as smtp:
            smtp.ehlo()
            return session(smtp)

    return await asyncio.to_thread(run)


@pytest.mark.asyncio
async def test_unknown_recipient_is_refused(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server

    def talk(smtp: smtplib.SMTP) -> tuple[int, bytes]:
        smtp.mail("bob@acme.com")
        return smtp.rcpt("nobody@inbox.test")

    assert await client(port, talk) == (550, b"5.1.1 <nobody@inbox.test>: no such inbox here")
    assert inbox.delivered == []


@pytest.mark.asyncio
async def test_accepted_message_reaches_deliver(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server

    def talk(smtp: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        return smtp.sendmail("bob@acme.com", ["Agent@Inbox.test", "nobody@inbox.test"], message())

    refused = await client(port, talk)
    assert refused == {"nobody@inbox.test": (550, b"5.1.1 <nobody@inbox.test>: no such inbox here")}
    [(sender, recipients, raw)] = inbox.delivered
    assert (sender, recipients) == ("bob@acme.com", [INBOX])
    assert parse_email(raw).text == "Please restart the nightly job."


@pytest.mark.asyncio
async def test_bounce_arrives_with_an_empty_sender(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    await client(port, lambda smtp: smtp.sendmail("<>", [INBOX], message()))
    assert inbox.delivered[0][0] == ""


@pytest.mark.asyncio
async def test_deliver_failure_answers_451_and_malformed_554(
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    inbox.failure = RuntimeError("database is down")

    def talk(smtp: smtplib.SMTP) -> tuple[int, bytes]:
        smtp.mail("bob@acme.com")
        smtp.rcpt(INBOX)
        return smtp.data(message())

    code, _ = await client(port, talk)
    assert code == 451
    inbox.failure = MalformedEmail("the message has no From header,\r\nso there is no one")
    refusal = b"5.6.0 the message has no From header, so there is no one"
    assert await client(port, talk) == (554, refusal)
    inbox.failure = None
    assert (await client(port, talk))[0] == 250


@pytest.mark.asyncio
async def test_oversized_with_size_is_refused_at_mail(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server

    def talk(smtp: smtplib.SMTP) -> tuple[tuple[int, bytes], dict[str, tuple[int, bytes]]]:
        assert smtp.has_extn("size") and int(smtp.esmtp_features["size"]) == LIMIT
        too_big = smtp.mail("bob@acme.com", [f"SIZE={LIMIT + 1}"])
        smtp.rset()
        return too_big, smtp.sendmail("bob@acme.com", [INBOX], message("small"))

    (code, _), refused = await client(port, talk)
    assert code == 552 and refused == {}
    assert len(inbox.delivered) == 1


@pytest.mark.asyncio
async def test_oversized_without_size_is_read_then_refused(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server

    def talk(smtp: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        smtp.mail("bob@acme.com")  # no SIZE parameter: the body is the first hint
        smtp.rcpt(INBOX)
        too_big = smtp.data(message(big_body()))
        smtp.mail("bob@acme.com")
        smtp.rcpt(INBOX)
        return too_big, smtp.data(message("after the big one"))

    (code, _), after = await client(port, talk)
    assert code == 552
    assert after[0] == 250
    await client(port, lambda smtp: smtp.sendmail("bob@acme.com", [INBOX], message("new session")))
    assert [parse_email(raw).text for _, _, raw in inbox.delivered] == [
        "after the big one",
        "new session",
    ]


@pytest.mark.asyncio
async def test_handler_enforces_its_own_limit() -> None:
    delivered: list[bytes] = []

    async def deliver(sender: str, recipients: list[str], raw: bytes) -> None:
        delivered.append(raw)

    async def accepts(address: str) -> bool:
        return True

    handler = InboxHandler(accepts=accepts, deliver=deliver, max_message_bytes=100)
    envelope = Envelope()
    envelope.mail_from = "bob@acme.com"
    envelope.rcpt_tos = [INBOX]
    envelope.original_content = message("x" * 200)
    answer = await handler.handle_DATA(None, Session(None), envelope)  # type: ignore[arg-type]
    assert answer.startswith("552 5.3.4 Message too big")
    assert delivered == []
