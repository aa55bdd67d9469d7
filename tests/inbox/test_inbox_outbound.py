"""Replies: threading headers, Maildir drops, and a real SMTP relay that accepts or refuses."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import pytest_asyncio

from channels.errors import DeliveryError
from inbox.outbound import compose_reply, reply_subject, send_via_relay, write_to_maildir
from inbox.parse import parse_email
from inbox.smtp import InboxHandler, start_smtp_server


def reply(**overrides: object) -> EmailMessage:
    fields: dict[str, object] = {
        "inbox_address": "agent@inbox.test",
        "to": "bob@acme.com",
        "subject": "Nightly job",
        "message_id": "<m2@acme.com>",
        "references": ["<m0@acme.com>", "<m1@inbox.test>"],
        "reply_text": "Restarted; it finished at 03:12.",
        "domain": "inbox.test",
        "now": datetime(2025, 3, 3, 9, 30, tzinfo=UTC),
    }
    fields.update(overrides)
    return compose_reply(**fields)  # type: ignore[arg-type]


def test_compose_reply_threads_under_the_original() -> None:
    msg = reply(inbox_name="Build Agent")
    assert msg["From"] == "Build Agent <agent@inbox.test>"
    assert msg["To"] == "bob@acme.com"
    assert msg["Subject"] == "Re: Nightly job"
    assert msg["In-Reply-To"] == "<m2@acme.com>"
    assert msg["References"] == "<m0@acme.com> <m1@inbox.test> <m2@acme.com>"
    assert msg["Message-ID"].endswith("@inbox.test>")
    assert msg["Date"] == "Mon, 03 Mar 2025 09:30:00 +0000"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content().strip() == "Restarted; it finished at 03:12."


def test_reply_subject_does_not_stack_prefixes() -> None:
    assert reply_subject("Re: Nightly job") == "Re: Nightly job"
    assert reply_subject("RE:Nightly") == "RE:Nightly"
    assert reply_subject("AW: Frage") == "AW: Frage"
    assert reply_subject("Regarding the\n budget") == "Re: Regarding the budget"
    assert reply_subject("") == "Re: (no subject)"


def test_first_message_without_ids_and_long_threads() -> None:
    first = reply(message_id="", references=[])
    assert first["In-Reply-To"] is None and first["References"] is None
    long = reply(references=[f"<r{i}@acme.com>" for i in range(40)], message_id="<last@acme.com>")
    refs = long["References"].split()
    assert len(refs) == 20 and refs[0] == "<r0@acme.com>" and refs[-1] == "<last@acme.com>"


def test_reply_round_trips_through_the_parser() -> None:
    msg = reply(reply_text="Grüße — done ✔")
    parsed = parse_email(msg.as_bytes())
    assert parsed.text == "Grüße — done ✔"
    assert parsed.in_reply_to == "<m2@acme.com>"
    assert parsed.loop_headers["auto-submitted"] == "auto-replied"


def test_write_to_maildir(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    path = write_to_maildir(reply(), box)
    assert Path(path).parent == box / "new"
    stored = email.message_from_bytes(Path(path).read_bytes(), policy=policy.default)
    assert stored["Subject"] == "Re: Nightly job"
    raw_path = write_to_maildir(b"From: a@b.c\r\n\r\nraw\r\n", str(box))
    assert Path(raw_path).read_bytes() == b"From: a@b.c\r\n\r\nraw\r\n"
    assert sorted(p.name for p in box.iterdir()) == ["cur", "new", "tmp"]


# --- a real relay: another aiosmtpd server on a free port ----------------------------------


class Relay:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse_recipients = False
        self.fail_storage = False

    async def accepts(self, address: str) -> bool:
        return not self.refuse_recipients

    async def deliver(self, sender: str, recipients: list[str], raw: bytes) -> None:
        if self.fail_storage:
            raise RuntimeError("disk full")
        self.received.append((sender, recipients, raw))


@pytest_asyncio.fixture
async def relay() -> AsyncIterator[tuple[Relay, int]]:
    state = Relay()
    handler = InboxHandler(accepts=state.accepts, deliver=state.deliver, max_message_bytes=100_000)
    server = await start_smtp_server(handler, "127.0.0.1", 0, 100_000, hostname="relay.test")
    yield state, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def send(msg: EmailMessage, port: int, timeout: float = 5) -> str:
    return await send_via_relay(msg, "127.0.0.1", port, starttls=False, timeout=timeout,
                                local_hostname="agent.inbox.test")


@pytest.mark.asyncio
async def test_relay_receives_the_reply(relay: tuple[Relay, int]) -> None:
    state, port = relay
    msg = reply()
    assert await send(msg, port) == msg["Message-ID"]
    [(sender, recipients, raw)] = state.received
    assert (sender, recipients) == ("agent@inbox.test", ["bob@acme.com"])
    arrived = parse_email(raw)
    assert arrived.subject == "Re: Nightly job"
    assert arrived.message_id == msg["Message-ID"]
    assert arrived.text == "Restarted; it finished at 03:12."


@pytest.mark.asyncio
async def test_relay_550_is_permanent_in_the_relays_words(relay: tuple[Relay, int]) -> None:
    state, port = relay
    state.refuse_recipients = True
    with pytest.raises(DeliveryError) as caught:
        await send(reply(), port)
    assert caught.value.permanent
    assert str(caught.value) == "550 5.1.1 <bob@acme.com>: no such inbox here"


@pytest.mark.asyncio
async def test_relay_451_is_temporary(relay: tuple[Relay, int]) -> None:
    state, port = relay
    state.fail_storage = True
    with pytest.raises(DeliveryError) as caught:
        await send(reply(), port)
    assert not caught.value.permanent
    assert str(caught.value).startswith("451 4.3.0")


@pytest.mark.asyncio
async def test_relay_refusing_connections_is_temporary() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError, match="could not reach relay") as caught:
        await send(reply(), port)
    assert not caught.value.permanent


@pytest.mark.asyncio
async def test_silent_relay_times_out_temporarily() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets; returns when the client gives up
        writer.close()
        await writer.wait_closed()
        hung_up.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        with pytest.raises(DeliveryError, match="timed out") as caught:
            await send(reply(), server.sockets[0].getsockname()[1], timeout=0.3)
        assert not caught.value.permanent
        await asyncio.wait_for(hung_up.wait(), 2)
    finally:
        server.close()
        await server.wait_closed()
