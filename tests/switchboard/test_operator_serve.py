"""Running Switchboard, as an operator sees it (issue 20): `/healthz` tells the truth, what
needs attention is in the log with the turn id, the admin token appears once serving, the API
refuses unknown fields, transcripts mark undelivered replies, and SIGHUP reloads the config."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import ADMIN, OPERATORS_YAML, Server, free_port, slack_config, slack_message
from operator_cli import EXAMPLE, cli, said

# --- 5. /healthz reflects the listeners and the database ----------------------------------

QUIET = {"memory": 0, "database": 0, "refilled": 0}  # /healthz: no turn waiting


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
                "slack-acme": "enabled", "mail": "failing"}, "reasons": {}, "queue": QUIET}
        else:
            assert health.status_code == 503
            assert body == {"status": "down", "accounts": {"mail": "failing"}, "reasons": {},
                            "queue": QUIET}
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
        logging.getLogger("uvicorn.error").info(  # as uvicorn logs it, with a coloured copy
            "Started server process [%d]", 7,
            extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
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
    assert lines[2]["message"] == "Started server process [7]"
    assert "color_message" not in lines[2]  # no terminal colours in a JSON log


def test_api_admin_token_is_accepted(tmp_path, sqlite_url, fake_slack):
    """(the operators of OPERATORS_YAML: no token is generated when there are operators)"""
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        assert server.api("GET", "/api/me", token=ADMIN).status_code == 200
        assert server.call(server.runtime.operators.first_admin()) is None
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
        shape = answers["400"]["content"]["application/json"]["schema"]
        assert set(shape["properties"]) == set(typo.json())  # the schema says what is answered
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
