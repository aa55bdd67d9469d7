"""Raw RFC 5322 bytes in, a `ParsedEmail` (and an `InboundMessage`) out; nothing else may raise.

Only bytes that are no email at all are refused (`MalformedEmail`). A message whose From names
no one (a bounce's `MAILER-DAEMON <>`) is parsed, and `from_problem` says why it cannot be
answered: refusing it would make the sending MTA bounce the bounce.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import html_text

from channels.messages import InboundMessage
from inbox.automatic import LOOP_HEADERS
from inbox.decoding import POLICY, decode_text_part, header_text
from inbox.errors import MalformedEmail
from inbox.quotes import strip_quoted

log = logging.getLogger(__name__)
T = TypeVar("T")

_MSG_ID = re.compile(r"<[^<>\s]+>")
# Parts that make a message a report (RFC 6522) even when not wrapped in multipart/report.
_REPORT_PARTS = {
    "message/delivery-status": "delivery-status",
    "message/global-delivery-status": "delivery-status",
    "message/feedback-report": "feedback-report",
    "message/disposition-notification": "disposition-notification",
}



@dataclass(frozen=True)
class Attachment:
    """What is known about an attachment without keeping its content."""

    name: str
    content_type: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "content_type": self.content_type, "size": self.size}


@dataclass(frozen=True)
class ParsedEmail:
    """One received email reduced to what routing, threading, loop and sender checks need.

    Message ids keep their angle brackets (`<abc@example.com>`), as they appear in headers.
    `text` is the whole body as text; `visible_text` is what the sender wrote this time.
    `from_problem` says why From names no one to answer ("" when it names one: `from_addr`);
    `report_type` is a report's kind ("delivery-status", "feedback-report", …) or "".
    Every string is storable: no lone surrogates, no NUL.
    """

    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    subject: str
    from_addr: str
    from_name: str
    reply_to: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    text: str
    visible_text: str
    text_from_html: bool = False
    attachments: tuple[Attachment, ...] = ()
    loop_headers: dict[str, str] = field(default_factory=dict, compare=False)
    authentication_results: tuple[str, ...] = ()
    from_problem: str = ""
    report_type: str = ""

    @property
    def from_domain(self) -> str:
        return self.from_addr.rpartition("@")[2]


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse raw message bytes; bytes that are no email become `MalformedEmail` saying why."""
    if not isinstance(raw, (bytes, bytearray)):
        raise MalformedEmail(f"expected the message as bytes, got {type(raw).__name__}")
    if not raw.strip():
        raise MalformedEmail("the message is empty")
    try:
        msg = email.message_from_bytes(bytes(raw), policy=POLICY)
        if not msg.keys():
            raise MalformedEmail("the message has no header fields, so it is not an email")
        return _parse(msg)  # type: ignore[arg-type]
    except MalformedEmail:
        raise
    except Exception as exc:  # the stdlib parser has many ways to fail on hostile input
        log.warning("unreadable email (%d bytes): %r", len(raw), exc)
        raise MalformedEmail(f"the message cannot be read as an email: {exc!r}") from exc


def _parse(msg: EmailMessage) -> ParsedEmail:
    from_addr, from_name, from_problem = _sender(msg)
    text, from_html = _body_text(msg)
    subject = _lenient(lambda: header_text(" ".join(str(msg.get("subject", "")).split())), "",
                       "Subject")
    reply_to = _lenient(lambda: _addresses(msg, "reply-to"), [], "Reply-To")
    raw_headers = [(name.lower(), header_text(" ".join(value.split())))
                   for name, value in msg.raw_items()]
    loop_headers: dict[str, str] = {}
    for name, value in raw_headers:
        if name in LOOP_HEADERS:
            loop_headers.setdefault(name, value)
    return ParsedEmail(
        message_id=_lenient(lambda: _first_msg_id(msg.get("message-id")), "", "Message-ID"),
        in_reply_to=_lenient(lambda: _first_msg_id(msg.get("in-reply-to")), "", "In-Reply-To"),
        references=tuple(_MSG_ID.findall(" ".join(v for n, v in raw_headers if n == "references"))),
        subject=subject,
        from_addr=from_addr,
        from_name=from_name,
        reply_to=reply_to[0] if reply_to else None,
        to=tuple(_lenient(lambda: _addresses(msg, "to"), [], "To")),
        cc=tuple(_lenient(lambda: _addresses(msg, "cc"), [], "Cc")),
        date=_lenient(lambda: _date(msg), None, "Date"),
        text=text,
        visible_text=strip_quoted(text, subject=subject),
        text_from_html=from_html,
        attachments=tuple(_lenient(lambda: list(_attachments(msg)), [], "attachments")),
        loop_headers=loop_headers,
        authentication_results=tuple(v for n, v in raw_headers if n == "authentication-results"),
        from_problem=from_problem,
        report_type=_lenient(lambda: _report_type(msg), "", "report type"),
    )


def _lenient(read: Callable[[], T], default: T, what: str) -> T:
    """Optional fields: a stdlib parser failure on one of them must not cost the whole message."""
    try:
        return read()
    except Exception as exc:  # IndexError, HeaderParseError, ... from email._header_value_parser
        log.info("ignoring an unreadable %s: %r", what, exc)
        return default


def _sender(msg: EmailMessage) -> tuple[str, str, str]:
    """The one author address and name, or ("", name, why there is no one to answer).

    Several From headers or authors are not answered either: a spoofing trick.
    """
    never, ambiguous = "so there is no one to answer", "an ambiguous author is never answered"
    try:
        headers = msg.get_all("from", [])
    except Exception as exc:  # the stdlib address parser fails in many ways on hostile input
        log.info("unreadable From header: %r", exc)
        return "", "", f"the From header cannot be read, {never}"
    if not headers:
        return "", "", f"the message has no From header, {never}"
    if len(headers) > 1:
        return "", "", f"the message has several From headers; {ambiguous}"
    shown = header_text(" ".join(next(v for k, v in msg.raw_items() if k.lower() == "from")
                                 .split()))[:200]
    addresses = [a for a in getattr(headers[0], "addresses", ()) if a.addr_spec]
    if len(addresses) > 1:
        return "", "", f"From {shown!r} names several authors; {ambiguous}"
    named = addresses[0] if addresses else None
    if named is None or not named.username or not named.domain:
        name = header_text(named.display_name) if named else ""
        return "", name, f"From {shown!r} holds no usable address, {never}"
    return header_text(named.addr_spec).lower(), header_text(named.display_name or ""), ""


def _addresses(msg: EmailMessage, name: str) -> list[str]:
    found: list[str] = []
    for header in msg.get_all(name, []):
        for address in getattr(header, "addresses", ()):
            if address.username and address.domain:
                found.append(header_text(address.addr_spec).lower())
    return found


def _first_msg_id(value: object) -> str:
    if value is None:
        return ""
    text = header_text(str(value))
    ids = _MSG_ID.findall(text)
    return ids[0] if ids else text.strip()


def _date(msg: EmailMessage) -> datetime | None:
    value = msg.get("date")
    if value is None:
        return None
    try:
        return parsedate_to_datetime(str(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _body_text(msg: EmailMessage) -> tuple[str, bool]:
    """The text/plain body, else the HTML body converted to text (never rendered).

    A blank text/plain beside real HTML (some mailers send an empty alternative) is no body.
    """
    for kind in ("plain", "html"):
        body = msg.get_body(preferencelist=(kind,))
        if body is None:
            continue
        text = decode_text_part(body)
        text = html_to_text(text) if kind == "html" else text.replace("\r\n", "\n").strip("\n")
        if text.strip():
            return text, kind == "html"
    return "", False


def html_to_text(html: str) -> str:
    """Readable text from HTML, link targets kept; scripts, styles and images dropped, unrendered.

    html-text (lxml) stays linear on hostile nesting, where markdown converters blow up.
    """
    tree = html_text.parse_html(html)
    for anchor in tree.iter("a"):
        href = (anchor.get("href") or "").strip()
        if href.lower().startswith(("http://", "https://")) and href not in anchor.text_content():
            anchor.tail = f" ({href})" + (anchor.tail or "")
    return html_text.extract_text(tree).strip("\n")


def _attachments(msg: EmailMessage) -> Iterator[Attachment]:
    bodies = {id(msg.get_body(preferencelist=(kind,))) for kind in ("plain", "html")}
    for part in _leaves(msg):
        if id(part) in bodies:
            continue
        yield Attachment(
            name=header_text(part.get_filename() or ""),
            content_type=header_text(part.get_content_type()),
            size=_size(part),
        )


@dataclass(frozen=True)
class AttachedFile:
    """An attachment or inline image with its decoded bytes (`content_id` for `cid:` ones)."""

    name: str
    content_type: str
    content: bytes
    content_id: str = ""


def attached_files(raw: bytes) -> list[AttachedFile]:
    """The decoded attachments and inline images of a message (every leaf that is not its
    text or HTML body), each named: an unnamed inline image gets `image-N.<subtype>`."""
    try:
        msg = email.message_from_bytes(bytes(raw), policy=POLICY)
        bodies = {id(msg.get_body(preferencelist=(kind,))) for kind in ("plain", "html")}
        found: list[AttachedFile] = []
        for part in _leaves(msg):
            if id(part) in bodies or part.get_content_maintype() == "multipart":
                continue
            content = part.get_payload(decode=True)
            if not isinstance(content, bytes):
                content = part.as_bytes() if part.get_content_type() == "message/rfc822" else b""
            kind = header_text(part.get_content_type())
            cid = header_text(str(part.get("content-id", ""))).strip().strip("<>")
            name = header_text(part.get_filename() or "")
            if not name:
                name = f"{'image' if kind.startswith('image/') else 'part'}-{len(found) + 1}" \
                    f".{part.get_content_subtype() or 'bin'}"
            found.append(AttachedFile(name, kind, content, cid))
        return found
    except Exception as exc:  # hostile MIME: the text still reaches the agent
        log.info("ignoring unreadable attachments: %r", exc)
        return []


def _report_type(msg: EmailMessage) -> str:
    """The kind of a report (RFC 6522 multipart/report, or one of its parts sent bare)."""
    if msg.get_content_type() == "multipart/report":
        return header_text(str(msg.get_param("report-type", "unknown"))).lower()
    for part in _leaves(msg):
        if kind := _REPORT_PARTS.get(part.get_content_type()):
            return kind
    return ""


def _leaves(part: Message) -> Iterator[Message]:
    """Non-multipart parts; an attached message/rfc822 counts as one leaf."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for sub in part.get_payload():  # type: ignore[union-attr]
            yield from _leaves(sub)
    else:
        yield part


def _size(part: Message) -> int:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return len(payload)
    inner = part.get_payload()
    if isinstance(inner, list):
        return sum(len(m.as_bytes()) for m in inner)
    return len(str(inner).encode("utf-8", "surrogateescape"))


def to_inbound(
    parsed: ParsedEmail,
    *,
    account: str,
    inbox_address: str,
    raw: bytes,
    ignore_reason: str | None = None,
) -> InboundMessage:
    """The pipeline's view of an email: a direct message to the inbox from its author."""
    digest = hashlib.sha256(raw).hexdigest()
    return InboundMessage(
        provider="email",
        account=account,
        event_id=parsed.message_id or f"sha256:{digest}",
        conversation=inbox_address.lower(),
        kind="dm",
        sender=parsed.from_addr,
        text=parsed.visible_text,
        message_id=parsed.message_id,
        thread=None,
        mentioned=True,
        sender_name=parsed.from_name,
        ignore_reason=ignore_reason,
        raw={"sha256": digest, "size": len(raw)},
        extra={
            "subject": parsed.subject,
            "in_reply_to": parsed.in_reply_to,
            "references": list(parsed.references),
            "attachments": [a.as_dict() for a in parsed.attachments],
            "reply_to": parsed.reply_to,
            "full_text": parsed.text,
        },
    )
