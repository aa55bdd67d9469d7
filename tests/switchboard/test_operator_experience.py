"""An operator's first ten minutes and daily use (issue 20): the CLI finds the database serve
uses and never makes one up, filters refuse nonsense, `check` says what `serve` will do,
`/healthz` tells the truth, and what needs attention is in the log with the turn id."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import ADMIN, OPERATORS_YAML, Server, free_port, slack_config, slack_message
from switchboard.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "bindings.yaml"


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """The CLI through its runner, with no Switchboard variable but those given."""
    environment = {"SWITCHBOARD_DATABASE_URL": "", "COLUMNS": "200", "NO_COLOR": "1",
                   **(env or {})}
    return CliRunner().invoke(app, list(args), env=environment)


def said(result: Any) -> str:
    return " ".join((result.stdout + result.stderr).split())


# --- 1. the database is the one serve uses, and never made up by a read ------------------


def test_read_commands_never_create_a_database_and_say_where_they_looked(tmp_path,
                                                                         monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for command in (("turns", "list"), ("sessions", "list"), ("inbox", "list"),
                    ("turns", "show", "turn_x")):
        result = cli(*command)
        assert result.exit_code == 1, said(result)
        assert f"no database at sqlite:///{elsewhere}/switchboard.db (beside bindings.yaml)" \
            in said(result)
        assert "--config" in said(result)
    assert list(elsewhere.iterdir()) == []  # nothing was created

    # a `database:` key, relative to the config's folder; --config on every command
    site = tmp_path / "site"
    site.mkdir()
    config = site / "bindings.yaml"
    config.write_text(EXAMPLE.read_text() + "database: sqlite:///data.db\n")
    made = cli("db", "upgrade", "--config", str(config))
    assert made.exit_code == 0, said(made)
    assert (site / "data.db").exists()
    where = f"sqlite:///{site}/data.db (from database: in {config})"
    assert where in said(made)
    empty = cli("turns", "list", "--config", str(config))
    assert empty.exit_code == 0, said(empty)
    assert said(empty) == f"no turns in {where}"
    filtered = cli("turns", "list", "--config", str(config), "--status", "failed")
    assert said(filtered) == f"no turns match status=failed in {where}"
    sessions = cli("sessions", "list", "-c", str(config), "--state", "live")
    assert said(sessions) == f"no sessions match state=live in {where}"
    assert list(elsewhere.iterdir()) == []

    # SWITCHBOARD_DATABASE_URL wins over both, as in serve
    url = f"sqlite:///{tmp_path / 'env.db'}"
    overridden = cli("turns", "list", "--config", str(config), env={
        "SWITCHBOARD_DATABASE_URL": url})
    assert overridden.exit_code == 1
    assert f"no database at {url} (from SWITCHBOARD_DATABASE_URL)" in said(overridden)
    checked = cli("check", "--config", str(config))
    assert checked.exit_code == 0, said(checked)
    assert f"ok (1 agent, 3 accounts, 3 bindings); database {where}" in said(checked)


# --- 7. filters refuse values nothing can have -------------------------------------------


def test_unknown_filter_values_are_refused_with_the_allowed_ones(tmp_path, sqlite_url,
                                                                 fake_slack):
    for args, allowed in ((("turns", "list", "--status", "bogus"),
                           "'pending', 'held', 'delivered', 'failed', 'ignored', 'duplicate'"),
                          (("sessions", "list", "--state", "bogus"),
                           "'live', 'idle', 'paused', 'ended'"),
                          (("turns", "list", "--provider", "pigeon"),
                           "'slack', 'telegram', 'email', 'api'")):
        result = cli(*args, env={"SWITCHBOARD_DATABASE_URL": sqlite_url})
        assert result.exit_code == 2, said(result)
        assert allowed in said(result)

    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        turns = server.api("GET", "/api/turns", params={"status": "bogus"})
        assert turns.status_code == 400
        assert turns.json() == {"detail": "status: 'bogus' is not one of pending, held, "
                                          "delivered, failed, ignored, duplicate"}
        sessions = server.api("GET", "/api/sessions", params={"state": "gone", "tag": "x"})
        assert sessions.status_code == 400
        assert sessions.json()["detail"] == (
            "state: 'gone' is not one of live, idle, paused, ended; "
            "tag: 'x' is not one of test, live")
        assert server.api("GET", "/api/turns", params={"status": "failed"}).status_code == 200
    finally:
        server.stop()


# --- 6. check validates as serve does -----------------------------------------------------


def test_check_says_what_serve_will_do_and_fails_on_what_serve_refuses(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    result = cli("check", "--config", str(empty))
    assert result.exit_code == 1
    assert f"{empty}:1: (file): the file is empty" in said(result)

    broken = tmp_path / "broken.yaml"
    broken.write_text("agents:\n  triager: {handler: echo\nbindings: []\n")
    result = cli("check", "--config", str(broken))
    assert result.exit_code == 1
    assert (f"{broken}:3: (yaml): expected ',' or '}}', but got ':' (line 3, column 9), while "
            "parsing a flow mapping that started on line 2") in said(result)

    secret = tmp_path / "secret.yaml"
    secret.write_text("""
agents: {triager: {handler: echo}}
accounts:
  tg: {provider: telegram, token: "1:abc", webhook_secret: "has spaces!"}
bindings: [{agent: triager, account: tg}]
""")
    result = cli("check", "--config", str(secret))
    assert result.exit_code == 1
    assert f"{secret}:4: accounts.tg.webhook_secret: webhook_secret must be 1-256 characters" \
        in said(result)

    unset = tmp_path / "unset.yaml"
    unset.write_text("""
agents: {triager: {handler: echo}}
accounts:
  slack-acme: {provider: slack, bot_token: "${SB_TEST_UNSET_TOKEN}", signing_secret: s}
bindings: [{agent: triager, account: slack-acme}]
""")
    result = cli("check", "--config", str(unset))
    assert result.exit_code == 0, said(result)
    assert ("warning account slack-acme will start disabled: bot_token is not set "
            "(environment variable SB_TEST_UNSET_TOKEN)") in said(result)
    assert "ok (1 agent, 1 account, 1 binding)" in said(result)


# --- 5. /healthz reflects the listeners and the database ----------------------------------


MAIL_YAML = """
agents: {triager: {handler: echo}}
accounts:
  mail: {provider: email, domain: agents.test, inboxes: {triager: triager}}
bindings: [{agent: triager, account: mail}]
"""


def _taken(port: int) -> socket.socket:
    taken = socket.socket()
    taken.bind(("127.0.0.1", port))
    taken.listen()
    return taken


@pytest.mark.parametrize("with_slack", [False, True])
def test_healthz_is_degraded_or_down_when_smtp_cannot_listen(tmp_path, sqlite_url,
                                                             fake_slack, with_slack):
    path = tmp_path / "bindings.yaml"
    text = MAIL_YAML + OPERATORS_YAML
    if with_slack:
        text = text.replace("accounts:\n", "accounts:\n  slack-acme: {provider: slack, "
                            f"bot_token: xoxb-1, signing_secret: s, api_url: "
                            f"'{fake_slack.api_url}'}}\n")
    path.write_text(text)
    server = Server(path, sqlite_url)
    taken = _taken(server.smtp_port)
    try:
        server.start()
        health = server.http.get("/healthz")
        body = health.json()
        reason = body["reasons"].pop("mail")
        assert reason.startswith(f"the SMTP server cannot listen on 127.0.0.1:"
                                 f"{server.smtp_port}: ")
        assert "address already in use" in reason.lower()
        if with_slack:
            assert health.status_code == 200
            assert body == {"status": "degraded", "accounts": {
                "slack-acme": "enabled", "mail": "failing"}, "reasons": {}}
        else:
            assert health.status_code == 503
            assert body == {"status": "down", "accounts": {"mail": "failing"}, "reasons": {}}
    finally:
        taken.close()
        server.stop()


# --- 4. what needs attention is logged, with the turn id ----------------------------------


def test_failed_and_retried_deliveries_are_warnings_naming_the_turn(tmp_path, sqlite_url,
                                                                    fake_slack, caplog):
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML
                    + "delivery: {backoff: 10ms, max_backoff: 20ms}\n")
    server = Server(path, sqlite_url).start()
    try:
        with caplog.at_level(logging.WARNING, logger="switchboard"):
            fake_slack.server_error_next(1)
            retried = server.slack_event("slack-acme", slack_message(
                "<@UBOT> one", etype="app_mention")).json()["turn_id"]
            assert server.wait_turn(retried)["status"] == "delivered"
            fake_slack.fail_next("channel_not_found")
            failed = server.slack_event("slack-acme", slack_message(
                "<@UBOT> two", etype="app_mention")).json()["turn_id"]
            assert server.wait_turn(failed)["status"] == "failed"
    finally:
        server.stop()
    lines = {r.getMessage(): r for r in caplog.records if r.levelno == logging.WARNING}
    retry = next(m for m in lines if m.startswith(f"turn {retried}: delivery attempt 1 "
                                                 "failed, retry in"))
    assert lines[retry].turn_id == retried  # a field of its own in JSON logs
    assert f"turn {failed}: delivery failed after 1 attempt(s): channel_not_found" in \
        " ".join(lines)


def test_json_logs_are_one_object_per_line_for_uvicorn_and_ours(capsys):
    from switchboard.serving import log_config

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    logging.config.dictConfig(log_config("info", "json"))
    try:
        logging.getLogger("switchboard.delivery").warning(
            "turn %s: delivery failed", "turn_1", extra={"turn_id": "turn_1"})
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5",
                                                 "GET", "/healthz", "1.1", 200)
        logging.getLogger("uvicorn.error").info("Application startup complete.")
    finally:
        for handler in root.handlers:
            handler.flush()
        root.handlers[:], root.level = before
    lines = [json.loads(line) for line in io.StringIO(capsys.readouterr().err)]
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("switchboard.delivery", "WARNING"), ("uvicorn.access", "INFO"),
        ("uvicorn.error", "INFO")]
    assert lines[0]["message"] == "turn turn_1: delivery failed"
    assert lines[0]["turn_id"] == "turn_1" and lines[0]["time"]
    assert lines[1]["message"] == '127.0.0.1:5 - "GET /healthz HTTP/1.1" 200'


def test_api_admin_token_is_accepted(tmp_path, sqlite_url, fake_slack):
    """(the operators of OPERATORS_YAML: no token is generated when there are operators)"""
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        assert server.api("GET", "/api/me", token=ADMIN).status_code == 200
        assert server.call(server.runtime.operators.first_admin(server.runtime.store)) is None
    finally:
        server.stop()


def test_serve_on_a_busy_port_prints_no_token_and_the_next_start_does(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_cli", Path(__file__).with_name(
        "test_cli.py"))
    assert spec and spec.loader
    serve_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_cli)
    Process, clean_env = serve_cli.Process, serve_cli.clean_env

    (tmp_path / "bindings.yaml").write_text(EXAMPLE.read_text())
    port = free_port()
    env = clean_env()
    args = ("--port", str(port), "--smtp-port", str(free_port()), "--log-format", "json")
    taken = _taken(port)
    try:
        refused = Process(tmp_path, *args, env=env)
        assert refused.proc.wait(30) != 0
    finally:
        taken.close()
    assert not any("sb_" in line for line in refused.printed()), refused.stdout
    assert "address already in use" in refused.stderr().lower()

    started = Process(tmp_path, *args, env=env)
    try:
        found = started.wait_for(r"\b(sb_[A-Za-z0-9_-]{20,})")
        assert found, started.stderr()
        assert started.wait_healthy(f"http://127.0.0.1:{port}").json()["status"] == "ok"
        started.proc.send_signal(signal.SIGHUP)  # systemctl reload
        deadline = time.monotonic() + 20
        while "config reloaded from bindings.yaml" not in started.stderr():
            assert time.monotonic() < deadline, started.stderr()
            time.sleep(0.1)
        assert started.stop() in (0, -15)
    finally:
        started.kill()
    log = [json.loads(line) for line in started.stderr().splitlines()]
    messages = [line["message"] for line in log]
    assert f"serving: the console is at http://127.0.0.1:{port}/" in messages
    for line in ("account slack-acme is disabled: bot_token is not set",
                 "account tg is disabled: token is not set",
                 "account mail is running (email, SMTP on 127.0.0.1:"):
        assert sum(m.startswith(line) for m in messages) == 2, (line, messages)  # and reload
    assert any(m.startswith("Application startup complete") for m in messages)
    assert f"database sqlite:///{tmp_path}/switchboard.db (beside bindings.yaml)" in messages
    assert found.group(1) not in started.stderr()


# --- 10. the API refuses unknown fields, and a session may start with a message -------------


def test_unknown_fields_are_refused_and_a_session_can_start_with_a_message(tmp_path,
                                                                         sqlite_url,
                                                                         fake_slack):
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        typo = server.api("POST", "/api/agents/triager/sessions", json={"txet": "hi"})
        assert typo.status_code == 400
        assert typo.json() == {"error": "unknown field txet"}
        assert server.api("GET", "/api/sessions").json()["sessions"] == []  # none was made
        started = server.api("POST", "/api/agents/triager/sessions",
                             json={"text": "hello there", "wait": 5})
        assert started.status_code == 201, started.text
        body = started.json()
        assert body["agent"] == "triager" and body["turn"]["status"] == "delivered"
        assert "hello there" in body["turn"]["reply_text"]
        extra = server.api("POST", f"/api/sessions/{body['id']}/transfer",
                           json={"agent": "triager", "force": True})
        assert (extra.status_code, extra.json()) == (400, {"error": "unknown field force"})
        schema = server.http.get("/openapi.json").json()
        answers = schema["paths"]["/api/agents/{agent}/sessions"]["post"]["responses"]
        assert {"201", "400", "404"} <= set(answers) and "422" not in answers
        pause = schema["paths"]["/api/sessions/{session_id}/pause"]["post"]["responses"]
        assert {"404", "409"} <= set(pause)
    finally:
        server.stop()


# --- 9. the agent reads the message without the bot's own mention -----------------------------


def test_the_agent_gets_slack_text_without_the_mention_and_the_turn_keeps_it(tmp_path,
                                                                            sqlite_url,
                                                                            fake_slack):
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        raw = "<@UBOT> hello <@U0BOB|bob>, see <#C0GEN|general>"
        turn_id = server.slack_event("slack-acme", slack_message(
            raw, etype="app_mention")).json()["turn_id"]
        turn = server.wait_turn(turn_id)
        assert turn["status"] == "delivered", turn
        assert turn["text"] == raw  # what Slack sent, kept on the turn
        assert turn["reply_text"] == "echo: hello @bob, see #general"
        [post] = fake_slack.posts_to("C0SUPPORT")
        assert post["text"] == "echo: hello @bob, see #general"
    finally:
        server.stop()


# --- 8. a reply that never reached the person is marked in the transcript ----------------------


def test_transcripts_mark_a_reply_that_was_not_delivered(tmp_path, sqlite_url, fake_slack):
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        fake_slack.fail_next("channel_not_found")
        failed = server.wait_turn(server.slack_event("slack-acme", slack_message(
            "first", channel="D0ALICE", channel_type="im")).json()["turn_id"])
        assert failed["status"] == "failed"
        delivered = server.wait_turn(server.slack_event("slack-acme", slack_message(
            "second", channel="D0ALICE", channel_type="im")).json()["turn_id"])
        assert delivered["status"] == "delivered"
        session = server.api("GET", f"/api/sessions/{failed['session_id']}").json()
    finally:
        server.stop()
    replies = [(e["text"], e.get("delivery")) for e in session["transcript"]
               if e["role"] == "agent"]
    assert replies == [("echo: first", {"status": "failed", "error": "channel_not_found"}),
                       ("echo: second", None)]
    shown = cli("sessions", "show", session["id"], "--config", str(path),
                env={"SWITCHBOARD_DATABASE_URL": sqlite_url})
    assert shown.exit_code == 0, said(shown)
    lines = [line for line in shown.stdout.splitlines() if "echo:" in line]
    assert lines[0].endswith("echo: first  [failed: channel_not_found]")
    assert lines[1].endswith("echo: second")


# --- 13. config reload (what SIGHUP runs) ----------------------------------------------------


def test_reload_applies_new_bindings_and_refuses_a_bad_config(tmp_path, sqlite_url,
                                                              fake_slack, caplog):
    from switchboard.reload import reload_config

    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        before = server.wait_turn(server.slack_event("slack-acme", slack_message(
            "hi", channel="D0ALICE", channel_type="im")).json()["turn_id"])
        assert before["agent"] == "triager"
        path.write_text(slack_config(fake_slack.api_url).replace(
            "triager: {handler: echo, model: small}",
            "triager: {handler: echo, model: small}\n  helper: {handler: echo}").replace(
            "  - agent: triager", "  - agent: helper") + OPERATORS_YAML
            + "  - {name: late, role: viewer, token: a-token-added-later}\n")
        assert server.call(reload_config(server.runtime, str(path))) is True
        after = server.wait_turn(server.slack_event("slack-acme", slack_message(
            "hi again", channel="D0BOB", channel_type="im", user="U0BOB")).json()["turn_id"])
        assert (after["agent"], after["status"]) == ("helper", "delivered")
        assert server.api("GET", "/api/me", token="a-token-added-later").json()["name"] == "late"
        assert server.http.get("/healthz").json()["accounts"] == {"slack-acme": "enabled"}

        path.write_text("agents: {helper: {handler: nope}}\n")
        with caplog.at_level(logging.ERROR, logger="switchboard.reload"):
            assert server.call(reload_config(server.runtime, str(path))) is False
        assert any("agents.helper.handler" in r.getMessage() for r in caplog.records)
        assert "the running config is kept" in caplog.records[-1].getMessage()
        kept = server.wait_turn(server.slack_event("slack-acme", slack_message(
            "still there?", channel="D0BOB", channel_type="im", user="U0BOB")).json()["turn_id"])
        assert (kept["agent"], kept["status"]) == ("helper", "delivered")
    finally:
        server.stop()


# --- 12. the CLI's polish ---------------------------------------------------------------------


def test_cli_version_help_and_tables_that_fit_80_columns(tmp_path, sqlite_url, monkeypatch):
    from switchboard import __version__, cli_common

    assert said(cli("--version")) == f"switchboard {__version__}"
    helped = cli("turns", "list", "-h")
    assert helped.exit_code == 0
    assert "<bool>" not in helped.stdout and "--json" in helped.stdout
    assert "[pending|held|delivered|failed|ignored|duplicate]" in said(helped) or \
        "<pending|held|delivered|failed|ignored|duplicate>" in said(helped)

    (tmp_path / "bindings.yaml").write_text(EXAMPLE.read_text())
    env = {"SWITCHBOARD_DATABASE_URL": sqlite_url}
    monkeypatch.chdir(tmp_path)
    first = cli("inbox", "provision", "triager", env=env)
    assert (first.exit_code, first.stdout.strip()) == (0, "triager@agents.localhost")
    again = cli("inbox", "provision", "triager", env=env)
    assert said(again) == "triager already has triager@agents.localhost (--new makes another)"
    another = cli("inbox", "provision", "triager", "--new", env=env)
    assert another.stdout.strip() == "triager-2@agents.localhost"

    record_turns(sqlite_url, 3)
    monkeypatch.setattr(cli_common.console, "width", 80)
    listed = cli("turns", "list", env=env)
    assert listed.exit_code == 0, said(listed)
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    ids = [line.split()[0] for line in lines if line.startswith("turn_")]
    assert len(ids) == 3 and all(len(i) == 25 for i in ids)  # whole, pasteable into `show`
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert all(re.search(stamp, line) for line in lines if line.startswith("turn_"))
    shown = cli("turns", "show", ids[0], env=env)
    assert re.search(rf"^  {stamp}  received +event_id=Ev\d$", shown.stdout, re.M), shown.stdout


def record_turns(url: str, count: int) -> None:
    import asyncio

    from channels.messages import InboundMessage
    from switchboard.clock import Clock
    from switchboard.store import Store, create_engine

    async def record() -> None:
        engine = create_engine(url)
        store = Store(engine, Clock())
        try:
            for i in range(count):
                await store.turns.record(InboundMessage(
                    provider="slack", account="slack-acme", event_id=f"Ev{i}",
                    conversation="C0SUPPORTCHANNEL", kind="channel", sender="U0ALICEXYZ",
                    text="a message long enough to need some room in the table"), {})
        finally:
            store.close()
            await engine.dispose()

    asyncio.run(record())
