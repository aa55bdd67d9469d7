"""Email as an attacker and real mail systems send it, through `serve`: a Reply-To aimed at a third
party, header values that decode to line feeds, Outlook-length lines, ed25519 DKIM with keys from
a DNS server of the test's own, and an SMTP server that takes only so many sessions."""

from __future__ import annotations

import base64
import smtplib
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim
import nacl.signing
import pytest

from conftest import Server
from fakes.dns_server import FakeDNS
from fakes.mail import Relay, compose, provision, running_relay, send, turn_of
from switchboard.config import load_config
from switchboard.errors import ConfigError

AUTHSERV = "mx.agents.test"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    with running_relay() as running:
        yield running


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        yield server


def config(relay_port: int, dns: FakeDNS, smtp: str = "") -> str:
    """`mail` trusts no one's From (sender_auth: none), `acme` trusts its MTA's verdict, `signed`
    checks DKIM itself with keys from the test's DNS server; retries come fast."""
    return f"""
agents:
  triager: {{handler: echo}}
accounts:
  mail:
    provider: email
    domain: agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
  acme:
    provider: email
    domain: acme.agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
    sender_auth: authentication-results
    authserv_id: {AUTHSERV}
  signed:
    provider: email
    domain: signed.agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
    sender_auth: dkim
    dns_resolver: {dns.address}
    dns_timeout: 1s
bindings:
  - {{agent: triager, account: mail}}
  - {{agent: triager, account: acme}}
  - {{agent: triager, account: signed}}
delivery: {{backoff: 100ms, max_backoff: 200ms}}
{smtp}"""


@pytest.fixture
def mail_server(serve: Callable[[str], Server], relay: tuple[Relay, int],
                fake_dns: FakeDNS) -> Server:
    return serve(config(relay[1], fake_dns))


def delivered_detail(turn: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in turn["events"] if e["name"] == "delivered")["detail"]


def test_replies_go_to_the_authenticated_sender_never_to_reply_to(mail_server, relay):
    server, (captured, _) = mail_server, relay
    inbox = provision(server, account="mail")
    acme = provision(server, account="acme")
    # 1. sender_auth none: the envelope sender is answered, the Reply-To is not
    spam_id, raw = compose("you@example.com", inbox, "Buy cheap watches",
                           headers={"Reply-To": "victim@elsewhere.test"})
    send(server, "you@example.com", inbox, raw)
    # 2. sender_auth none, a From that is not the envelope sender: the envelope sender it is
    forged_id, raw = compose("boss@example.com", inbox, "Wire the money")
    send(server, "you@example.com", inbox, raw)
    # 3. an authenticated From (our MTA's verdict): From is answered, even when the envelope
    #    sender is a bounce address and Reply-To points elsewhere
    auth_id, raw = compose("alice@acme.com", acme, "Restart the job",
                           headers={"Reply-To": "Victim <victim@elsewhere.test>",
                                    "Authentication-Results":
                                        f"{AUTHSERV}; dkim=pass header.d=acme.com"})
    send(server, "bounces+x1@mailer.acme.com", acme, raw)
    # 4. a Reply-To that is the sender itself is no news
    same_id, raw = compose("you@example.com", inbox, "Me again",
                           headers={"Reply-To": "You <YOU@example.com>"})
    send(server, "you@example.com", inbox, raw)

    captured.wait(4)
    time.sleep(0.2)
    assert sorted(map(tuple, captured.recipients)) == [
        ("alice@acme.com",), ("you@example.com",), ("you@example.com",), ("you@example.com",)]
    assert all("victim" not in str(m["To"]) and "boss" not in str(m["To"])
               for m in captured.messages)

    spam = turn_of(server, inbox, spam_id)
    assert spam["status"] == "delivered"
    detail = delivered_detail(spam)
    assert detail["to"] == "you@example.com"
    assert detail["ignored"] == ["Reply-To victim@elsewhere.test ignored: not the "
                                 "authenticated sender you@example.com"]
    forged = delivered_detail(turn_of(server, inbox, forged_id))
    assert forged["to"] == "you@example.com"
    assert forged["ignored"] == ["From boss@example.com not answered: sender_auth is none, so "
                                 "the envelope sender you@example.com is answered"]
    authenticated = delivered_detail(turn_of(server, acme, auth_id))
    assert authenticated["to"] == "alice@acme.com"
    assert authenticated["ignored"] == ["Reply-To victim@elsewhere.test ignored: not the "
                                        "authenticated sender alice@acme.com"]
    same = delivered_detail(turn_of(server, inbox, same_id))
    assert same["to"] == "you@example.com" and "ignored" not in same


def test_header_values_that_decode_to_line_feeds_still_get_their_reply_once(mail_server, relay):
    server, (captured, _) = mail_server, relay
    inbox = provision(server, account="mail")
    raw = ("From: You <you@example.com>\r\n"
           f"To: {inbox}\r\n"
           "Subject: =?utf-8?q?Invoice=0A_overdue?=\r\n"
           "Message-ID: =?utf-8?q?abc=0A@x?=\r\n"
           "References: <first@example.com> =?utf-8?q?<bad=0Aref@x>?=\r\n"
           "Date: Mon, 1 Jan 2029 10:00:00 +0000\r\n"
           "\r\n"
           "Where is my invoice?\r\n").encode()
    send(server, "you@example.com", inbox, raw)
    deadline = time.time() + 10
    while not (found := server.turns(conversation=inbox)):
        assert time.time() < deadline
        time.sleep(0.05)
    turn = server.wait_turn(found[0]["id"], lambda t: t["status"] not in ("pending",),
                            timeout=15)
    assert turn["status"] == "delivered", turn
    assert turn["delivery_attempts"] == 1
    [answer] = captured.wait(1)
    assert answer["To"] == "you@example.com"
    assert answer["Subject"] == "Re: Invoice overdue"
    assert answer["In-Reply-To"] == "<abc@x>"
    assert answer["References"].split() == ["<first@example.com>", "<bad=0Aref@x>", "<abc@x>"]


def test_lines_longer_than_1000_bytes_are_accepted(mail_server):
    server = mail_server
    inbox = provision(server, account="mail")
    # Outlook writes a whole HTML paragraph on one line; SES keeps 8bit bodies as they came
    paragraph = "".join(f"<span style='font-size:11.0pt'>word{i} </span>" for i in range(140))
    line = f"<html><body><p class=MsoNormal>{paragraph}the end of the line</p></body></html>"
    assert len(line) > 5000
    raw = ("From: you@example.com\r\n"
           f"To: {inbox}\r\n"
           "Subject: Long line\r\n"
           "Message-ID: <long-line@example.com>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/html; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n"
           f"{line}\r\n").encode()
    send(server, "you@example.com", inbox, raw)
    turn = turn_of(server, inbox, "<long-line@example.com>")
    assert turn["status"] == "delivered"
    assert turn["text"].endswith("the end of the line")
    assert "word139" in turn["text"]


def ed25519_key() -> tuple[bytes, bytes]:
    """(the private key as dkimpy signs with it, the DNS TXT record publishing it: RFC 8463)."""
    key = nacl.signing.SigningKey.generate()
    private = base64.b64encode(bytes(key))
    public = base64.b64encode(bytes(key.verify_key))
    return private, b"v=DKIM1; k=ed25519; p=" + public


def signed(sender: str, to: str, private: bytes, domain: str, text: str) -> tuple[str, bytes]:
    message_id, raw = compose(sender, to, text)
    header = dkim.sign(raw, b"sel", domain.encode(), private,
                       signature_algorithm=b"ed25519-sha256",
                       include_headers=[b"from", b"to", b"subject", b"message-id"])
    return message_id, header + raw


def data_answer(server: Server, sender: str, to: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.ehlo()
        assert client.mail(sender)[0] == 250
        assert client.rcpt(to)[0] == 250
        return client.data(raw)


def test_ed25519_dkim_verifies_and_unfetchable_keys_are_temporary(mail_server, fake_dns, relay):
    server, (captured, _) = mail_server, relay
    inbox = provision(server, account="signed")
    private, record = ed25519_key()
    fake_dns.txt["sel._domainkey.example.com"] = record
    fake_dns.servfail.add("sel._domainkey.broken.example")
    fake_dns.silent.add("sel._domainkey.slow.example")

    good_id, raw = signed("bob@example.com", inbox, private, "example.com", "Deploy now")
    assert data_answer(server, "bob@example.com", inbox, raw)[0] == 250
    good = turn_of(server, inbox, good_id)
    assert good["status"] == "delivered", good["route_reason"]
    assert captured.wait(1)[0]["To"] == "bob@example.com"
    assert "sel._domainkey.example.com" in fake_dns.queries

    # SERVFAIL and silence: the key cannot be had now, so the sender's MTA must try again
    for domain in ("broken.example", "slow.example"):
        message_id, raw = signed(f"bob@{domain}", inbox, private, domain, "Try me later")
        started = time.monotonic()
        code, words = data_answer(server, f"bob@{domain}", inbox, raw)
        assert code == 451 and words.startswith(b"4.7.5"), (code, words)
        assert domain.encode() in words
        assert time.monotonic() - started < 5
        assert server.turns(q=f"{inbox}:{message_id}") == []

    # no key published at all: that is an answer, and the mail is recorded, not answered
    gone_id, raw = signed("bob@nokey.example", inbox, private, "nokey.example", "Forged")
    assert data_answer(server, "bob@nokey.example", inbox, raw)[0] == 250
    gone = turn_of(server, inbox, gone_id)
    assert gone["status"] == "ignored"
    assert gone["route_reason"].startswith("From bob@nokey.example is not authenticated: dkim=")
    assert len(captured.messages) == 1


def test_connections_over_max_sessions_hear_421(serve, relay, fake_dns):
    server = serve(config(relay[1], fake_dns, smtp="smtp: {max_sessions: 2}\n"))
    first = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10)
    second = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10)
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0")
    finally:
        first.quit()
    deadline = time.time() + 5
    while True:  # the freed place is taken by the next connection
        try:
            third = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10)
            break
        except smtplib.SMTPConnectError:
            assert time.time() < deadline
            time.sleep(0.05)
    third.quit()
    second.quit()


def test_smtp_limits_and_dns_resolver_are_checked_at_load(tmp_path: Path):
    path = tmp_path / "bindings.yaml"
    path.write_text(textwrap.dedent("""
        agents:
          triager: {handler: echo}
        accounts:
          mail:
            provider: email
            domain: agents.test
            max_message_bytes: 20MiB
            dns_resolver: dns.example.com
          other:
            provider: email
            domain: other.test
            dns_resolver: "[::1]:99999"
        smtp:
          max_sessions: 0
          max_inflight_bytes: 16MiB
          data_timeout: soon
        bindings:
          - {agent: triager, account: mail}
        """).lstrip())
    with pytest.raises(ConfigError) as error:
        load_config(path)
    found = {p.key: (p.line, p.message) for p in error.value.problems}
    assert found["accounts.mail.dns_resolver"][0] == 8
    assert "an IP address" in found["accounts.mail.dns_resolver"][1]
    assert "port" in found["accounts.other.dns_resolver"][1]
    assert found["smtp.max_sessions"][0] == 14
    assert "duration" in found["smtp.data_timeout"][1]
    assert found["smtp.max_inflight_bytes"][1] == (
        "16777216 bytes is less than max_message_bytes of account mail (20971520): one such "
        "message could never be taken; raise max_inflight_bytes or lower max_message_bytes")
    path.write_text(textwrap.dedent("""
        accounts:
          mail: {provider: email, domain: agents.test, dns_resolver: "127.0.0.1:5353"}
        smtp: {max_sessions: 5, max_inflight_bytes: 64MiB, data_timeout: 2m}
        """).lstrip())
    loaded = load_config(path)
    smtp = loaded.sections["smtp"]
    assert smtp.max_sessions == 5 and smtp.max_inflight_bytes == 64 * 2**20
    assert loaded.accounts["mail"].dns_resolver == "127.0.0.1:5353"
