"""Email end to end: a real SMTP client talks to `serve`'s SMTP server; a second aiosmtpd is the
relay and captures what Switchboard sends back."""

from __future__ import annotations

import email
import json
import os
import re
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest

from conftest import OPERATOR, VIEWER, Server, free_port, sse_events
from fakes.mail import Relay, compose, provision, running_relay, send, turn_of

README = Path(__file__).resolve().parents[2] / "README.md"
AUTHSERV = "mx.agents.test"


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without Switchboard, Slack or Telegram settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "TELEGRAM_", "SWITCHBOARD_"))}
    return {**env, "NO_COLOR": "1", **extra}


def read_sse(url: str, into: list[dict[str, Any]],
             enough: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Collect live events until `enough` of them came; then the stream is closed, so the
    server can shut down without waiting for it."""
    for event in sse_events(url, VIEWER):
        into.append(event)
        if enough(into):
            return


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    with running_relay() as running:
        yield running


def config(relay_port: int, maildir: Path) -> str:
    """Email accounts: `mail` (relay, threads), `acme` (relay, authenticated senders of acme.com
    only, one session per sender, small limit), `offline` (no relay: a maildir), `signed`
    (DKIM required) and `down` (a relay that is not listening)."""
    return f"""
agents:
  triager: {{handler: echo, model: small}}
  helper: {{handler: echo}}
accounts:
  mail:
    provider: email
    domain: agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
    max_message_bytes: 30000
  acme:
    provider: email
    domain: acme.agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
    max_message_bytes: 10000
    sender_auth: authentication-results
    authserv_id: {AUTHSERV}
  offline:
    provider: email
    domain: offline.test
    maildir: {maildir}
    max_message_bytes: 20000
  signed:
    provider: email
    domain: signed.agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
    sender_auth: dkim
    max_message_bytes: 20000
  down:
    provider: email
    domain: down.agents.test
    relay_host: 127.0.0.1
    relay_port: {free_port()}
    max_message_bytes: 20000
bindings:
  - {{name: triage-mail, agent: triager, account: mail, session_scope: thread}}
  - {{name: acme-only, agent: triager, account: acme, allow_senders: ["*@acme.com"],
      session_scope: sender}}
  - {{name: triage-offline, agent: triager, account: offline}}
  - {{name: triage-signed, agent: triager, account: signed}}
  - {{name: triage-down, agent: triager, account: down}}
"""


@pytest.fixture
def mail_server(serve: Callable[[str], Server], relay: tuple[Relay, int],
                tmp_path: Path) -> Server:
    return serve(config(relay[1], tmp_path / "outbound"))


def test_provisioning_through_the_api(mail_server):
    server = mail_server
    several = server.api("POST", "/api/agents/triager/inbox", token=OPERATOR)
    assert several.status_code == 400 and "choose one" in several.json()["detail"]
    assert provision(server, account="mail") == "triager@agents.test"
    assert provision(server, account="mail") == "triager-2@agents.test"
    assert provision(server, "helper", account="mail", local_part="Help.Desk") == \
        "help.desk@agents.test"
    for body, status, words in (
        ({"account": "mail", "local_part": "a..b"}, 400, "not a usable local part"),
        ({"account": "mail", "local_part": "x y"}, 400, "not a usable local part"),
        ({"account": "mail", "local_part": "triager"}, 409, "already provisioned"),
        ({"account": "nope"}, 400, "no email account named 'nope'"),
    ):
        answer = server.api("POST", "/api/agents/triager/inbox", token=OPERATOR, json=body)
        assert answer.status_code == status and words in answer.json()["detail"], answer.text
    assert server.api("POST", "/api/agents/ghost/inbox", token=OPERATOR,
                      json={"account": "mail"}).status_code == 404
    assert server.api("POST", "/api/agents/triager/inbox", token=VIEWER,
                      json={"account": "mail"}).status_code == 403
    listed = server.api("GET", "/api/inboxes", token=VIEWER).json()["inboxes"]
    assert {(i["email_address"], i["agent"], i["active"]) for i in listed} == {
        ("triager@agents.test", "triager", True), ("triager-2@agents.test", "triager", True),
        ("help.desk@agents.test", "helper", True)}
    # revoked: refused at RCPT, and never handed to anyone else
    assert server.api("DELETE", "/api/inboxes/triager-2@agents.test",
                      token=VIEWER).status_code == 403
    revoked = server.api("DELETE", "/api/inboxes/triager-2@agents.test", token=OPERATOR)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert server.api("DELETE", "/api/inboxes/nobody@agents.test",
                      token=OPERATOR).status_code == 404
    _, raw = compose("alice@example.com", "triager-2@agents.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(server, "alice@example.com", "triager-2@agents.test", raw)
    assert refused.value.recipients["triager-2@agents.test"][0] == 550
    assert provision(server, account="mail") == "triager-3@agents.test"


def test_provisioning_through_the_cli_and_the_readme_one_liner(mail_server, database_url,
                                                               tmp_path):
    server = mail_server
    path = str(server.runtime.config.path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "switchboard", "inbox", *args],
                              env=clean_env(SWITCHBOARD_DATABASE_URL=database_url),
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    made = cli("provision", "triager", "--config", path, "--account", "offline", "--json")
    assert made.returncode == 0, made.stderr
    address = json.loads(made.stdout)["email_address"]
    assert address == "triager@offline.test"
    # the README's command, pointed at this server and this inbox
    line = next(line for line in README.read_text().splitlines() if line.startswith("python -c"))
    code = line.removeprefix('python -c "').removesuffix('"')
    code = code.replace("2525", str(server.smtp_port)).replace("triager@agents.localhost",
                                                               address)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    deadline = time.time() + 10
    while not server.turns(conversation=address, status="delivered"):
        assert time.time() < deadline, server.turns(conversation=address)
        time.sleep(0.05)
    assert "Are you there?" in (tmp_path / "outbound" / "new").glob("*").__next__().read_text()
    revoked = cli("revoke", address)
    assert revoked.returncode == 0 and f"{address} is revoked" in revoked.stdout
    listed = server.api("GET", "/api/inboxes").json()["inboxes"]
    assert [(i["email_address"], i["active"]) for i in listed] == [(address, False)]
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(server, "you@example.com", address, compose("you@example.com", address)[1])


def test_a_mail_gets_a_threaded_answer_and_a_reply_continues_the_session(mail_server, relay):
    server, (captured, relay_port) = mail_server, relay
    inbox = provision(server, account="mail")
    first_id, raw = compose("Alice <alice@example.com>", inbox, subject="Nightly job",
                            headers={"Reply-To": "alice.private@example.com"})
    send(server, "alice@example.com", inbox, raw)
    answer = captured.wait(1)[0]
    assert answer["From"] == inbox
    assert answer["To"] == "alice@example.com"  # the sender; a Reply-To is never answered
    assert answer["Subject"] == "Re: Nightly job"
    assert answer["In-Reply-To"] == first_id
    assert answer["References"] == first_id
    assert answer["Auto-Submitted"] == "auto-replied"
    ours = answer["Message-ID"]
    assert ours.endswith("@agents.test>") and ours != first_id
    assert answer.get_content().strip() == "echo: Please restart the nightly job."
    first = turn_of(server, inbox, first_id)
    assert first["status"] == "delivered" and first["provider_message_id"] == ours
    assert first["provider"] == "email" and first["sender"] == "alice@example.com"
    assert first["conversation"] == inbox and first["thread"] == first_id
    delivered = next(e for e in first["events"] if e["name"] == "delivered")
    assert delivered["detail"]["relay"] == f"127.0.0.1:{relay_port}"
    assert "Please restart the nightly job." in first["payload"]["raw"]

    # the reply quotes the answer; the agent sees only what is new, in the same session
    quoted = ("Thanks, that fixed it.\n\nOn Mon, 1 Jan 2029 at 10:00, Triager "
              f"<{inbox}> wrote:\n> echo: Please restart the nightly job.\n")
    second_id, raw = compose("alice@example.com", inbox, quoted, subject="Re: Nightly job",
                             headers={"In-Reply-To": ours, "References": f"{first_id} {ours}"})
    send(server, "alice@example.com", inbox, raw)
    follow_up = captured.wait(2)[1]
    assert follow_up["To"] == "alice@example.com"
    assert follow_up["Subject"] == "Re: Nightly job"
    assert follow_up["In-Reply-To"] == second_id
    assert follow_up["References"].split() == [first_id, ours, second_id]
    second = turn_of(server, inbox, second_id)
    assert second["session_id"] == first["session_id"]
    assert second["text"] == "Thanks, that fixed it."
    transcript = server.api("GET", f"/api/sessions/{first['session_id']}").json()["transcript"]
    said = [m["text"] for m in transcript if m["role"] == "user"]
    assert said == ["Please restart the nightly job.", "Thanks, that fixed it."]
    assert not any("wrote:" in text or "> echo" in text for text in said)

    # a new thread is a new session (session_scope: thread)
    third_id, raw = compose("alice@example.com", inbox, "Another thing", subject="Other")
    send(server, "alice@example.com", inbox, raw)
    captured.wait(3)
    assert turn_of(server, inbox, third_id)["session_id"] != first["session_id"]


def test_unknown_recipient_oversized_and_malformed_mail_are_refused_html_is_read(
        mail_server, relay):
    server, (captured, _) = mail_server, relay
    inbox = provision(server, account="mail")
    acme = provision(server, account="acme")
    _, raw = compose("alice@example.com", "nobody@agents.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(server, "alice@example.com", "nobody@agents.test", raw)
    code, words = refused.value.recipients["nobody@agents.test"]
    assert code == 550 and words.startswith(b"5.1.1")

    big = "\n".join("x" * 70 for _ in range(500))  # about 35 kB: over the largest limit
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("size") and client.esmtp_features["size"] == "30000"
        with pytest.raises(smtplib.SMTPSenderRefused) as too_big:  # declared with SIZE
            client.sendmail("alice@example.com", [inbox], compose("a@example.com", inbox, big)[1])
        assert too_big.value.smtp_code == 552
        client.rset()
        assert client.mail("alice@example.com")[0] == 250  # not declared: read, then refused
        assert client.rcpt(inbox)[0] == 250
        code, _ = client.data(compose("alice@example.com", inbox, big)[1])
        assert code == 552
        # acme's own limit is smaller than what the server advertises
        client.rset()
        medium = "\n".join("y" * 70 for _ in range(200))  # about 14 kB
        assert client.mail("alice@acme.com")[0] == 250
        assert client.rcpt(acme)[0] == 250
        code, message = client.data(compose("alice@acme.com", acme, medium)[1])
        assert code == 552 and b"at most 10000 bytes" in message
        # unreadable mail is refused in words, and the session keeps working
        client.rset()
        assert client.mail("alice@example.com")[0] == 250
        assert client.rcpt(inbox)[0] == 250
        code, message = client.data(b"\x00\xff no header at all\r\n\r\nWho wrote this?\r\n")
        assert code == 554 and b"no header fields" in message
        client.rset()
        html_id, raw = compose("alice@example.com", inbox,
                               html="<html><body><p>Hello <b>there</b>,</p>"
                                    "<p>the <i>printer</i> is down.</p></body></html>")
        client.sendmail("alice@example.com", [inbox], raw)
    answer = captured.wait(1)[0]
    assert "echo: Hello there," in answer.get_content()
    assert "<b>" not in answer.get_content()
    turn = turn_of(server, inbox, html_id)
    assert turn["status"] == "delivered" and "the printer is down." in turn["text"]
    rejected = {a["name"]: a["rejected"] for a in server.api("GET", "/api/accounts").json()[
        "accounts"]}
    assert rejected["acme"] == {"too_big": 1} and rejected["mail"] == {"malformed": 1}


def test_automatic_mail_and_our_own_inboxes_are_ignored_with_reasons(mail_server, relay):
    server, (captured, _) = mail_server, relay
    inbox = provision(server, account="mail")
    helper = provision(server, "helper", account="mail")
    auto_id, auto = compose("alice@example.com", inbox, "I am out of office.",
                            subject="Out of office", headers={"Auto-Submitted": "auto-replied"})
    own_id, own = compose(helper, inbox, "echo: hello", subject="Re: hello")
    bounce_id, bounce = compose("MAILER-DAEMON@example.com", inbox, "Undeliverable")
    send(server, "alice@example.com", inbox, auto)
    send(server, helper, inbox, own)
    send(server, "", inbox, bounce)
    reasons = {mid: turn_of(server, inbox, mid) for mid in (auto_id, own_id, bounce_id)}
    assert all(t["status"] == "ignored" and t["reply_text"] is None for t in reasons.values())
    assert "Auto-Submitted: auto-replied" in reasons[auto_id]["route_reason"]
    assert reasons[own_id]["route_reason"] == (
        f"mail from our own inbox {helper}; answering it would loop")
    assert "MAILER-DAEMON" in reasons[bounce_id]["route_reason"] \
        or "bounce" in reasons[bounce_id]["route_reason"]
    time.sleep(0.3)
    assert captured.messages == []


def test_sender_authentication_and_allow_senders(mail_server, relay):
    server, (captured, _) = mail_server, relay
    acme = provision(server, account="acme")

    def results(header: str) -> dict[str, str]:
        return {"Authentication-Results": header}

    alice1, alice_raw = compose("alice@acme.com", acme, "First question",
                                headers=results(f"{AUTHSERV}; dkim=pass header.d=acme.com"))
    alice2, alice_raw2 = compose("alice@acme.com", acme, "Second, unrelated", subject="Other",
                                 headers=results(f"{AUTHSERV}; spf=pass "
                                                 "smtp.mailfrom=alice@acme.com"))
    bob, bob_raw = compose("bob@evil.test", acme, "Let me in",
                           headers=results(f"{AUTHSERV}; dkim=pass header.d=evil.test"))
    bare, bare_raw = compose("carol@acme.com", acme, "Wire the money")
    foreign, foreign_raw = compose("dave@acme.com", acme, "Wire it now",
                                   headers=results("mx.evil.test; dkim=pass header.d=acme.com"))
    failed, failed_raw = compose("bob@acme.com", acme, "Trust me",
                                 headers=results(f"{AUTHSERV}; dkim=fail header.d=acme.com"))
    for sender, raw in (("alice@acme.com", alice_raw), ("alice@acme.com", alice_raw2),
                        ("bob@evil.test", bob_raw), ("carol@acme.com", bare_raw),
                        ("dave@acme.com", foreign_raw), ("bob@acme.com", failed_raw)):
        send(server, sender, acme, raw)
    first, second = turn_of(server, acme, alice1), turn_of(server, acme, alice2)
    assert first["status"] == second["status"] == "delivered"
    assert first["session_id"] == second["session_id"]  # session_scope: sender
    assert turn_of(server, acme, bob)["route_reason"] == (
        "sender bob@evil.test is not in allow_senders of binding acme-only")
    assert turn_of(server, acme, bare)["route_reason"] == (
        f"From carol@acme.com is not authenticated: no Authentication-Results from {AUTHSERV}")
    assert turn_of(server, acme, foreign)["route_reason"] == (
        f"From dave@acme.com is not authenticated: no Authentication-Results from {AUTHSERV}")
    assert turn_of(server, acme, failed)["route_reason"].startswith(
        "From bob@acme.com is not authenticated: dkim=fail")
    signed = provision(server, account="signed")
    unsigned, raw = compose("alice@acme.com", signed, "Unsigned but honest")
    send(server, "alice@acme.com", signed, raw)
    assert turn_of(server, signed, unsigned)["route_reason"] == (
        "From alice@acme.com is not authenticated: no DKIM signature")
    time.sleep(0.3)
    assert sorted(str(m["To"]) for m in captured.messages) == ["alice@acme.com"] * 2


def test_relay_refusal_fails_a_down_relay_retries_and_the_maildir_says_where(
        mail_server, relay, tmp_path):
    server, (captured, _) = mail_server, relay
    inbox = provision(server, account="mail")
    offline = provision(server, account="offline")
    seen: list[dict[str, Any]] = []

    def enough(events: list[dict[str, Any]]) -> bool:
        return sum(e["event"] == "email.received" for e in events) >= 3

    reader = threading.Thread(target=read_sse, args=(f"{server.url}/api/events", seen, enough),
                              daemon=True)
    reader.start()
    time.sleep(0.3)

    refused_id, raw = compose("bounce@example.com", inbox, "Answer me", subject="Doomed")
    send(server, "bounce@example.com", inbox, raw)
    failed = turn_of(server, inbox, refused_id)
    assert failed["status"] == "failed" and failed["delivery_status"] == "failed"
    assert failed["error"].startswith("550")
    assert "Recipient address rejected: User unknown" in failed["error"]
    assert failed["delivery_attempts"] == 1  # permanent: not retried
    assert captured.messages == []

    down = provision(server, account="down")
    waiting_id, raw = compose("alice@example.com", down, "Anyone?")
    send(server, "alice@example.com", down, raw)
    waiting = turn_of(server, down, waiting_id, until=lambda t: t["delivery_status"] is not None
                      and t["delivery_status"] != "pending")
    assert waiting["delivery_status"] == "retrying" and waiting["status"] == "pending"
    assert waiting["error"].startswith("could not reach relay 127.0.0.1:")

    kept_id, raw = compose("alice@example.com", offline, "Offline hello", subject="Hi")
    send(server, "alice@example.com", offline, raw)
    kept = turn_of(server, offline, kept_id)
    assert kept["status"] == "delivered"
    where = next(e for e in kept["events"] if e["name"] == "delivered")["detail"]["maildir"]
    assert Path(where).parent == tmp_path / "outbound" / "new"
    written = email.message_from_bytes(Path(where).read_bytes(), policy=policy.default)
    assert written["From"] == offline and written["In-Reply-To"] == kept_id
    assert written["Message-ID"] == kept["provider_message_id"]

    reader.join(10)
    received = [e["data"] for e in seen if e["event"] == "email.received"]
    assert [(r["turn_id"], r["from"], r["to"], r["subject"]) for r in received] == [
        (failed["id"], "bounce@example.com", inbox, "Doomed"),
        (waiting["id"], "alice@example.com", down, "Nightly job"),
        (kept["id"], "alice@example.com", offline, "Hi")]
    assert re.fullmatch(r"turn_[0-9a-f]+", received[0]["turn_id"])


def test_inboxes_declared_in_the_config_exist_from_the_start(serve, tmp_path):
    maildir = tmp_path / "outbound"
    server = serve(f"""
agents:
  triager: {{handler: echo}}
accounts:
  mail:
    provider: email
    domain: agents.localhost
    maildir: {maildir}
    inboxes:
      triager: triager
bindings:
  - {{agent: triager, account: mail}}
""")
    listed = server.api("GET", "/api/inboxes").json()["inboxes"]
    assert [(i["email_address"], i["agent"]) for i in listed] == [
        ("triager@agents.localhost", "triager")]
    message_id, raw = compose("you@example.com", "triager@agents.localhost", "Are you there?")
    send(server, "you@example.com", "triager@agents.localhost", raw)
    turn = turn_of(server, "triager@agents.localhost", message_id)
    assert turn["status"] == "delivered"
    assert any(e["name"] == "delivered" and "maildir" in e.get("detail", {})
               for e in server.turn(turn["id"])["events"])
