"""Email as a provider: each mail to a provisioned inbox a turn, each reply a threaded mail.

One `EmailAdapter` (`inbox.adapter`) per email account turns accepted mail into turns and
delivers replies to the authenticated sender through the account's relay or into its maildir;
one `SmtpListener` (`inbox.listener`) is the SMTP server all of them share. Inboxes and threads
are kept by the application, reached through `MailDirectory`: nothing in `inbox` talks to a
database, and delivering a reply writes nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from channels.adapter import (
    AccountAdapter,
    AccountCommand,
    Capability,
    ConfigSection,
    Listener,
    Provider,
    Services,
)
from inbox.commands import test_mailbox
from inbox.settings import EmailSettings, SmtpSettings, capacity_issues


@dataclass(frozen=True)
class Inbox:
    """A live inbox address of an agent on one email account."""

    address: str
    agent: str
    account: str


@runtime_checkable
class MailDirectory(Protocol):
    """What the email provider needs kept beyond one mail, kept by the application: inboxes
    (provisioned by operators, declared in the config) and the thread each Message-ID is in."""

    async def active_inbox(self, address: str, accounts: Iterable[str]) -> Inbox | None:
        """The live (not revoked) inbox at `address` on one of `accounts`, or None."""
        ...

    async def all_inbox_addresses(self) -> set[str]:
        """Every address ever provisioned: mail from any of them is our own."""
        ...

    async def declare_inbox(self, address: str, agent: str, account: str) -> Inbox | None:
        """Provision an address the config declares, or find it already there; None when it
        was revoked (a revoked address stays revoked)."""
        ...

    async def agent_inbox(self, agent: str, account: str) -> Inbox | None:
        """The agent's first live inbox on the account (where its new mail comes from)."""
        ...

    async def thread_root(self, account: str, message_ids: Iterable[str]) -> str | None:
        """The root of the first of `message_ids` (in the order given) that is known."""
        ...

    async def remember_thread(self, account: str, message_id: str, root: str) -> None:
        """Map a Message-ID to its thread's root; the first mapping stays."""
        ...


def directory_of(services: Services) -> MailDirectory:
    """The application's `MailDirectory`: its services object offers it too."""
    if not isinstance(services, MailDirectory):
        raise TypeError("the email provider needs an application whose services are also a "
                        "MailDirectory (inboxes and mail threads)")
    return services


def _open(name: str, settings: EmailSettings, services: Services) -> AccountAdapter:
    from inbox.adapter import EmailAdapter

    return EmailAdapter(name, settings, services, directory_of(services))


def _listen(adapters: Mapping[str, Any], smtp: SmtpSettings | None,
            services: Services) -> Listener:
    from inbox.listener import SmtpListener

    # a mailbox read over IMAP gets its mail there, not through this SMTP server
    inboxes = {name: adapter for name, adapter in adapters.items()
               if adapter.settings.mode == "smtp"}
    return SmtpListener(inboxes, smtp or SmtpSettings(), services, directory_of(services))


PROVIDER = Provider(
    name="email",
    settings=EmailSettings,
    open=_open,
    capabilities=frozenset({Capability.THREADS, Capability.FILES}),
    description="Email: inboxes on a domain, one SMTP server for all of them; or an existing "
                "mailbox over IMAP",
    commands={"test": AccountCommand(
        test_mailbox, "Connect to the account's mailbox (mode: imap): its folder's size, the "
        "server's capabilities, or exactly what fails.")},
    command_group="inbox",
    section=ConfigSection("smtp", SmtpSettings, capacity_issues),
    listen=_listen,
)

__all__ = ["PROVIDER", "Inbox", "MailDirectory", "directory_of"]
