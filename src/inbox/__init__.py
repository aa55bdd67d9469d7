"""Email building blocks: parse what arrives, check who sent it, serve SMTP, send replies."""

from inbox.auth import (
    AUTH_MODES,
    aligned,
    allow_sender,
    check_sender,
    reply_address,
)
from inbox.automatic import auto_reply_reason
from inbox.dns import DnsFunc, txt_lookup
from inbox.errors import KeyUnavailable, MalformedEmail, SenderCheckDeferred
from inbox.outbound import compose_reply, reply_subject, send_via_relay, write_to_maildir
from inbox.parse import (
    Attachment,
    ParsedEmail,
    parse_email,
    to_inbound,
)
from inbox.smtp import InboxHandler, SessionLimits, start_smtp_server

__all__ = [
    "AUTH_MODES",
    "Attachment",
    "DnsFunc",
    "InboxHandler",
    "KeyUnavailable",
    "MalformedEmail",
    "ParsedEmail",
    "SenderCheckDeferred",
    "SessionLimits",
    "aligned",
    "allow_sender",
    "auto_reply_reason",
    "check_sender",
    "compose_reply",
    "parse_email",
    "reply_address",
    "reply_subject",
    "send_via_relay",
    "start_smtp_server",
    "to_inbound",
    "txt_lookup",
    "write_to_maildir",
]
