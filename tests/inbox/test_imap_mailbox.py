"""An agent answering from an existing mailbox (`mode: imap`), against a real Dovecot: mail put
in the mailbox becomes a turn, the answer leaves through the relay threaded and lands in Sent;
IDLE, polling, restarts of either side, a new UIDVALIDITY, bad credentials."""

from __future__ import annotations

import email
import os
import time
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest

from conftest import ServeProcess, Server, free_port
from dovecot import PASSWORD, SENT, USER, Dovecot, dovecot_missing
from fakes.mail import Relay, compose, running_relay, turn_of

CUSTOMER = "carol@customer.test"
# the tests of what the database keeps (the position, the dedupe) run on SQLite and PostgreSQL;
# the others on SQLite only, to keep the suite fast (starting `serve` twice costs seconds)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def start_dovecot() -> Iterator[Callable[..., Dovecot]]:
    if (reason := dovecot_missing()) is not None:
        pytest.skip(reason)
    started: list[Dovecot] = []

    def start(**options: Any) -> Dovecot:
        server = Dovecot(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.remove()


@pytest.fixture
def dovecot(start_dovecot: Callable[..., Dovecot]) -> Dovecot:
    return start_dovecot()


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    with running_relay() as running:
        yield running


def mailbox_config(imap_port: int, relay_port: int, **keys: Any) -> str:
    """One echo agent answering from the mailbox support@acme.test; `keys` override."""
    account = {"provider": "email", "mode": "imap", "imap_host": "127.0.0.1",
               "imap_port": imap_port, "imap_security": "none", "username": USER,
               "password": PASSWORD, "agent": "helpdesk", "relay_host": "127.0.0.1",
               "relay_port": relay_port, "poll_interval": "200ms", "reconnect_min": "100ms",
               "reconnect_max": "400ms", "imap_timeout": "3s", **keys}
    account = {key: value for key, value in account.items() if value is not None}
    lines = "\n".join(f"    {key}: {value!r}" if isinstance(value, str) else
                      f"    {key}: {value}" for key, value in account.items())
    return f"""
agents:
  helpdesk: {{handler: echo}}
accounts:
  box:
{lines}
bindings:
  - {{agent: helpdesk, account: box, session_scope: thread}}
"""


def cli(*args: str) -> Any:
    """`switchboard ARGS` through Typer's runner (in this process: a subprocess costs seconds)."""
    from typer.testing import CliRunner

    from switchboard.cli import app

    return CliRunner().invoke(app, list(args))


def mailbox_row(server: Server | ServeProcess) -> dict[str, Any]:
    rows = server.api("GET", "/api/accounts").json()["accounts"]
    return next(row for row in rows if row["name"] == "box")


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.time() + timeout
    while not (found := check()):
        assert time.time() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)
    return found


def connected(server: Server | ServeProcess) -> dict[str, Any]:
    return wait_for(lambda: (row := mailbox_row(server))["connected"] and row, what="connected")


def answers(relay: Relay) -> list[email.message.EmailMessage]:
    return list(relay.messages)


def test_mail_in_the_mailbox_is_answered_in_its_thread_and_filed_in_sent(
        serve: Callable[[str], Server], dovecot: Dovecot, relay: tuple[Relay, int]) -> None:
    sink, relay_port = relay
    # a poll would come only after 30 s: what is picked up at once came through IDLE
    server = serve(mailbox_config(dovecot.port, relay_port, poll_interval="30s"))
    row = connected(server)
    assert row["connection"]["waiting"] == "idle" and row["status"] == "connected"

    first_id, raw = compose(CUSTOMER, USER, "The nightly export failed again.")
    put_at = time.time()
    dovecot.deliver(raw)
    wait_for(lambda: server.turns(q=f"{USER}:{first_id}"), what="the turn")
    picked_up = time.time() - put_at
    assert picked_up < 2.5, f"IDLE took {picked_up:.2f} s"  # Dovecot tells in about 0.5 s
    turn = turn_of(server, USER, first_id)
    assert turn["status"] == "delivered", turn
    assert turn["provider"] == "email" and turn["account"] == "box"
    assert turn["agent"] == "helpdesk" and turn["sender"] == CUSTOMER

    answer = sink.wait(1)[0]
    assert sink.recipients[0] == [CUSTOMER]
    assert answer["From"] == USER and answer["To"] == CUSTOMER
    assert answer["In-Reply-To"] == first_id and answer["References"] == first_id
    assert answer["Subject"] == "Re: Nightly job"
    assert "The nightly export failed again." in answer.get_content()

    # recorded, then \Seen in the mailbox; the answer is in Sent (found by its \Sent flag)
    wait_for(lambda: all("\\Seen" in flags for _, flags, _ in dovecot.messages()), what="seen")
    sent = wait_for(lambda: dovecot.messages(SENT), what="the answer in Sent")
    filed = email.message_from_bytes(sent[0][2], policy=policy.default)
    assert filed["Message-ID"] == answer["Message-ID"] and "\\Seen" in sent[0][1]
    assert server.wait_turn(turn["id"], lambda t: any(
        e.get("detail", {}).get("sent_folder") == SENT for e in t["events"]))

    # the customer answers our answer: the same thread, the same session
    second_id, raw = compose(CUSTOMER, USER, "Thanks, it ran.", subject="Re: Nightly job",
                             headers={"In-Reply-To": answer["Message-ID"],
                                      "References": f"{first_id} {answer['Message-ID']}"})
    dovecot.deliver(raw)
    follow_up = turn_of(server, USER, second_id)
    assert follow_up["thread"] == turn["thread"] == first_id
    assert follow_up["session_id"] == turn["session_id"]
    second = sink.wait(2)[1]
    assert second["In-Reply-To"] == second_id
    assert second["References"].split() == [first_id, answer["Message-ID"], second_id]

    row = mailbox_row(server)
    assert row["connected"] is True and row["connection"]["last_message_at"]
    assert row["last_message_at"] == row["connection"]["last_message_at"]  # issue 21's words
    assert row["last_inbound_at"] and row["error"] is None


@SQLITE_ONLY
def test_mail_the_automatic_guard_and_sender_checks_apply_as_over_smtp(
        serve: Callable[[str], Server], dovecot: Dovecot, relay: tuple[Relay, int]) -> None:
    sink, relay_port = relay
    server = serve(mailbox_config(dovecot.port, relay_port, max_message_bytes="2KiB"))
    connected(server)
    auto_id, raw = compose("robot@customer.test", USER, "I am away.",
                           headers={"Auto-Submitted": "auto-replied"})
    dovecot.deliver(raw)
    bounce_id, raw = compose("mailer@customer.test", USER, "Undeliverable",
                             headers={"Return-Path": "<>"})
    dovecot.deliver(raw)
    _, big = compose(CUSTOMER, USER, "x" * 4000, subject="Too big")
    dovecot.deliver(big)
    ok_id, raw = compose(CUSTOMER, USER, "A real question")
    dovecot.deliver(raw)
    assert turn_of(server, USER, ok_id)["status"] == "delivered"
    for message_id, words in ((auto_id, "Auto-Submitted"), (bounce_id, "empty envelope")):
        turn = turn_of(server, USER, message_id)
        assert turn["status"] == "ignored" and words in turn["route_reason"], turn
    assert len(sink.wait(1)) == 1
    row = wait_for(lambda: (r := mailbox_row(server))["rejected"] and r)
    assert row["rejected"] == {"too_big": 1}
    flags = {raw[:200].count(b"Too big") > 0: f for _, f, raw in dovecot.messages()}
    assert "\\Seen" not in flags[True]  # left unread for a person, not read again


@SQLITE_ONLY
def test_without_agent_the_mailbox_address_must_be_provisioned(
        serve: Callable[[str], Server], dovecot: Dovecot, relay: tuple[Relay, int]) -> None:
    from conftest import OPERATOR
    from fakes.mail import provision

    sink, relay_port = relay
    server = serve(mailbox_config(dovecot.port, relay_port, agent=None))
    message_id, raw = compose(CUSTOMER, USER, "Anyone there?")
    dovecot.deliver(raw)
    row = wait_for(lambda: (r := mailbox_row(server))["error"] and r)
    assert "support@acme.test is no live inbox of account box" in row["error"]
    assert server.api("POST", "/api/agents/helpdesk/inbox", token=OPERATOR,
                      json={"account": "box"}).json()["email_address"] == "helpdesk@acme.test"
    assert provision(server, "helpdesk", account="box", local_part="support") == USER
    assert turn_of(server, USER, message_id)["status"] == "delivered"  # read again, answered
    assert len(sink.wait(1)) == 1 and connected(server)["error"] is None


@SQLITE_ONLY
def test_a_dovecot_restart_mid_idle_reconnects_and_loses_nothing(
        serve: Callable[[str], Server], dovecot: Dovecot, relay: tuple[Relay, int]) -> None:
    sink, relay_port = relay
    server = serve(mailbox_config(dovecot.port, relay_port))
    connected(server)
    dovecot.stop()
    row = wait_for(lambda: not (r := mailbox_row(server))["connected"] and r["error"] and r)
    assert row["status"] == "failing" and "mailbox support@acme.test" in row["error"]
    # mail delivered while the IMAP server is down (the MTA writes the maildir itself)
    message_id, raw = compose(CUSTOMER, USER, "Sent while you were away")
    new = dovecot.maildir / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / "1700000000.M1P1.test").write_bytes(raw)
    os.chown(new / "1700000000.M1P1.test", dovecot.uid, dovecot.gid) \
        if os.geteuid() == 0 else None
    dovecot.start()
    assert turn_of(server, USER, message_id)["status"] == "delivered"
    row = connected(server)
    assert row["error"] is None and row["connection"]["last_error"]
    after_id, raw = compose(CUSTOMER, USER, "And after")
    dovecot.deliver(raw)
    assert turn_of(server, USER, after_id)["status"] == "delivered"
    assert len(sink.wait(2)) == 2


@SQLITE_ONLY  # two process starts; on PostgreSQL the e2e and UIDVALIDITY tests keep the position
def test_sigkill_of_serve_between_recording_and_seen_gives_no_second_answer(
        tmp_path: Path, database_url: str, dovecot: Dovecot,
        relay: tuple[Relay, int]) -> None:
    from conftest import OPERATORS_YAML

    sink, relay_port = relay
    config = tmp_path / "bindings.yaml"
    config.write_text(mailbox_config(dovecot.port, relay_port) + OPERATORS_YAML
                      + "delivery: {lease: 1s, worker_timeout: 1s, backoff: 100ms}\n")
    serve = ServeProcess(config, database_url, tmp_path)
    try:
        connected(serve)
        message_id, raw = compose(CUSTOMER, USER, "Answer me once")
        dovecot.deliver(raw)
        # answered and delivered first: the outbox's at-least-once window toward the relay
        # (killed after the relay took the answer, before it was marked) is not this test's
        wait_for(lambda: [t["status"] for t in serve.api("GET", "/api/turns").json()["turns"]]
                 == ["delivered"], what="the answer")
        serve.kill()
    finally:
        serve.stop()
    # the mailbox as a kill between recording and \Seen leaves it: the message unseen
    client = dovecot.imap()
    client.select("INBOX")
    client.uid("STORE", "1:*", "-FLAGS", "(\\Seen)")
    client.logout()
    again = Server(config, database_url).start()  # serve again, on the same database
    try:
        connected(again)
        later_id, raw = compose(CUSTOMER, USER, "A second question")
        dovecot.deliver(raw)
        assert turn_of(again, USER, later_id)["status"] == "delivered"
        assert turn_of(again, USER, message_id)["status"] == "delivered"
        assert [m["In-Reply-To"] for m in sink.wait(2)] == [message_id, later_id]
        assert len(again.turns()) == 2
    finally:
        again.stop()


def test_a_new_uidvalidity_answers_nothing_again(
        serve: Callable[[str], Server], dovecot: Dovecot, relay: tuple[Relay, int]) -> None:
    sink, relay_port = relay
    server = serve(mailbox_config(dovecot.port, relay_port))
    connected(server)
    message_id, raw = compose(CUSTOMER, USER, "Only once, please")
    dovecot.deliver(raw)
    assert turn_of(server, USER, message_id)["status"] == "delivered"
    sink.wait(1)
    dovecot.recreate_inbox()  # a new UIDVALIDITY; the same message is in it, unseen
    dovecot.deliver(raw)
    fresh_id, fresh = compose(CUSTOMER, USER, "Something new")
    dovecot.deliver(fresh)
    assert turn_of(server, USER, fresh_id)["status"] == "delivered"
    first = turn_of(server, USER, message_id)
    again = wait_for(lambda: server.turns(status="duplicate"), what="the duplicate")
    assert [t["duplicate_of"] for t in again] == [first["id"]]
    assert sorted(t["status"] for t in server.turns()) == ["delivered", "delivered"]
    assert [m["In-Reply-To"] for m in sink.wait(2)] == [message_id, fresh_id]


@SQLITE_ONLY
def test_polling_when_the_server_has_no_idle(
        serve: Callable[[str], Server], start_dovecot: Callable[..., Dovecot],
        relay: tuple[Relay, int]) -> None:
    sink, relay_port = relay
    dovecot = start_dovecot(idle=False)
    server = serve(mailbox_config(dovecot.port, relay_port, processed_folder="Done"))
    assert connected(server)["connection"]["waiting"] == "poll"
    message_id, raw = compose(CUSTOMER, USER, "Polled")
    dovecot.deliver(raw)
    assert turn_of(server, USER, message_id)["status"] == "delivered"
    assert sink.wait(1)[0]["In-Reply-To"] == message_id
    moved = wait_for(lambda: dovecot.messages("Done"), what="moved to Done")
    assert "\\Seen" in moved[0][1] and dovecot.messages() == []


@SQLITE_ONLY
def test_a_sent_folder_that_cannot_be_written_is_recorded_not_fatal(
        serve: Callable[[str], Server], dovecot: Dovecot, relay: tuple[Relay, int]) -> None:
    sink, relay_port = relay
    server = serve(mailbox_config(dovecot.port, relay_port, sent_folder="No/Such"))
    connected(server)
    message_id, raw = compose(CUSTOMER, USER, "Hello")
    dovecot.deliver(raw)
    turn = turn_of(server, USER, message_id)
    assert turn["status"] == "delivered" and len(sink.wait(1)) == 1
    details = [e.get("detail", {}) for e in turn["events"]]
    assert any("APPEND to 'No/Such' failed" in d.get("sent_folder_error", "")
               for d in details), details


@SQLITE_ONLY
def test_bad_credentials_are_a_clear_account_error_and_inbox_test_says_why(
        serve: Callable[[str], Server], start_dovecot: Callable[..., Dovecot],
        relay: tuple[Relay, int], tmp_path: Path, database_url: str) -> None:
    _, relay_port = relay
    # a Dovecot each: it delays logins from an address that failed before (auth penalty)
    config = tmp_path / "bad.yaml"
    config.write_text(mailbox_config(start_dovecot().port, relay_port,
                                     password="not-the-password"))
    result = cli("inbox", "test", "box", "--config", str(config))
    assert result.exit_code == 1
    assert "login failed" in result.output and "AUTHENTICATIONFAILED" in result.output
    assert "not-the-password" not in result.output
    server = serve(mailbox_config(start_dovecot().port, relay_port,
                                  password="not-the-password"))
    row = wait_for(lambda: (r := mailbox_row(server))["error"] and r)
    assert row["status"] == "failing" and row["connected"] is False
    assert "refused the login of support@acme.test" in row["error"], row
    assert "not-the-password" not in str(row)


def test_inbox_test_prints_what_the_server_offers_or_exactly_what_fails(
        start_dovecot: Callable[..., Dovecot], tmp_path: Path) -> None:
    dovecot = start_dovecot()
    dovecot.deliver(compose(CUSTOMER, USER)[1])

    def inbox_test(**keys: Any) -> Any:
        config = tmp_path / "box.yaml"
        config.write_text(mailbox_config(keys.pop("imap_port", dovecot.port), 25, **keys))
        return cli("inbox", "test", "box", "--config", str(config))

    ok = inbox_test()
    assert ok.exit_code == 0, ok.output
    assert "folder INBOX: 1 messages" in ok.output and "IDLE: yes" in ok.output
    assert f"Sent folder: {SENT}" in ok.output and "MOVE" in ok.output
    for keys, words in (
        ({"imap_host": "no-such-host.invalid", "imap_security": "tls"}, "DNS failed"),
        ({"imap_port": free_port()}, "connection failed: cannot connect to 127.0.0.1"),
        ({"imap_security": "tls"}, "TLS failed"),
        ({"imap_security": "starttls"}, "does not offer STARTTLS"),
        ({"folder": "Archive/2020"}, "folder failed: cannot open folder 'Archive/2020'"),
        ({"password": None, "oauth2_token_command": "echo no token >&2; exit 3"},
         "XOAUTH2 token failed: oauth2_token_command (echo) failed with exit code 3: no token"),
    ):
        failed = inbox_test(**keys)
        assert failed.exit_code == 1 and words in failed.output, (keys, failed.output)


def test_inbox_test_checks_the_certificate_with_tls_and_starttls(
        start_dovecot: Callable[..., Dovecot], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dovecot = start_dovecot(tls=True)

    def inbox_test(**keys: Any) -> Any:
        config = tmp_path / "box.yaml"
        config.write_text(mailbox_config(keys.pop("imap_port"), 25, **keys))
        return cli("inbox", "test", "box", "--config", str(config))

    implicit = {"imap_port": dovecot.tls_port, "imap_security": "tls"}
    untrusted = inbox_test(**implicit)
    assert untrusted.exit_code == 1
    assert "TLS failed: TLS with 127.0.0.1" in untrusted.output
    assert "certificate was not accepted" in untrusted.output
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))  # the system trust store honours it
    for keys in (implicit, {"imap_port": dovecot.port, "imap_security": "starttls"},
                 {"imap_host": "localhost", "imap_port": dovecot.tls_port,
                  "imap_security": "tls"}):
        trusted = inbox_test(**keys)
        assert trusted.exit_code == 0 and "folder INBOX: 0 messages" in trusted.output, \
            (keys, trusted.output)
        assert f"({keys['imap_security']})" in trusted.output
    logins = [line for line in dovecot.log().splitlines() if "Login: user=<" in line]
    assert len(logins) == 3 and all(", TLS," in line for line in logins), logins


@pytest.fixture
def token_introspection() -> Iterator[str]:
    """The OAuth2 server's token introspection (RFC 7662) that Dovecot asks: `good-token` is
    an active token of the mailbox's user, anything else is not."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    class Introspect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"] or 0)).decode())
            active = form.get("token") == ["good-token"]
            body = json.dumps({"active": active, **({"username": USER} if active else {})})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Introspect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/introspect"
    server.shutdown()
    server.server_close()


def test_xoauth2_logs_in_with_the_token_the_command_prints(
        start_dovecot: Callable[..., Dovecot], token_introspection: str,
        tmp_path: Path) -> None:
    dovecot = start_dovecot(oauth2_url=token_introspection)

    def inbox_test(command: str) -> Any:
        config = tmp_path / "box.yaml"
        config.write_text(mailbox_config(dovecot.port, 25, password=None,
                                         oauth2_token_command=command))
        return cli("inbox", "test", "box", "--config", str(config))

    good = inbox_test("echo good-token")
    assert good.exit_code == 0 and "folder INBOX: 0 messages" in good.output, good.output
    started = time.time()
    stale = inbox_test("printf stale-token")
    assert stale.exit_code == 1 and "login failed" in stale.output, stale.output
    assert "refused the login of support@acme.test" in stale.output
    assert time.time() - started < 2.5  # refused at once, not waited out
    assert "stale-token" not in stale.output


@pytest.mark.parametrize(("keys", "words"), [
    ({"imap_host": "imap.example.com"}, "only allowed to a loopback host"),
    ({"imap_host": None}, "mode: imap needs imap_host"),
    ({"username": "support", "address": None}, "needs address"),
    ({"oauth2_token_command": "get-token"}, "not both"),
])
def test_mailbox_settings_are_checked(tmp_path: Path, keys: dict[str, Any], words: str) -> None:
    config = tmp_path / "box.yaml"
    config.write_text(mailbox_config(993, 25, **keys))
    result = cli("check", "--config", str(config))
    assert result.exit_code == 1 and words in result.output, result.output
