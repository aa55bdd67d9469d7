"""SIGHUP to a real `switchboard serve` (issue 20, item 13): the new agents, bindings and
accounts are in the API's answers and used by routing, a changed account reconnects with its
new settings, and a config that does not load is refused with the running one kept."""

from __future__ import annotations

import json
import secrets
import signal
import time
from typing import Any

from conftest import (
    OPERATORS_YAML,
    SIGNING_SECRET,
    ServeProcess,
    slack_config,
    slack_message,
    slack_signature,
    wait_until,
)
from fakes.slack_api import FakeSlackAPI

BETA_SECRET = "0b5e3c1d9a7f4e2b8c6d1a3f5e7b9c2d"


def reloaded_config(api_url: str) -> str:
    """A new agent (helper) takes slack-acme's messages; slack-acme now talks to another Slack
    API (changed: it must reconnect); slack-beta is a new account, bound to triager."""
    return f"""
agents:
  triager: {{handler: echo, model: small}}
  helper: {{handler: echo}}
accounts:
  slack-acme:
    provider: slack
    bot_token: xoxb-test
    signing_secret: {SIGNING_SECRET}
    api_url: {api_url}
  slack-beta:
    provider: slack
    bot_token: xoxb-test
    signing_secret: {BETA_SECRET}
    api_url: {api_url}
bindings:
  - {{agent: helper, account: slack-acme, dm: true, mentions: true}}
  - {{agent: triager, account: slack-beta, dm: true, mentions: true}}
""" + OPERATORS_YAML


def slack_event(served: ServeProcess, account: str, event: dict[str, Any],
                secret: str = SIGNING_SECRET) -> str:
    """Post an Events API callback as Slack signs it; the recorded turn's id."""
    body = json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback",
                       "event_id": f"Ev{secrets.token_hex(5).upper()}",
                       "event_time": int(time.time()), "event": event}).encode()
    answer = served.http.post(f"/slack/{account}/events", content=body,
                              headers={**slack_signature(body, secret),
                                       "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["turn_id"])


def settled(served: ServeProcess, turn_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        turn = served.api("GET", f"/api/turns/{turn_id}").json()
        return turn if turn["status"] != "pending" else None
    return wait_until(done)


def hang_up(served: ServeProcess, line: str, seen: int) -> None:
    """SIGHUP, then wait for the `seen + 1`th log line containing `line`."""
    served.process.send_signal(signal.SIGHUP)
    wait_until(lambda: served.logs().count(line) > seen, timeout=15)


def test_sighup_reloads_agents_bindings_and_accounts_and_keeps_the_config_on_error(
        tmp_path, database_url, fake_slack):
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    with FakeSlackAPI() as other_slack:
        served = ServeProcess(path, database_url, tmp_path, log_level="info")
        try:
            first = settled(served, slack_event(served, "slack-acme", slack_message(
                "hello", channel="D0ALICE", channel_type="im")))
            assert (first["agent"], first["status"]) == ("triager", "delivered")
            assert served.api("POST", "/api/agents/helper/sessions", json={}).status_code == 404

            path.write_text(reloaded_config(other_slack.api_url))
            hang_up(served, "config reloaded from", 0)

            seen = served.api("GET", "/api/bindings").json()
            assert [a["name"] for a in seen["agents"]] == ["triager", "helper"]
            assert [(b["agent"], b["account"]) for b in seen["bindings"]] == [
                ("helper", "slack-acme"), ("triager", "slack-beta")]
            assert {a["name"] for a in seen["accounts"]} == {"slack-acme", "slack-beta"}
            match = served.api("POST", "/api/match", json={
                "account": "slack-acme", "conversation": "D0BOB", "kind": "dm"}).json()
            assert (match["matched"], match["agent"]) == (True, "helper")
            assert served.api("POST", "/api/agents/helper/sessions",
                              json={}).status_code == 201
            assert served.http.get("/healthz").json()["accounts"] == {
                "slack-acme": "enabled", "slack-beta": "enabled"}
            assert other_slack.auth_calls >= 2  # both accounts connected to the new API

            routed = settled(served, slack_event(served, "slack-acme", slack_message(
                "again", channel="D0BOB", channel_type="im", user="U0BOB")))
            assert (routed["agent"], routed["status"]) == ("helper", "delivered")
            new = settled(served, slack_event(served, "slack-beta", slack_message(
                "first words", channel="D0CAROL", channel_type="im", user="U0CAROL"),
                secret=BETA_SECRET))
            assert (new["agent"], new["status"]) == ("triager", "delivered")
            assert [p["channel"] for p in other_slack.posts] == ["D0BOB", "D0CAROL"]
            assert [p["channel"] for p in fake_slack.posts] == ["D0ALICE"]  # the old API: no more

            path.write_text("agents:\n  helper: {handler: echo\nbindings: []\n")  # a YAML error
            hang_up(served, "config reload refused; the running config is kept", 0)
            logs = served.logs()
            assert "config reload refused: " in logs and "line 2" in logs, logs[-2000:]
            assert [a["name"] for a in served.api("GET", "/api/bindings").json()["agents"]] \
                == ["triager", "helper"]
            kept = settled(served, slack_event(served, "slack-acme", slack_message(
                "still there?", channel="D0BOB", channel_type="im", user="U0BOB")))
            assert (kept["agent"], kept["status"]) == ("helper", "delivered")
            assert served.process.poll() is None
        finally:
            served.stop()
