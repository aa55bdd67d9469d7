"""The errors of the email package, in one place, on the root `SwitchboardError`.

How the SMTP server answers each (554, 451) is decided in `inbox/smtp.py`, not here.
"""

from __future__ import annotations

from channels.errors import SwitchboardError


class MalformedEmail(SwitchboardError):
    """Bytes that cannot be read as an email at all (empty, no header fields, unparsable)."""


class SenderCheckDeferred(SwitchboardError):
    """The sender cannot be checked now (a DKIM key did not come: DNS timeout, SERVFAIL); the
    sending MTA should retry, as a later lookup may well succeed."""


class KeyUnavailable(SwitchboardError):
    """A DKIM key lookup got no answer now (timeout, SERVFAIL, no resolver): retry later."""


class MailboxError(SwitchboardError):
    """An IMAP mailbox cannot be read or written now. `stage` says where it failed: `dns`,
    `connect`, `tls`, `token` (oauth2_token_command), `login`, `folder`, `connection` (lost
    or timed out), `inbox` (the address is no live inbox)."""

    def __init__(self, stage: str, words: str) -> None:
        super().__init__(words)
        self.stage = stage


__all__ = ["KeyUnavailable", "MailboxError", "MalformedEmail", "SenderCheckDeferred"]
