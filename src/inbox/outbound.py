"""Replies as threaded emails, sent through an SMTP relay or dropped into a Maildir."""

from __future__ import annotations

import hashlib
import logging
import mailbox
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

import aiosmtplib

from channels.errors import DeliveryError

log = logging.getLogger(__name__)

# "Re:" and its common translations; a subject already carrying one is not prefixed again.
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|vs|rif|odp)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_MAX_REFERENCES = 20  # keep the References header short; the first and latest ids matter most
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def compose_reply(
    *,
    inbox_address: str,
    to: str,
    subject: str,
    message_id: str,
    reply_text: str,
    domain: str,
    references: Sequence[str] = (),
    inbox_name: str = "",
    now: datetime | None = None,
    own_id: str | None = None,
) -> EmailMessage:
    """A reply from the inbox to `to` (the authenticated sender, see `inbox.auth.reply_address`),
    in the original's thread.

    The original is given as plain stored values (`message_id`, `references`, `subject`),
    ids with their angle brackets; what they decoded to is cleaned before it becomes a header
    (an encoded-word can hold a line feed). `Auto-Submitted: auto-replied` keeps robots quiet.
    `own_id` is the reply's Message-ID (`reply_message_id`), a fresh one when not given.
    A ValueError means this reply cannot be built at all.
    """
    msg = EmailMessage()
    name = header_text(inbox_name)
    msg["From"] = formataddr((name, inbox_address)) if name else inbox_address
    msg["To"] = to
    msg["Subject"] = reply_subject(subject)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = own_id or make_msgid(domain=domain)
    message_id = clean_message_id(message_id)
    thread = reply_references(references, message_id)
    if message_id:
        msg["In-Reply-To"] = message_id
    if thread:
        msg["References"] = " ".join(thread)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"  # Exchange: no out-of-office answers to us
    msg.set_content(reply_text)
    return msg


def compose_new(*, inbox_address: str, to: str, subject: str, text: str, message_id: str,
                inbox_name: str = "", now: datetime | None = None) -> EmailMessage:
    """A new mail from the inbox (an agent starting a conversation), with the Message-ID
    chosen when it was asked for, so the reply's In-Reply-To finds its thread. A ValueError
    means it cannot be built at all."""
    msg = EmailMessage()
    name = header_text(inbox_name)
    msg["From"] = formataddr((name, inbox_address)) if name else inbox_address
    msg["To"] = to
    msg["Subject"] = header_text(subject) or "(no subject)"
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: written by a program, not a reply
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text)
    return msg


def reply_message_id(inbox_address: str, message_id: str, domain: str) -> str:
    """The Message-ID our reply to `message_id` at this inbox will have: known (and so
    remembered in its thread) when the mail arrives, long before the reply is written, and the
    same on every attempt to send it, so a receiving server sees one message, not several."""
    digest = hashlib.sha256(f"{inbox_address}\0{message_id}".encode()).hexdigest()[:32]
    return f"<re.{digest}@{domain}>"


def reply_subject(subject: str) -> str:
    """`Re: <subject>`, without stacking a second prefix."""
    subject = header_text(subject)
    if _REPLY_PREFIX.match(subject):
        return subject
    return f"Re: {subject}" if subject else "Re: (no subject)"


def reply_references(references: Sequence[str], message_id: str) -> list[str]:
    """The original's References plus its Message-ID, without repeats, trimmed in the middle."""
    thread: list[str] = []
    for ref in map(clean_message_id, [*references, message_id]):
        if ref and ref not in thread:
            thread.append(ref)
    if len(thread) > _MAX_REFERENCES:
        thread = [thread[0], *thread[-(_MAX_REFERENCES - 1):]]
    return thread


def header_text(text: str) -> str:
    """Text fit for one header line: whitespace runs (line feeds too) become one space, other
    control characters go."""
    return _CONTROLS.sub("", " ".join(text.split()))


def clean_message_id(value: str) -> str:
    """`<id>` with no whitespace or control characters in it, or "" when nothing usable is left
    (a bare `id` gets its brackets)."""
    text = _CONTROLS.sub("", "".join(value.split()))
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text or "<" in text or ">" in text:
        return ""
    return f"<{text}>"


async def send_via_relay(
    msg: EmailMessage,
    host: str,
    port: int,
    *,
    starttls: bool,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 30.0,
    implicit_tls: bool = False,
    local_hostname: str | None = None,
) -> str:
    """Hand the message to an SMTP relay; returns its Message-ID once the relay accepted it.

    5xx answers raise a permanent `DeliveryError` in the relay's own words; 4xx answers,
    refused connections and timeouts a temporary one.
    """
    where = f"relay {host}:{port}"
    try:
        refused, response = await aiosmtplib.send(
            msg,
            hostname=host,
            port=port,
            username=username,
            password=password,
            start_tls=False if implicit_tls else starttls,
            use_tls=implicit_tls,
            timeout=timeout,
            local_hostname=local_hostname,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0]
        permanent = all(r.code >= 500 for r in exc.recipients)
        raise DeliveryError(f"{first.code} {first.message}", permanent=permanent) from exc
    except aiosmtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.code < 600
        raise DeliveryError(f"{exc.code} {exc.message}", permanent=permanent) from exc
    except aiosmtplib.SMTPTimeoutError as exc:
        raise DeliveryError(f"{where} timed out: {exc}", permanent=False) from exc
    except aiosmtplib.SMTPNotSupported as exc:
        raise DeliveryError(f"{where} cannot do what is configured: {exc}", permanent=True) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"could not reach {where}: {exc}", permanent=False) from exc
    except ValueError as exc:  # no recipients, or options that contradict each other
        raise DeliveryError(f"the reply cannot be sent: {exc}", permanent=True) from exc
    for address, answer in refused.items():
        log.warning("%s refused %s: %s", where, address, answer)
    log.info("%s accepted %s: %s", where, msg["Message-ID"], response)
    return str(msg["Message-ID"])


def write_to_maildir(msg: EmailMessage | bytes, path: str | os.PathLike[str]) -> str:
    """Drop the message into `path`/new (created if missing); returns the file it landed in."""
    box = mailbox.Maildir(os.fspath(path), create=True)
    key = box.add(msg)
    return os.path.join(os.fspath(path), "new", key)
