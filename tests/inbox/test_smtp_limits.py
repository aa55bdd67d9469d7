"""What many, slow or stalled SMTP sessions may hold: a cap on connections, a budget for the DATA
all sessions hold together, deadlines no trickle pushes back, and lines as long as Outlook's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from inbox.parse import parse_email
from inbox.smtp import InboxHandler, SessionLimits, start_smtp_server

INBOX = "agent@inbox.test"


class Inbox:
    def __init__(self) -> None:
        self.delivered: list[bytes] = []

    async def accepts(self, address: str) -> bool:
        return address == INBOX

    async def deliver(self, sender: str, recipients: list[str], raw: bytes) -> None:
        parse_email(raw)
        self.delivered.append(raw)


class Client:
    """An SMTP client on raw streams, so a test can stall mid-DATA or trickle lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> tuple[Client, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        return client, await client.reply()

    async def reply(self) -> str:
        """One (possibly multiline) reply as text; "" once the server has closed."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                return "\n".join(lines)
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return "\n".join(lines)

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def start_data(self) -> None:
        for line, code in (("EHLO client.test", "250"), ("MAIL FROM:<bob@acme.com>", "250"),
                           (f"RCPT TO:<{INBOX}>", "250"), ("DATA", "354")):
            answer = await self.command(line)
            assert answer.startswith(code), (line, answer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed(self) -> bool:
        """Whether the server has closed the connection (nothing more comes)."""
        return await asyncio.wait_for(self.reader.read(), 10) == b""

    def close(self) -> None:
        self.writer.close()


def message(body_bytes: int, tag: str = "m") -> bytes:
    head = (f"From: bob@acme.com\r\nTo: {INBOX}\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@acme.com>\r\n\r\n").encode()
    line = b"x" * 98 + b"\r\n"
    return head + line * (body_bytes // len(line))


@pytest_asyncio.fixture
async def serve_smtp() -> AsyncIterator:
    """Start our SMTP server with the given limits; yields (inbox, port) per call."""
    servers = []

    async def start(max_message_bytes: int = 200_000, **limits: float) -> tuple[Inbox, int]:
        inbox = Inbox()
        handler = InboxHandler(accepts=inbox.accepts, deliver=inbox.deliver,
                               max_message_bytes=max_message_bytes)
        server = await start_smtp_server(handler, "127.0.0.1", 0, max_message_bytes,
                                         hostname="mx.inbox.test",
                                         limits=SessionLimits(**limits))  # type: ignore[arg-type]
        servers.append(server)
        return inbox, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.asyncio
async def test_connections_over_max_sessions_hear_421_until_one_leaves(serve_smtp) -> None:
    _, port = await serve_smtp(max_sessions=2)
    first, hello = await Client.connect(port)
    second, _ = await Client.connect(port)
    assert hello.startswith("220 ")
    third, refused = await Client.connect(port)
    assert refused.startswith("421 4.7.0 ")
    assert await third.closed()
    assert (await first.command("QUIT")).startswith("221")
    first.close()
    for _ in range(100):  # the server notices the QUIT's close a moment later
        fourth, hello = await Client.connect(port)
        if hello.startswith("220"):
            break
        fourth.close()
        await asyncio.sleep(0.02)
    assert hello.startswith("220 ")
    for client in (second, fourth):
        client.close()


@pytest.mark.asyncio
async def test_data_over_the_inflight_budget_gets_452_and_the_budget_comes_back(serve_smtp
                                                                                ) -> None:
    inbox, port = await serve_smtp(max_inflight_bytes=100_000)
    stalled, _ = await Client.connect(port)
    await stalled.start_data()
    await stalled.send(message(60_000, "stalled"))  # and no final dot yet
    late, _ = await Client.connect(port)
    await late.start_data()
    await late.send(message(60_000, "late") + b".\r\n")
    assert (await late.reply()).startswith("452 4.3.1 ")
    # the stalled message is still whole, and once it is answered its bytes are free again
    await stalled.send(b".\r\n")
    assert (await stalled.reply()).startswith("250")
    assert (await late.command("RSET")).startswith("250")
    for line in ("MAIL FROM:<bob@acme.com>", f"RCPT TO:<{INBOX}>", "DATA"):
        await late.command(line)
    await late.send(message(60_000, "late") + b".\r\n")
    assert (await late.reply()).startswith("250")
    assert [parse_email(raw).subject for raw in inbox.delivered] == ["stalled", "late"]
    assert len(inbox.delivered[0]) > 59_000
    stalled.close()
    late.close()


@pytest.mark.asyncio
async def test_a_data_trickled_line_by_line_ends_at_data_timeout(serve_smtp) -> None:
    inbox, port = await serve_smtp(idle_timeout=0.6, data_timeout=1.5)
    client, _ = await Client.connect(port)
    await client.start_data()
    started = time.monotonic()
    answer = asyncio.create_task(client.reply())
    while not answer.done() and time.monotonic() - started < 5:
        try:
            await client.send(b"a line, slowly\r\n")  # each well within the idle timeout
        except ConnectionError:  # closed: the answer is already in the reader
            break
        await asyncio.sleep(0.2)
    answer = await answer
    assert answer.startswith("421 4.4.2 "), answer
    assert 1.4 < time.monotonic() - started < 4
    assert await client.closed()
    assert inbox.delivered == []


@pytest.mark.asyncio
async def test_noop_every_so_often_does_not_keep_a_session_forever(serve_smtp) -> None:
    _, port = await serve_smtp(idle_timeout=0.6, session_timeout=1.5)
    client, _ = await Client.connect(port)
    started = time.monotonic()
    answer = "250"
    while answer.startswith("250") and time.monotonic() - started < 5:
        await asyncio.sleep(0.2)
        answer = await client.command("NOOP")
    assert answer.startswith("421 4.4.2 "), answer
    assert 1.4 < time.monotonic() - started < 4


@pytest.mark.asyncio
async def test_silence_in_the_middle_of_data_ends_the_session(serve_smtp) -> None:
    inbox, port = await serve_smtp(idle_timeout=0.5)
    client, _ = await Client.connect(port)
    await client.start_data()
    await client.send(message(10_000))
    started = time.monotonic()
    assert await client.closed()
    assert time.monotonic() - started < 3
    assert inbox.delivered == []


@pytest.mark.asyncio
async def test_long_lines_are_taken_up_to_max_line_bytes(serve_smtp) -> None:
    inbox, port = await serve_smtp(max_line_bytes=8192)
    client, _ = await Client.connect(port)
    await client.start_data()
    long_line = b"<p>" + b"word " * 1000 + b"</p>\r\n"  # 5,009 bytes, as Outlook writes HTML
    await client.send(message(0, "long") + long_line + b".\r\n")
    assert (await client.reply()).startswith("250")
    assert long_line in inbox.delivered[0]
    # longer than the limit: read to the end, refused in words, and the session goes on;
    # a lone dot that ends the over-long line is not the end of the data
    for line in ("MAIL FROM:<bob@acme.com>", f"RCPT TO:<{INBOX}>", "DATA"):
        await client.command(line)
    await client.send(message(0, "too-long") + b"y" * 20_000 + b".\r\n" + b".\r\n")
    assert (await client.reply()) == ("500 5.5.2 Line too long; this server takes lines of up "
                                      "to 8192 bytes")
    assert (await client.command("NOOP")).startswith("250")
    assert len(inbox.delivered) == 1
    client.close()


@pytest.mark.asyncio
async def test_dot_stuffed_lines_are_unstuffed_and_too_much_is_552(serve_smtp) -> None:
    inbox, port = await serve_smtp(max_message_bytes=5_000)
    client, _ = await Client.connect(port)
    await client.start_data()
    await client.send(message(0, "dots") + b"..leading dot\r\n.\r\n")
    assert (await client.reply()).startswith("250")
    assert inbox.delivered[0].endswith(b"\r\n.leading dot\r\n")
    for line in ("MAIL FROM:<bob@acme.com>", f"RCPT TO:<{INBOX}>", "DATA"):
        await client.command(line)
    await client.send(message(8_000, "big") + b".\r\n")
    assert (await client.reply()).startswith("552 5.3.4 ")
    client.close()
