"""Email building blocks: parse what arrives, check who sent it, serve SMTP, send replies."""

from inbox.auth import AUTH_MODES, aligned, allow_sender, check_sender
from inbox.automatic import auto_reply_reason
from inbox.outbound import compose_reply, reply_subject, send_via_relay, write_to_maildir
from inbox.parse import (
    Attachment,
    MalformedEmail,
    ParsedEmail,
    parse_email,
    to_inbound,
)
from inbox.smtp import InboxHandler, start_smtp_server

__all__ = [
    "AUTH_MODES",
    "Attachment",
    "InboxHandler",
    "MalformedEmail",
    "ParsedEmail",
    "aligned",
    "allow_sender",
    "auto_reply_reason",
    "check_sender",
    "compose_reply",
    "parse_email",
    "reply_subject",
    "send_via_relay",
    "start_smtp_server",
    "to_inbound",
    "write_to_maildir",
]
