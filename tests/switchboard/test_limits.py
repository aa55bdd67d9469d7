"""Rate limits and loop guards end to end: over the limit a turn is ignored with the reason and
the person hears it once per window; another bot drawing replies is stopped at its budget;
an email correspondent too; and `switchboard check` refuses a rate it cannot read."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import mail_config, run_cli, slack_config, slack_message
from fakes.mail import compose, provision, running_relay, send, turn_of


def settled(server: Any, response: Any) -> dict[str, Any]:
    return server.wait_turn(response.json()["turn_id"],
                            lambda t: t["status"] != "pending"
                            and t["delivery_status"] not in ("pending", "retrying"))


def test_rate_limit_per_sender_ignores_with_reason_and_notices_once(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, name="triage",
                                rate_limit={"per_sender": "3/min"}))
    turns = [settled(server, server.slack_event("slack-acme", slack_message(
        f"<@UBOT> question {i}", etype="app_mention", user="U123"))) for i in range(5)]
    assert [t["status"] for t in turns] == ["delivered"] * 3 + ["ignored"] * 2
    assert turns[3]["route_reason"] == ("sender U123 sent 4 messages in a minute; "
                                        "the limit is 3/min")
    assert turns[4]["route_reason"] == ("sender U123 sent 5 messages in a minute; "
                                        "the limit is 3/min")
    notices = [p for p in fake_slack.posts_to("C0SUPPORT") if "3/min" in p["text"]]
    assert len(notices) == 1 and turns[3]["reply_text"] == notices[0]["text"]
    assert turns[4]["reply_text"] is None

    other = settled(server, server.slack_event("slack-acme", slack_message(
        "<@UBOT> me too", etype="app_mention", user="U0ALICE")))
    assert other["status"] == "delivered"  # per sender: others go on
    server.runtime.clock.advance(timedelta(seconds=61))
    again = settled(server, server.slack_event("slack-acme", slack_message(
        "<@UBOT> later", etype="app_mention", user="U123")))
    assert again["status"] == "delivered"


def test_rate_limit_per_conversation_from_the_account(serve, fake_slack):
    config = slack_config(fake_slack.api_url,
                          account_settings={"rate_limit": {"per_conversation": "2/min"}})
    server = serve(config)
    turns = [settled(server, server.slack_event("slack-acme", slack_message(
        f"<@UBOT> hi {i}", etype="app_mention", user=f"U{i}"))) for i in range(3)]
    assert [t["status"] for t in turns] == ["delivered", "delivered", "ignored"]
    assert turns[2]["route_reason"] == ("conversation C0SUPPORT got 3 messages in a minute; "
                                        "the limit is 2/min")


def bot_config(api_url: str) -> str:
    return slack_config(api_url, agents={"triager": {"handler": "echo"}},
                        account_settings={"allow_bots": True, "loop_guard": {
                            "replies": 3, "window": "60s", "cooldown": "30s"}},
                        bindings=[{"agent": "triager", "account": "slack-acme",
                                   "channels": ["C0BOTS"]}])


def bot_says(text: str) -> dict[str, Any]:
    return {"type": "message", "subtype": "bot_message", "bot_id": "B0OTHER", "text": text,
            "channel": "C0BOTS", "channel_type": "channel", "ts": f"{time.time():.6f}"}


def test_a_two_bot_loop_is_stopped_within_budget_with_the_reason(serve, fake_slack):
    server = serve(bot_config(fake_slack.api_url))
    said, turn = "hello bot", None
    for _ in range(10):  # the other bot answers every reply of ours, as two echo bots do
        turn = settled(server, server.slack_event("slack-acme", bot_says(said)))
        if turn["status"] != "delivered":
            break
        said = fake_slack.posts_to("C0BOTS")[-1]["text"]
    assert turn is not None and turn["status"] == "ignored"
    assert len(fake_slack.posts_to("C0BOTS")) == 3  # the budget, and no notice to the bot
    assert turn["route_reason"].startswith(
        "loop guard: bot B0OTHER in C0BOTS drew 3 replies within 60s (its budget); "
        "not answered until ")
    assert turn["route_reason"].endswith(" UTC (cooldown 30s)")
    assert settled(server, server.slack_event("slack-acme", bot_says("still?")))["status"] \
        == "ignored"
    people = settled(server, server.slack_event("slack-acme", slack_message(
        "a person", channel="C0BOTS")))
    assert people["status"] == "delivered"  # people are not budgeted
    server.runtime.clock.advance(timedelta(seconds=31))
    assert settled(server, server.slack_event("slack-acme", bot_says("again")))["status"] \
        == "delivered"


def test_email_replies_per_correspondent_are_budgeted(serve, tmp_path):
    with running_relay() as (captured, relay_port):
        server = serve(mail_config(relay_port, account_settings={"loop_guard": {
            "replies": 2, "window": "1h", "cooldown": "1h"}}, session_scope="thread"))
        inbox = provision(server, account="mail")
        turns = []
        for i in range(3):  # an auto-responder the headers do not give away
            message_id, raw = compose("robot@example.com", inbox, f"Out of office {i}",
                                      subject=f"Ticket {i}")
            send(server, "robot@example.com", inbox, raw)
            turns.append(turn_of(server, inbox, message_id))
        assert [t["status"] for t in turns] == ["delivered", "delivered", "ignored"]
        assert turns[2]["route_reason"].startswith(
            "loop guard: robot@example.com drew 2 replies within 1h (its budget)")
        assert len(captured.wait(2)) == 2


def test_check_refuses_a_rate_it_cannot_read_with_file_and_line(tmp_path: Path,
                                                                sqlite_url: str):
    path = tmp_path / "bindings.yaml"
    text = slack_config("http://127.0.0.1:9/api/",
                        account_settings={"loop_guard": {"replies": 0, "window": "soon"}},
                        rate_limit="10/fortnight", dm_policy="sometimes")
    path.write_text(text)
    at = next(i for i, row in enumerate(text.splitlines(), 1) if "rate_limit" in row)
    checked = run_cli(sqlite_url, tmp_path, "check", "--config", str(path))
    assert checked.returncode == 1
    said = [row for row in checked.stderr.splitlines() if "bindings[0]" in row]
    assert any(f"{path}:{at}: bindings[0].rate_limit.per_sender: '10/fortnight' is not a rate"
               in row for row in said), checked.stderr
    assert any("bindings[0].dm_policy" in row and "'open'" in row for row in said), said
    assert "accounts.slack-acme.loop_guard.replies:" in checked.stderr
    assert "accounts.slack-acme.loop_guard.window: 'soon' is not a duration" in checked.stderr


def test_two_servers_on_one_database_share_the_counts(serve, fake_slack):
    config = slack_config(fake_slack.api_url, rate_limit={"per_sender": "3/min"})
    servers = [serve(config), serve(config)]
    turns = [settled(servers[i % 2], servers[i % 2].slack_event("slack-acme", slack_message(
        f"<@UBOT> q{i}", etype="app_mention", user="U123"))) for i in range(5)]
    assert [t["status"] for t in turns] == ["delivered"] * 3 + ["ignored"] * 2
    assert len([p for p in fake_slack.posts_to("C0SUPPORT") if "3/min" in p["text"]]) == 1
