"""The email provider through its protocol alone, with the application's side kept in memory:
mail in over a real SMTP session becomes a recorded message in its thread, and delivering the
reply (to a real relay) asks the application for nothing and writes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiosmtplib

from channels.adapter import Recorded
from channels.messages import InboundMessage
from conftest import free_port
from fakes.mail import compose, running_relay
from inbox.provider import PROVIDER, Inbox
from inbox.settings import EmailSettings, SmtpSettings


class Application:
    """`Services` and `MailDirectory` in memory, noting every call that would write."""

    def __init__(self, smtp_port: int) -> None:
        self.smtp_port = smtp_port
        self.inboxes: dict[str, Inbox] = {}
        self.threads: dict[tuple[str, str], str] = {}
        self.recorded: list[InboundMessage] = []
        self.writes: list[tuple[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def record(self, message: InboundMessage,
                     extra: Mapping[str, Any] | None = None) -> Recorded:
        self.recorded.append(message)
        self.writes.append(("record", message.event_id))
        return Recorded(f"turn_{len(self.recorded)}")

    async def command(self, message: InboundMessage, command: str, args: str = "", *,
                      invoked_as: str = "/") -> str:
        raise AssertionError("email has no chat commands")

    async def get_cursor(self, account: str, name: str) -> str | None:
        return None

    async def set_cursor(self, account: str, name: str, value: str) -> None:
        self.writes.append(("cursor", value))

    def note_rejected(self, account: str, reason: str) -> None:
        self.writes.append(("rejected", reason))

    def note_error(self, account: str, error: str | None) -> None:
        self.writes.append(("error", error))

    def publish(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))

    def listen_address(self, name: str) -> tuple[str, int] | None:
        return ("127.0.0.1", self.smtp_port) if name == "smtp" else None

    async def active_inbox(self, address: str, accounts: Iterable[str]) -> Inbox | None:
        inbox = self.inboxes.get(address)
        return inbox if inbox is not None and inbox.account in set(accounts) else None

    async def all_inbox_addresses(self) -> set[str]:
        return set(self.inboxes)

    async def declare_inbox(self, address: str, agent: str, account: str) -> Inbox | None:
        self.writes.append(("inbox", address))
        return self.inboxes.setdefault(address, Inbox(address, agent, account))

    async def agent_inbox(self, agent: str, account: str) -> Inbox | None:
        return next((i for i in self.inboxes.values()
                     if i.agent == agent and i.account == account), None)

    async def thread_root(self, account: str, message_ids: Iterable[str]) -> str | None:
        return next((self.threads[(account, m)] for m in message_ids
                     if (account, m) in self.threads), None)

    async def remember_thread(self, account: str, message_id: str, root: str) -> None:
        self.writes.append(("thread", message_id))
        self.threads.setdefault((account, message_id), root)


async def test_mail_in_is_a_threaded_message_and_the_reply_writes_nothing() -> None:
    app = Application(free_port())
    with running_relay() as (relay, relay_port):
        settings = EmailSettings(provider="email", domain="agents.test", relay_host="127.0.0.1",
                                 relay_port=relay_port, inboxes={"help": "triager"})
        adapter = PROVIDER.open("mail", settings, app)
        await adapter.start()
        assert PROVIDER.listen is not None
        listener = PROVIDER.listen({"mail": adapter}, SmtpSettings(), app)
        await listener.start()
        try:
            first_id, raw = compose("alice@example.com", "help@agents.test", subject="Printer")
            await aiosmtplib.send(raw, sender="alice@example.com",
                                  recipients=["help@agents.test"], hostname="127.0.0.1",
                                  port=app.smtp_port)
            [message] = app.recorded
            assert (message.provider, message.account, message.conversation, message.thread,
                    message.for_agent) == ("email", "mail", "help@agents.test", first_id,
                                           "triager")
            assert app.events[0][0] == "email.received"

            reply = adapter.reply_to(message, "On it.")
            assert (reply.thread, reply.reply_to) == (first_id, first_id)
            before = list(app.writes)
            receipt = await adapter.deliver(reply)
            assert app.writes == before  # delivering wrote nothing, asked for nothing
            [sent] = relay.messages
            assert sent["Message-ID"] == receipt.provider_message_id
            assert sent["In-Reply-To"] == first_id and sent["To"] == "alice@example.com"
            # remembered when the mail arrived: a reply to our answer finds the thread
            assert await app.thread_root("mail", [receipt.provider_message_id]) == first_id
        finally:
            await listener.stop()
            await adapter.stop()
