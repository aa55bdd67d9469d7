"""Parsing what arrives: bodies, charsets, quoted history, attachments, loops, hostile bytes."""

from __future__ import annotations

import random
import time
from email.message import EmailMessage

import pytest

from inbox.automatic import auto_reply_reason
from inbox.errors import MalformedEmail
from inbox.parse import parse_email, to_inbound
from inbox.quotes import strip_quoted

HEAD = (
    b"From: Bob Smith <Bob@Acme.com>\r\n"
    b"To: agent@inbox.test\r\n"
    b"Subject: Hello\r\n"
    b"Message-ID: <m1@acme.com>\r\n"
)


def plain_email(body: str = "Please restart the nightly job.", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Bob Smith <Bob@Acme.com>")
    msg["To"] = "Agent <Agent@Inbox.test>, other@acme.com"
    msg["Subject"] = headers.pop("Subject", "Nightly job")
    msg["Message-ID"] = "<m1@acme.com>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def test_plain_message_fields() -> None:
    raw = plain_email(
        Cc="Carol <carol@acme.com>",
        Reply_To="Team <team@acme.com>",
        In_Reply_To="<m0@inbox.test>",
        References="<root@acme.com> <m0@inbox.test>",
        Date="Mon, 03 Mar 2025 10:00:00 +0100",
    )
    parsed = parse_email(raw)
    assert parsed.from_addr == "bob@acme.com"
    assert parsed.from_name == "Bob Smith"
    assert parsed.from_domain == "acme.com"
    assert parsed.to == ("agent@inbox.test", "other@acme.com")
    assert parsed.cc == ("carol@acme.com",)
    assert parsed.reply_to == "team@acme.com"
    assert parsed.subject == "Nightly job"
    assert parsed.message_id == "<m1@acme.com>"
    assert parsed.in_reply_to == "<m0@inbox.test>"
    assert parsed.references == ("<root@acme.com>", "<m0@inbox.test>")
    assert parsed.date is not None and parsed.date.isoformat() == "2025-03-03T10:00:00+01:00"
    assert parsed.text == "Please restart the nightly job."
    assert parsed.visible_text == "Please restart the nightly job."
    assert parsed.attachments == ()


def test_html_only_message_becomes_text_without_scripts() -> None:
    raw = HEAD + (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p {color: red}</style><script>alert('x')</script></head>"
        b"<body><p>Hello <b>team</b>,</p><p>see <a href='https://acme.com/r'>the report</a>."
        b"<img src='https://tracker.example/pixel.png'></p></body></html>\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.text_from_html
    assert parsed.text == "Hello team,\n\nsee the report (https://acme.com/r)."
    for hidden in ("alert", "color: red", "tracker", "<p>"):
        assert hidden not in parsed.text


def test_iso_8859_1_body_is_decoded() -> None:
    raw = HEAD + (
        b"Content-Type: text/plain; charset=ISO-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xfc\xdfe aus M\xfcnchen \x93quoted\x94\r\n"
    )
    assert parse_email(raw).text == "Grüße aus München \u201cquoted\u201d"


def test_quoted_printable_latin1_and_unknown_charset() -> None:
    qp = HEAD + (
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me\r\n"
    )
    assert parse_email(qp).text == "Café crème"
    unknown = HEAD + b"Content-Type: text/plain; charset=x-bogus\r\n\r\n" + "Zürich".encode()
    assert parse_email(unknown).text == "Zürich"


def test_encoded_word_subject_and_name() -> None:
    raw = (
        b"From: =?utf-8?B?SsO8cmdlbiBNw7xsbGVy?= <jm@acme.de>\r\n"
        b"To: agent@inbox.test\r\n"
        b"Subject: =?iso-8859-1?Q?Caf=E9_order?= =?utf-8?B?4pyU?=\r\n\r\nhi\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.subject == "Café order✔"
    assert parsed.from_name == "Jürgen Müller"
    assert parsed.from_addr == "jm@acme.de"


def test_quoted_history_is_stripped_but_kept_in_text() -> None:
    body = (
        "Yes, go ahead and deploy.\n\n"
        "On Mon, 3 Mar 2025 at 10:00, Agent <agent@inbox.test> wrote:\n"
        "> Shall I deploy version 2.3?\n> It passed all checks.\n"
    )
    parsed = parse_email(plain_email(body))
    assert parsed.visible_text == "Yes, go ahead and deploy."
    assert "Shall I deploy" in parsed.text


def test_german_quote_header_and_trailing_quote_are_stripped() -> None:
    body = "Bitte prüfen.\n\nAm 03.03.2025 um 10:00 schrieb Agent <agent@inbox.test>:\n> alt\n"
    assert strip_quoted(body) == "Bitte prüfen."
    assert strip_quoted("Fine by me.\n\n> earlier text\n> more\n") == "Fine by me."


def test_signature_is_stripped() -> None:
    body = "Please restart the job.\n\n-- \nBob Smith\nACME Corp | +1 555 0100\n"
    assert parse_email(plain_email(body)).visible_text == "Please restart the job."
    assert strip_quoted("Thanks!\n\nSent from my iPhone\n") == "Thanks!"


def test_only_quoted_text_falls_back_to_full_text() -> None:
    body = "> just the old message\n> nothing new"
    parsed = parse_email(plain_email(body))
    assert parsed.visible_text == parsed.text == body


def test_attachment_metadata_and_alternative_bodies() -> None:
    msg = EmailMessage()
    msg["From"] = "bob@acme.com"
    msg["To"] = "agent@inbox.test"
    msg["Subject"] = "Report"
    msg.set_content("Report attached.")
    msg.add_alternative("<p>Report <b>attached</b>.</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 " + b"x" * 991, maintype="application", subtype="pdf",
                       filename="Q1 report.pdf")
    msg.add_attachment("a,b\n1,2\n", subtype="csv", filename="données.csv")
    parsed = parse_email(msg.as_bytes())
    assert parsed.text == "Report attached."
    assert not parsed.text_from_html
    assert [a.as_dict() for a in parsed.attachments] == [
        {"name": "Q1 report.pdf", "content_type": "application/pdf", "size": 1000},
        {"name": "données.csv", "content_type": "text/csv", "size": 8},
    ]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "empty"),
        (b" \r\n\r\n", "empty"),
        (b"\x00\xff\xfe\x80 garbage \x9c\r\n\r\n\xff", "no header fields"),
        (b"just some words, no header at all\r\n", "no header fields"),
    ],
)
def test_only_bytes_that_are_no_email_raise_malformed_email(raw: bytes, words: str) -> None:
    with pytest.raises(MalformedEmail, match=words):
        parse_email(raw)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"To: agent@inbox.test\r\nSubject: hi\r\n\r\nbody", "no From header"),
        (b"From: undisclosed\r\nTo: agent@inbox.test\r\n\r\nbody", "no usable address"),
        (b"From: MAILER-DAEMON <>\r\n\r\nbody", "'MAILER-DAEMON <>' holds no usable address"),
        (b"From: @\r\n\r\nbody", "From"),
        (b"From: a@acme.com\r\nFrom: b@evil.com\r\n\r\nbody", "several From headers"),
        (b"From: a@acme.com, b@evil.com\r\n\r\nbody", "several authors"),
        (b"From: \"unterminated <a@acme.com\r\n\r\n", "From"),
        (b"From: a@\r\n\r\nbody", "From"),
    ],
)
def test_a_from_that_names_no_one_is_parsed_and_says_why(raw: bytes, words: str) -> None:
    parsed = parse_email(raw)
    assert parsed.from_addr == "" and words in parsed.from_problem
    assert "no one to answer" in parsed.from_problem or "never answered" in parsed.from_problem
    assert auto_reply_reason(parsed, set()) == parsed.from_problem


def test_non_bytes_input_is_malformed() -> None:
    with pytest.raises(MalformedEmail, match="bytes"):
        parse_email("From: a@b.c\r\n\r\nhi")  # type: ignore[arg-type]


def test_broken_headers_elsewhere_do_not_raise() -> None:
    raw = HEAD.replace(b"Message-ID: <m1@acme.com>", b"Message-ID: no brackets") + (
        b"Date: not a date\r\nReferences: junk <ok@x> <<>>\r\n"
        b"Content-Type: multipart/mixed\r\n\r\nno boundary at all\r\n"
    )
    raw = raw.replace(b"To: agent@inbox.test", b"To: a@\r\nCc: a@[\r\nReply-To: \"x\"@")
    parsed = parse_email(raw)  # the stdlib raises IndexError / AttributeError on these
    assert parsed.to == () and parsed.reply_to is None
    assert parsed.date is None
    assert parsed.message_id == "no brackets"
    assert parsed.references == ("<ok@x>",)
    assert parsed.cc == ()


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Auto_Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
        ({"Auto_Submitted": "auto-generated; owner-email=x@y"}, "automatic message"),
        ({"Precedence": "bulk"}, "Precedence: bulk"),
        ({"Precedence": "List"}, "Precedence: List"),
        ({"Precedence": "junk"}, "Precedence: junk"),
        ({"X_Autoreply": "yes"}, "X-Autoreply"),
        ({"X_Autorespond": "vacation"}, "X-Autorespond"),
        ({"List_Id": "<dev.lists.acme.com>"}, "List-Id"),
        ({"List_Unsubscribe": "<mailto:leave@acme.com>"}, "List-Unsubscribe"),
        ({"From": "MAILER-DAEMON@mx.acme.com"}, "delivery report"),
        ({"From": "postmaster@acme.com"}, "delivery report"),
        ({"From": "Agent <AGENT@inbox.test>"}, "our own inbox"),
        ({"Return_Path": "<>"}, "empty envelope sender"),
    ],
)
def test_auto_reply_reasons(headers: dict[str, str], words: str) -> None:
    parsed = parse_email(plain_email(**headers))
    reason = auto_reply_reason(parsed, {"agent@inbox.test"})
    assert reason is not None and words in reason


def test_auto_reply_reason_explains_the_loop() -> None:
    parsed = parse_email(plain_email(Auto_Submitted="auto-replied"))
    assert auto_reply_reason(parsed, set()) == (
        "an automatic message (Auto-Submitted: auto-replied); automatic mail is never answered, "
        "so agents and out-of-office replies cannot loop"
    )


def test_ordinary_mail_is_answered() -> None:
    parsed = parse_email(plain_email(Auto_Submitted="no", Precedence="first-class"))
    assert auto_reply_reason(parsed, {"agent@inbox.test"}) is None
    assert auto_reply_reason(parsed, set(), envelope_sender="bob@acme.com") is None
    bounce = auto_reply_reason(parsed, set(), envelope_sender="")
    assert bounce is not None and "empty envelope sender" in bounce


def test_to_inbound() -> None:
    raw = plain_email(
        "Ship it.\n\nOn Mon, 3 Mar 2025, Agent <agent@inbox.test> wrote:\n> Ship?\n",
        Subject="Re: Release",
        In_Reply_To="<m0@inbox.test>",
        References="<m0@inbox.test>",
        Reply_To="team@acme.com",
    )
    message = to_inbound(parse_email(raw), account="mail", inbox_address="Agent@Inbox.test",
                         raw=raw, ignore_reason=None)
    assert (message.provider, message.account, message.kind) == ("email", "mail", "dm")
    assert message.conversation == "agent@inbox.test"
    assert message.sender == "bob@acme.com"
    assert message.sender_name == "Bob Smith"
    assert message.text == "Ship it."
    assert message.message_id == message.event_id == "<m1@acme.com>"
    assert message.thread is None and message.mentioned
    assert message.dedupe_key == "agent@inbox.test:<m1@acme.com>"
    assert message.extra["subject"] == "Re: Release"
    assert message.extra["in_reply_to"] == "<m0@inbox.test>"
    assert message.extra["references"] == ["<m0@inbox.test>"]
    assert message.extra["reply_to"] == "team@acme.com"
    assert message.extra["attachments"] == []
    assert "> Ship?" in message.extra["full_text"]
    assert message.raw["size"] == len(raw)


def test_to_inbound_without_message_id_uses_a_digest() -> None:
    raw = b"From: bob@acme.com\r\nTo: agent@inbox.test\r\n\r\nhello\r\n"
    message = to_inbound(parse_email(raw), account="mail", inbox_address="agent@inbox.test",
                         raw=raw, ignore_reason="because")
    assert message.event_id.startswith("sha256:") and len(message.event_id) == 7 + 64
    assert message.message_id == ""
    assert message.ignore_reason == "because"


def test_hostile_bodies_stay_fast() -> None:
    """Quadratic patterns and deep nesting must not stall the server (minutes before the caps)."""
    started = time.monotonic()
    long_line = "Thanks.\n\nOn " + "x y " * 25_000 + "\n> old\n"
    assert parse_email(plain_email(long_line)).visible_text.startswith("Thanks.")
    nested = HEAD + b"Content-Type: text/html\r\n\r\n" + b"<ul>" * 5000 + b"<li>x" * 5000
    parse_email(nested)
    assert time.monotonic() - started < 3


def test_mutated_messages_raise_nothing_but_malformed_email() -> None:
    msg = EmailMessage()
    msg["From"] = "Bob <bob@acme.com>"
    msg["To"] = "agent@inbox.test"
    msg["Subject"] = "=?utf-8?q?caf=C3=A9?="
    msg.set_content("hello\n" * 5)
    msg.add_alternative("<p>hello</p>", subtype="html")
    msg.add_attachment(b"x" * 50, maintype="application", subtype="pdf", filename="f.pdf")
    seed, rng = msg.as_bytes(), random.Random(7)
    pieces = [b"=?utf-8?B?", b"<", b">", b"\r\n", b"\r\n ", b"--", b"boundary=", b";", b"\x00"]
    for _ in range(300):
        raw = bytearray(seed)
        for _ in range(rng.randint(1, 12)):
            at = rng.randrange(len(raw))
            roll = rng.random()
            if roll < 0.4:
                raw[at] = rng.randrange(256)
            elif roll < 0.7:
                del raw[at : at + rng.randint(1, 30)]
            else:
                raw[at:at] = rng.choice(pieces)
        try:
            parsed = parse_email(bytes(raw))
        except MalformedEmail:
            continue
        auto_reply_reason(parsed, {"agent@inbox.test"})
        to_inbound(parsed, account="mail", inbox_address="agent@inbox.test", raw=bytes(raw))
