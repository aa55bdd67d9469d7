"""Mail as real clients and servers write it (samples/*.eml): what the agent reads of each
reply, and why bounces, reports and auto-replies are never answered; parsed, then sent through
a real SMTP session to `serve`, where the SMTP code and the turn (GET /api/turns) tell."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, wait_until
from inbox.automatic import auto_reply_reason
from inbox.parse import parse_email
from inbox.quotes import strip_quoted

SAMPLES = Path(__file__).parent / "samples"
INBOX = "triager@agents.test"
HELPER = "helper@agents.test"


def sample(name: str) -> bytes:
    """A sample as it travels: CRLF line ends."""
    return (SAMPLES / name).read_bytes().replace(b"\n", b"\r\n")


# What the sender wrote this time, exactly, for replies from each client and language.
REPLIES: dict[str, str] = {
    "reply_thunderbird_bottom_posted.eml":
        "Yes: the backup job failed too, please restart it as well.",
    "reply_gmail_hyphen_list.eml":
        "Here is the plan for tonight:\n\n- restart the nightly job\n- check the backup at 03:00"
        "\n- tell Bob when it is done\n\nThanks,\nAnn",
    "reply_gmail_folded_header.eml": "The job ran, thank you.",
    "reply_gmail_nl.eml": "Het werkt weer, bedankt!",
    "reply_gmail_fr.eml": "C'est bon, merci !",
    "reply_thunderbird_fr.eml": "C'est réglé, merci.",
    "reply_gmail_pl.eml": "Działa, dziękuję.",
    "reply_thunderbird_pl.eml": "Zadanie nadal nie działa.",
    "reply_gmail_pt.eml": "Funcionou, obrigado!",
    "reply_gmail_fi.eml": "Kiitos, nyt toimii.",
    "reply_gmail_it.eml": "Funziona, grazie.",
    "reply_gmail_ru.eml": "Спасибо, всё работает.",
    "reply_apple_ru.eml": "Задание снова упало ночью.",
    "reply_apple_da.eml":
        "Hej,\n\nJobbet kører igen.\nTak fordi du genstartede det. Kan du også tjekke backuppen?",
    "reply_zoho.eml": "Thank you, it works now.\n\nRegards,\nAnn",
    "reply_outlook_original_message.eml": "Thanks, I will check the logs.\n\nAnn",
    "reply_outlook_de.eml": "Danke, erledigt.\n\nViele Grüße\nAnna",
    "reply_outlook_ru.eml": "Готово, задание перезапущено.\n\nС уважением,\nАнна",
    "reply_outlook_html_only_fr.eml": "C'est fait, le job tourne.",
    "reply_thunderbird_interleaved.eml":
        "Yes, at 02:00.\n\nNot yet. I will start it tonight.\n\nPlease do.\n\nAnn",
    "reply_apple_iphone.eml": "Restarted it, all good.",
    "forward_gmail.eml":
        "FYI, see below.\n\n---------- Forwarded message ---------\n"
        "From: Bob Builder <bob@example.com>\nDate: Mon, Dec 1, 2026 at 9:00\u202fAM\n"
        "Subject: Nightly job\nTo: Ann Example <ann@example.com>\n\n\n"
        "The nightly job failed again, the disk is full.",
    "empty_plain_beside_html.eml": "The printer on floor 2 is jammed again.\nAnn",
}

# Why each bounce or report is never answered (the start of the turn's route_reason).
REPORTS: dict[str, str] = {
    "dsn_null_from.eml": "a delivery status notification (a bounce), sent as multipart/report; "
                         "report-type=delivery-status; reports are never answered",
    "dsn_exchange_ndr.eml": "a delivery status notification (a bounce), sent as multipart/report",
    "arf_feedback_report.eml": "an abuse or feedback report (ARF, RFC 5965), sent as "
                               "multipart/report; report-type=feedback-report",
    "mdn_read_receipt.eml": "a read receipt (RFC 8098)",
    "dsn_no_from.eml": "the message has no From header, so there is no one to answer",
    "dsn_garbage_from.eml": "From 'Mail Delivery System <MAILER-DAEMON@>' holds no usable "
                            "address, so there is no one to answer",
    "dsn_return_path_mailer_daemon.eml": "a delivery report from mailer-daemon@gw.example.net "
                                         "(Return-Path); bounces are never answered",
}


@pytest.mark.parametrize(("name", "expected"), REPLIES.items(), ids=list(REPLIES))
def test_the_agent_reads_what_the_sender_wrote_this_time(name: str, expected: str) -> None:
    parsed = parse_email(sample(name))
    assert parsed.visible_text == expected
    assert auto_reply_reason(parsed, {INBOX}, envelope_sender=parsed.from_addr) is None


def test_a_blank_text_part_beside_html_gives_way_to_the_html() -> None:
    parsed = parse_email(sample("empty_plain_beside_html.eml"))
    assert parsed.text_from_html and parsed.text == parsed.visible_text


@pytest.mark.parametrize(("name", "reason"), REPORTS.items(), ids=list(REPORTS))
def test_bounces_and_reports_are_parsed_and_never_answered(name: str, reason: str) -> None:
    parsed = parse_email(sample(name))
    found = auto_reply_reason(parsed, {INBOX}, envelope_sender="relay@example.net")
    assert found is not None and found.startswith(reason), found


@pytest.mark.parametrize(
    ("headers", "envelope", "words"),
    [
        ({"From": "Mail Delivery System <mail-system@example.net>"}, "MAILER-DAEMON@example.net",
         "a delivery report from MAILER-DAEMON@example.net (the envelope sender)"),
        ({"From": "Helpdesk <helpdesk@example.net>", "Return-Path": "<>"}, "helpdesk@example.net",
         "empty envelope sender"),
        ({"From": "postmaster@example.net"}, "x@example.net", "a delivery report"),
        ({"From": "GitHub <noreply@github.com>"}, None, "the no-reply address noreply@github.com"),
        ({"From": "Shop <no-reply@shop.example>"}, None, "no-reply address"),
        ({"From": "Bank <do-not-reply@bank.example>"}, None, "no-reply address"),
        ({"From": "Bank <DoNotReply@bank.example>"}, None, "no-reply address"),
        ({"From": "Google <noreply-dmarc-support@google.com>"}, None, "no-reply address"),
        ({"From": "owner-dev@lists.example.org"}, None, "the mailing-list manager"),
        ({"From": "dev-request@lists.example.org"}, None, "the mailing-list manager"),
        ({"From": "Dev <dev-owner@lists.example.org>"}, None, "the mailing-list manager"),
        ({"List-Id": "Dev <dev.lists.example.org>"}, None, "mailing-list mail (List-Id"),
        ({"List-Unsubscribe": "<https://lists.example.org/u/1>"}, None, "List-Unsubscribe"),
        ({"Precedence": "junk"}, None, "bulk mail (Precedence: junk)"),
        ({"X-Auto-Response-Suppress": "All"}, None, "asks for no automatic replies"),
        ({"X-Auto-Response-Suppress": "DR, RN, NRN, OOF, AutoReply"}, None, "no automatic"),
        ({"X-Failed-Recipients": "ann@example.net"}, None, "a bounce (X-Failed-Recipients"),
        ({"Subject": "Auto reply: Nightly job"}, None, "by its subject"),
        ({"Subject": "Automatic reply: Nightly job"}, None, "by its subject"),
        ({"Subject": "Out of Office: Nightly job"}, None, "by its subject"),
        ({"Subject": "Out of office until Monday"}, None, "by its subject"),
        ({"Subject": "Autoreply: Nightly job"}, None, "by its subject"),
        ({"Subject": "Abwesenheitsnotiz: Nightly job"}, None, "by its subject"),
        ({"Subject": "Automatische Antwort: Nightly job"}, None, "by its subject"),
        ({"Subject": "Réponse automatique : Nightly job"}, None, "by its subject"),
        ({"Subject": "Risposta automatica: Nightly job"}, None, "by its subject"),
        ({"Subject": "Undeliverable: Nightly job"}, None, "by its subject"),
    ],
)
def test_automatic_mail_is_never_answered(headers: dict[str, str], envelope: str | None,
                                          words: str) -> None:
    fields = {"From": "Ann Example <ann@example.com>", "Subject": "Nightly job", **headers}
    raw = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    parsed = parse_email(f"{raw}To: {INBOX}\r\n\r\nHello.\r\n".encode())
    reason = auto_reply_reason(parsed, {INBOX}, envelope_sender=envelope)
    assert reason is not None and words in reason, reason


@pytest.mark.parametrize("subject", ["Re: Out of office policy", "Autoreplies are broken",
                                     "Reply needed", "Nightly job"])
def test_people_writing_about_these_things_are_answered(subject: str) -> None:
    raw = (f"From: Ann <ann@example.com>\r\nTo: {INBOX}\r\nSubject: {subject}\r\n"
           "X-Auto-Response-Suppress: None\r\nAuto-Submitted: no\r\n\r\nHi\r\n")
    parsed = parse_email(raw.encode())
    assert auto_reply_reason(parsed, {INBOX}, envelope_sender="ann@example.com") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a header that is only a header above a ">" quote ("Ann wrote:", no date, no address)
        ("Agreed.\n\nAnn wrote:\n> Shall we?\n", "Agreed."),
        ("Here is what my boss wrote:\nthe server is down.", None),
        ("He wrote: restart it.\nOn Monday Ann wrote the plan:\n- a\n- b", None),
        # a folded header whose first half is new text stays new text
        ("We meet at 10:00\nOn Mon, 1 Dec 2026 at 09:00, Ann <ann@x.test> wrote:\n> old",
         "We meet at 10:00"),
        ("Fine.\n\n-- \nAnn\n\n> old\n", "Fine."),
        ("Sure.\n\nSent from my iPhone", "Sure."),
        ("Klar.\n\nVon meinem iPhone gesendet\n\n> Am 1.12.2026 um 10:00 schrieb A <a@x.test>:",
         "Klar."),
    ],
)
def test_quote_stripping_edge_cases(text: str, expected: str | None) -> None:
    assert strip_quoted(text) == (text if expected is None else expected)


def test_an_outlook_forward_keeps_the_message_passed_on() -> None:
    body = ("See below.\n\n________________________________\nFrom: Bob <bob@example.com>\n"
            "Sent: Monday, December 1, 2026 09:00\nTo: Ann <ann@example.com>\n"
            "Subject: Disk full\n\nThe disk is full.")
    assert strip_quoted(body, subject="FW: Disk full") == body
    assert strip_quoted(body, subject="RE: Disk full") == "See below."


def test_storable_text_from_utf7_and_raw_8bit_headers() -> None:
    """A lone surrogate (utf-7 "+2AA-") or a raw 8-bit header can never be stored as UTF-8."""
    parsed = parse_email(sample("utf7_lone_surrogate.eml"))
    assert parsed.subject == "Café \ufffd order"
    assert parsed.from_name == "Ann \ufffdExample" and parsed.from_addr == "ann@example.com"
    assert parsed.visible_text == "Please restart the job \ufffd tonight."
    assert [a.name for a in parsed.attachments] == ["\ufffdlog.txt"]
    raw8 = parse_email(sample("raw_utf8_headers.eml"))
    assert (raw8.from_name, raw8.from_addr, raw8.subject) == (
        "Jürgen Müller", "jürgen@example.de", "Grüße")
    latin = parse_email(b"From: J\xfcrgen <j@example.de>\r\nSubject: x\r\n\r\nhi\x00there\r\n")
    assert latin.from_name == "Jürgen" and latin.text == "hi\ufffdthere"
    for value in (parsed.subject, parsed.from_name, parsed.text, raw8.from_name, latin.text):
        value.encode("utf-8")  # storable


# --- through SMTP -----------------------------------------------------------------------------

@pytest.fixture
def server(serve: Callable[[str], Server], tmp_path: Path) -> Server:
    return serve(f"""
agents:
  triager: {{handler: echo}}
  helper: {{handler: echo}}
accounts:
  mail:
    provider: email
    domain: agents.test
    maildir: {tmp_path / "outbound"}
    inboxes: {{triager: triager, helper: helper}}
bindings:
  - {{agent: triager, account: mail}}
  - {{agent: helper, account: mail}}
""")


def smtp_data(server: Server, envelope: str, raw: bytes,
              recipients: Iterable[str] = (INBOX,)) -> tuple[int, bytes]:
    """One SMTP transaction; the server's answer to DATA."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.ehlo()
        assert client.mail(envelope)[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        return client.data(raw)


def turn_of(server: Server, message_id: str, inbox: str = INBOX) -> dict[str, Any]:
    """The settled turn of one message to one inbox."""
    deadline = time.time() + 10
    while not (found := server.turns(q=f"{inbox}:{message_id}")):
        assert time.time() < deadline, f"no turn for {message_id} to {inbox}"
        time.sleep(0.05)
    return server.wait_turn(found[0]["id"])


def message_id(raw: bytes) -> str:
    line = next(line for line in raw.split(b"\r\n") if line.lower().startswith(b"message-id:"))
    return line.split(b":", 1)[1].strip().decode()


def answers(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "outbound" / "new").glob("*"))


def test_bounces_and_reports_are_accepted_and_recorded_as_ignored(server, tmp_path):
    for name, reason in REPORTS.items():
        raw = sample(name)
        envelope = "gateway@gw.example.net" if "return_path" in name else ""
        assert smtp_data(server, envelope, raw)[0] == 250, name
        turn = turn_of(server, message_id(raw))
        assert turn["status"] == "ignored" and turn["reply_text"] is None, name
        assert turn["route_reason"].startswith(reason), (name, turn["route_reason"])
    # a bounce to two inboxes is two ignored turns, both written before the 250
    raw = sample("dsn_no_from.eml").replace(b"qmail@", b"qmail-2@")
    assert smtp_data(server, "", raw, [INBOX, HELPER])[0] == 250
    assert {turn_of(server, message_id(raw), inbox)["status"] for inbox in (INBOX, HELPER)} == {
        "ignored"}
    time.sleep(0.3)
    assert answers(tmp_path) == []


def test_only_bytes_that_are_no_email_are_refused_and_nothing_is_written(server):
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.ehlo()
        for raw in (b"\x00\xff\xfe garbage without any header\r\n",
                    b"just words, no header at all\r\n\r\nmore words\r\n"):
            client.mail("")
            client.rcpt(INBOX)
            client.rcpt(HELPER)
            code, words = client.data(raw)
            assert code == 554 and b"no header fields" in words
            client.rset()
        # the session still works for the next message
        raw = sample("dsn_garbage_from.eml")
        client.mail("")
        client.rcpt(INBOX)
        assert client.data(raw)[0] == 250
    assert turn_of(server, message_id(raw))["status"] == "ignored"
    assert len(server.turns()) == 1
    def rejected() -> dict[str, int]:
        return server.api("GET", "/api/accounts").json()["accounts"][0]["rejected"]

    # rejections are counted in memory and written a moment later: wait for the write
    wait_until(lambda: sum(rejected().values()) >= 2)
    assert rejected() == {"malformed": 2}


AUTOMATIC: list[tuple[str, str, dict[str, str], str]] = [
    # (envelope sender, From, more headers, what the route_reason says)
    ("MAILER-DAEMON@mx.example.net", "Mail System <mail-system@mx.example.net>", {},
     "a delivery report from MAILER-DAEMON@mx.example.net (the envelope sender)"),
    ("postmaster@example.net", "postmaster@example.net", {}, "a delivery report from"),
    ("bounce-1@github.com", "GitHub <noreply@github.com>", {}, "the no-reply address"),
    ("b@shop.example", "Shop <no-reply@shop.example>", {}, "the no-reply address"),
    ("b@bank.example", "Bank <do-not-reply@bank.example>", {}, "the no-reply address"),
    ("b@bank.example", "Bank <donotreply@bank.example>", {}, "the no-reply address"),
    ("dev-bounces@lists.example.org", "dev-owner@lists.example.org", {},
     "the mailing-list manager dev-owner@lists.example.org"),
    ("dev-bounces@lists.example.org", "owner-dev@lists.example.org", {},
     "the mailing-list manager"),
    ("dev-bounces@lists.example.org", "dev-request@lists.example.org", {},
     "the mailing-list manager"),
    ("ann@example.com", "Ann <ann@example.com>", {"List-Id": "Dev <dev.lists.example.org>"},
     "mailing-list mail (List-Id"),
    ("ann@example.com", "Ann <ann@example.com>", {"Precedence": "bulk"}, "Precedence: bulk"),
    ("jira@example.net", "Jira <jira@example.net>", {"X-Auto-Response-Suppress": "All"},
     "asks for no automatic replies"),
    ("ann@example.com", "Ann <ann@example.com>", {"Subject": "Auto reply: Nightly job"},
     "by its subject"),
    ("ann@example.com", "Ann <ann@example.com>", {"Subject": "Automatic reply: Nightly job"},
     "by its subject"),
    ("ann@example.com", "Ann <ann@example.com>", {"Subject": "Out of office"}, "by its subject"),
    ("ann@example.com", "Ann <ann@example.com>", {"Subject": "Autoreply: Nightly job"},
     "by its subject"),
    ("anna@example.de", "Anna <anna@example.de>", {"Subject": "Abwesenheitsnotiz: Nightly job"},
     "by its subject"),
    ("anne@example.fr", "Anne <anne@example.fr>",
     {"Subject": "=?utf-8?q?R=C3=A9ponse_automatique_:_Nightly_job?="}, "by its subject"),
]


def test_automatic_mail_is_recorded_and_never_answered(server, tmp_path):
    for number, (envelope, sender, headers, words) in enumerate(AUTOMATIC):
        fields = {"From": sender, "To": INBOX, "Subject": "Nightly job",
                  "Message-ID": f"<auto-{number}@example.net>", **headers}
        raw = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\nHello there.\r\n"
        assert smtp_data(server, envelope, raw.encode())[0] == 250
        turn = turn_of(server, fields["Message-ID"])
        assert turn["status"] == "ignored", (sender, headers, turn["route_reason"])
        assert words in turn["route_reason"], (words, turn["route_reason"])
    time.sleep(0.3)
    assert answers(tmp_path) == []


def test_replies_from_real_clients_reach_the_agent_as_the_sender_wrote_them(server, tmp_path):
    for name in REPLIES:
        raw = sample(name)
        assert smtp_data(server, "ann@example.com", raw)[0] == 250, name
    for name, expected in REPLIES.items():
        turn = turn_of(server, message_id(sample(name)))
        assert turn["status"] == "delivered", (name, turn["route_reason"], turn["error"])
        assert turn["text"] == expected, name
        assert turn["reply_text"] == f"echo: {expected}"
    assert len(answers(tmp_path)) == len(REPLIES)


def test_text_that_cannot_be_stored_is_cleaned_and_the_mail_answered(server):
    """Lone surrogates (utf-7 "+2AA-", raw 8-bit headers) once failed storage: 451 forever."""
    body_only = (b"From: Ann <ann@example.com>\r\nTo: triager@agents.test\r\nSubject: Job\r\n"
                 b"Message-ID: <utf7-body@example.com>\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: text/plain; charset=utf-7\r\n\r\nRestart +2AA- it.\r\n")
    for raw, sender, sender_name, text in (
            (body_only, "ann@example.com", "Ann", "Restart \ufffd it."),
            (sample("raw_utf8_headers.eml"), "jürgen@example.de", "Jürgen Müller",
             "Bitte den Job neu starten."),
            (sample("utf7_lone_surrogate.eml"), "ann@example.com", "Ann \ufffdExample",
             "Please restart the job \ufffd tonight.")):
        assert smtp_data(server, "ann@example.com", raw)[0] == 250, sender_name
        turn = turn_of(server, message_id(raw))
        assert turn["status"] == "delivered", (sender_name, turn["error"])
        assert (turn["sender"], turn["sender_name"], turn["text"]) == (sender, sender_name, text)
