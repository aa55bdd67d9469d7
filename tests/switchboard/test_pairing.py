"""`dm_policy: pairing` end to end: a stranger's DM gets a code over Slack, an operator approves
it through the API or the CLI, and the next DM is answered; expiry, the cap on pending codes,
deny and revoke, and wrong codes bounded."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any

from conftest import (
    OPERATOR,
    OPERATORS_YAML,
    VIEWER,
    Server,
    run_cli,
    slack_config,
    slack_message,
)

CODE = re.compile(r"awaiting pairing approval \(code ([A-HJ-NP-Z2-9]{8})\)")


def dm(server: Any, text: str, user: str = "U0BOB") -> dict[str, Any]:
    event = slack_message(text, channel=f"D{user}", user=user, channel_type="im")
    return server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"],
                            lambda t: t["status"] != "pending"
                            and t["delivery_status"] not in ("pending", "retrying"))


def code_of(turn: dict[str, Any]) -> str:
    found = CODE.fullmatch(turn["route_reason"] or "")
    assert found, turn["route_reason"]
    return found.group(1)


def wait_posts(fake: Any, channel: str, count: int) -> list[dict[str, Any]]:
    deadline = time.time() + 10
    while len(fake.posts_to(channel)) < count and time.time() < deadline:
        time.sleep(0.05)
    return fake.posts_to(channel)


def test_pairing_round_trip_code_approve_then_answered(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, name="triage", dm_policy="pairing"))
    first = dm(server, "hello?")
    assert first["status"] == "ignored"
    code = code_of(first)
    [notice] = fake_slack.posts_to("DU0BOB")
    assert code in notice["text"] and "operator" in notice["text"]
    assert first["reply_text"] == notice["text"] and first["delivery_status"] == "delivered"

    again = dm(server, "anyone there?")  # the same code, not sent again within 10 minutes
    assert code_of(again) == code
    assert len(fake_slack.posts_to("DU0BOB")) == 1

    listed = server.api("GET", "/api/pairing", token=VIEWER).json()["pairings"]
    assert [(p["code"], p["status"], p["sender"], p["account"]) for p in listed] == [
        (code, "pending", "U0BOB", "slack-acme")]
    assert server.api("POST", f"/api/pairing/{code}/approve", token=VIEWER).status_code == 403

    approved = server.api("POST", f"/api/pairing/{code.lower()}/approve", token=OPERATOR)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == "ops"
    posts = wait_posts(fake_slack, "DU0BOB", 2)
    assert "You are in" in posts[1]["text"]
    story = server.turn(first["id"])  # the turn that got the code says who approved it
    assert [e["detail"]["by"] for e in story["events"] if e["name"] == "pairing_approved"] \
        == ["ops"]
    told = server.wait_turn(server.turns(conversation="DU0BOB")[0]["id"],
                            lambda t: t["delivery_status"] == "delivered")
    assert told["reply_text"] == posts[1]["text"] and told["status"] == "ignored"
    assert told["route_reason"] == (f"pairing approved by ops (code {code}); "
                                    "the person is told they are in")

    answered = dm(server, "now?")
    assert answered["status"] == "delivered"
    assert "now?" in fake_slack.posts_to("DU0BOB")[-1]["text"]
    entries = server.api("GET", "/api/audit").json()["entries"]
    assert any(e["action"] == "pairing.approved" and e["actor"] == "ops" for e in entries)


def test_codes_expire_are_resent_after_ten_minutes_and_replaced_after_an_hour(serve,
                                                                            fake_slack):
    server = serve(slack_config(fake_slack.api_url, dm_policy="pairing"))
    code = code_of(dm(server, "hi"))
    server.runtime.clock.advance(timedelta(minutes=11))
    assert code_of(dm(server, "hi again")) == code
    assert len(wait_posts(fake_slack, "DU0BOB", 2)) == 2  # re-sent, once per 10 minutes

    server.runtime.clock.advance(timedelta(minutes=50))
    refused = server.api("POST", f"/api/pairing/{code}/approve", token=OPERATOR)
    assert refused.status_code == 409 and "expired" in refused.json()["detail"]
    [listed] = server.api("GET", "/api/pairing").json()["pairings"]
    assert listed["status"] == "expired"

    fresh = code_of(dm(server, "still here"))
    assert fresh != code
    assert fresh in wait_posts(fake_slack, "DU0BOB", 3)[-1]["text"]
    assert server.api("POST", f"/api/pairing/{code}/approve", token=OPERATOR).status_code == 404


def test_a_fourth_stranger_is_told_to_try_later_without_a_code(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, dm_policy="pairing"))
    codes = [code_of(dm(server, "hi", user=f"U0S{i}")) for i in range(3)]
    assert len(set(codes)) == 3
    fourth = dm(server, "me too", user="U0S4")
    assert fourth["status"] == "ignored"
    assert "3 codes are pending on account slack-acme" in fourth["route_reason"]
    [notice] = fake_slack.posts_to("DU0S4")
    assert "try again later" in notice["text"]
    assert not re.search(r"\b[A-HJ-NP-Z2-9]{8}\b", notice["text"])
    dm(server, "please", user="U0S4")
    assert len(fake_slack.posts_to("DU0S4")) == 1  # told once, not on every DM

    server.api("POST", f"/api/pairing/{codes[0]}/deny", token=OPERATOR)  # frees a place
    assert code_of(dm(server, "now?", user="U0S4"))


def test_deny_then_revoke_through_the_cli_and_cli_approval(serve, fake_slack, database_url,
                                                           tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from switchboard.cli import app

    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", database_url)
    server = serve(slack_config(fake_slack.api_url, dm_policy="pairing"))

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, ["pairing", *args])

    code = code_of(dm(server, "hi"))
    denied = cli("deny", code)
    assert denied.exit_code == 0, denied.output
    later = dm(server, "hello??")
    assert later["status"] == "ignored"
    assert "was denied pairing" in later["route_reason"]
    assert len(fake_slack.posts_to("DU0BOB")) == 1  # a denied sender hears nothing more

    listing = cli("list", "--json")
    assert [(p["status"], p["sender"]) for p in json.loads(listing.output)] == \
        [("denied", "U0BOB")]
    assert cli("revoke", "slack-acme", "U0BOB").exit_code == 0
    again = cli("revoke", "slack-acme", "U0BOB")
    assert again.exit_code == 1 and "has no pairing" in again.output

    fresh = code_of(dm(server, "may I?"))
    approved = cli("approve", fresh.lower())
    assert approved.exit_code == 0, approved.output
    assert "You are in" in wait_posts(fake_slack, "DU0BOB", 3)[-1]["text"]  # by serve's sweep
    assert dm(server, "thanks")["status"] == "delivered"
    # and one subprocess, as an operator runs it
    listed = run_cli(database_url, tmp_path, "pairing", "list")
    assert listed.returncode == 0 and "approved" in listed.stdout and fresh in listed.stdout


def test_wrong_codes_are_recorded_and_bounded(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, dm_policy="pairing"))
    code = code_of(dm(server, "hi"))
    wrong = "ZZZZZZZZ" if code != "ZZZZZZZZ" else "YYYYYYYY"
    for guess in [wrong, "nonsense", wrong, wrong, wrong]:
        answer = server.api("POST", f"/api/pairing/{guess}/approve", token=OPERATOR)
        assert answer.status_code == 404, answer.text
    blocked = server.api("POST", f"/api/pairing/{code}/approve", token=OPERATOR)
    assert blocked.status_code == 429 and "5 wrong pairing codes" in blocked.json()["detail"]
    entries = server.api("GET", "/api/audit").json()["entries"]
    assert sum(e["action"] == "pairing.wrong_code" for e in entries) == 5
    server.runtime.clock.advance(timedelta(minutes=11))  # the window is over
    assert server.api("POST", f"/api/pairing/{code}/approve", token=OPERATOR).status_code == 200


def test_allowlist_answers_allow_senders_and_approved_senders_only(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, dm_policy="allowlist"))
    refused = dm(server, "hi")
    assert refused["status"] == "ignored"
    assert refused["route_reason"] == ("sender U0BOB may not message account slack-acme "
                                       "(dm_policy: allowlist: only allow_senders and approved "
                                       "senders)")
    assert fake_slack.posts_to("DU0BOB") == []
    channel = slack_message("<@UBOT> in a channel", etype="app_mention", user="U0BOB")
    turn = server.wait_turn(server.slack_event("slack-acme", channel).json()["turn_id"])
    assert turn["status"] == "delivered"  # the DM policy is about DMs only


def test_an_operator_limited_to_other_agents_sees_and_decides_no_pairing_of_the_account(
        fake_slack, database_url, tmp_path):
    config = slack_config(fake_slack.api_url, dm_policy="pairing").replace(
        "agents:\n", "agents:\n  helper: {handler: echo}\n", 1) + OPERATORS_YAML + """
  - {name: helpers-only, role: operator, token: helpers-token, agents: [helper]}
  - {name: triage-lead, role: operator, token: triage-token, agents: [triager]}
"""
    (tmp_path / "bindings.yaml").write_text(config)
    server = Server(tmp_path / "bindings.yaml", database_url).start()
    try:
        code = code_of(dm(server, "hi"))
        assert server.api("GET", "/api/pairing", token="helpers-token").json()["pairings"] == []
        refused = server.api("POST", f"/api/pairing/{code}/approve", token="helpers-token")
        assert refused.status_code == 403 and "slack-acme" in refused.json()["detail"]
        assert server.api("DELETE", "/api/pairing/slack-acme/U0BOB",
                          token="helpers-token").status_code == 403
        listed = server.api("GET", "/api/pairing", token="triage-token").json()["pairings"]
        assert [p["code"] for p in listed] == [code]
        assert server.api("POST", f"/api/pairing/{code}/approve",
                          token="triage-token").status_code == 200
    finally:
        server.stop()
