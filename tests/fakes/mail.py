"""Email as the tests send and receive it: a mail client's messages, `serve`'s SMTP port, and a
relay (a second aiosmtpd) that captures what Switchboard sends back."""

from __future__ import annotations

import email
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from conftest import OPERATOR, Server, free_port


class Relay:
    """The outbound relay: keeps every message and its envelope recipients; refuses `bounce@…`
    the way a real MTA does."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.startswith("bounce@"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.content,  # type: ignore[arg-type]
                                                      policy=policy.default))  # type: ignore[arg-type]
        return "250 2.0.0 queued"

    def wait(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.time() + timeout
        while len(self.messages) < count and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"the relay got {len(self.messages)} of {count}"
        return self.messages


@contextmanager
def running_relay() -> Iterator[tuple[Relay, int]]:
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def provision(server: Server, agent: str = "triager", **body: str) -> str:
    response = server.api("POST", f"/api/agents/{agent}/inbox", token=OPERATOR, json=body)
    assert response.status_code == 201, response.text
    return response.json()["email_address"]


def compose(sender: str, to: str, body: str = "Please restart the nightly job.", *,
            subject: str = "Nightly job", message_id: str | None = None,
            headers: dict[str, str] | None = None, html: str | None = None) -> tuple[str, bytes]:
    """A message as a mail client writes it; returns its Message-ID and bytes."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain=sender.rpartition("@")[2])
    for name, value in (headers or {}).items():
        msg[name] = value
    if html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(body)
    return str(msg["Message-ID"]), msg.as_bytes(policy=policy.SMTP)  # CRLF, as on the wire


def send(server: Server, sender: str, to: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.sendmail(sender, [to], raw)


def turn_of(server: Server, inbox: str, message_id: str,
            until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The turn of one message to one inbox, once it is settled (or `until` holds)."""
    deadline = time.time() + 10
    while not (found := server.turns(q=f"{inbox}:{message_id}")):
        assert time.time() < deadline, f"no turn for {message_id} to {inbox}"
        time.sleep(0.05)
    return server.wait_turn(found[0]["id"], until)
