"""Email threading now that delivering a reply writes nothing: the reply's Message-ID is known
(and remembered in its thread) when the mail arrives, and stays the same on every attempt."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from conftest import free_port
from fakes.mail import Relay, compose, provision, send, turn_of


class BusyRelay(Relay):
    """A relay that answers the first DATA `451` (greylisting, a full queue), as real ones do;
    it keeps the Message-ID of every attempt."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        header = next((line for line in content.splitlines()
                       if line.lower().startswith(b"message-id:")), b"")
        self.attempts.append(header.partition(b":")[2].strip().decode())
        if len(self.attempts) == 1:
            return "451 4.7.1 Greylisted, please try again later"
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def busy_relay() -> Iterator[tuple[BusyRelay, int]]:
    relay, port = BusyRelay(), free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield relay, port
    finally:
        controller.stop()


def config(relay_port: int) -> str:
    return f"""
agents:
  triager: {{handler: echo}}
accounts:
  mail: {{provider: email, domain: agents.test, relay_host: 127.0.0.1, relay_port: {relay_port}}}
bindings:
  - {{name: triage-mail, agent: triager, account: mail, session_scope: thread}}
delivery: {{backoff: 0.05, max_backoff: 0.2}}
"""


def test_a_retried_reply_keeps_its_message_id(serve):
    with busy_relay() as (relay, port):
        server = serve(config(port))
        inbox = provision(server, account="mail")
        first_id, raw = compose("alice@example.com", inbox, subject="Printer")
        send(server, "alice@example.com", inbox, raw)
        answer = relay.wait(1)[0]
        turn = turn_of(server, inbox, first_id)
    assert turn["status"] == "delivered" and turn["delivery_attempts"] == 2
    ours = answer["Message-ID"]
    assert relay.attempts == [ours, ours]  # one message to the world, however often it is sent
    assert turn["provider_message_id"] == ours and ours.endswith("@agents.test>")


def test_a_reply_naming_only_our_answer_continues_its_thread(serve):
    with busy_relay() as (relay, port):
        relay.attempts.append("(no greylisting in this test)")
        server = serve(config(port))
        inbox = provision(server, account="mail")
        first_id, raw = compose("alice@example.com", inbox, subject="Printer")
        send(server, "alice@example.com", inbox, raw)
        ours = relay.wait(1)[0]["Message-ID"]
        # some clients keep In-Reply-To and drop References
        second_id, raw = compose("alice@example.com", inbox, "Still broken.",
                                 subject="Re: Printer", headers={"In-Reply-To": ours})
        send(server, "alice@example.com", inbox, raw)
        follow_up = relay.wait(2)[1]
        first, second = turn_of(server, inbox, first_id), turn_of(server, inbox, second_id)
    assert second["thread"] == first_id and second["session_id"] == first["session_id"]
    assert follow_up["In-Reply-To"] == second_id
