"""The console's own API (`/api/me`, `/api/bindings`, `/api/match`) and how its page is served."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from conftest import ADMIN, OPERATOR, SIGNING_SECRET, VIEWER, slack_config, slack_message

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """These read config and one query; SQLite is enough."""
    return sqlite_url


def test_me_and_bindings_need_a_token_and_tell_the_role(serve: Any, fake_slack: Any) -> None:
    server = serve(slack_config(fake_slack.api_url))
    for path in ("/api/me", "/api/bindings"):
        assert server.http.get(path).status_code == 401
    assert server.http.post("/api/match", json={}).status_code == 401
    seen = {token: server.api("GET", "/api/me", token=token).json()
            for token in (ADMIN, OPERATOR, VIEWER)}
    assert [(m["name"], m["role"]) for m in seen.values()] == [
        ("root", "admin"), ("ops", "operator"), ("watcher", "viewer")]
    assert all(isinstance(m["last_event_id"], int) for m in seen.values())


def test_bindings_show_rules_agents_and_account_status_without_secrets(
        serve: Any, fake_slack: Any) -> None:
    server = serve(slack_config(fake_slack.api_url, name="triage-slack", channels=["C0SUPPORT"],
                                allow_senders=["U0ALICE"], session_scope="thread"))
    response = server.api("GET", "/api/bindings", token=VIEWER)
    assert response.status_code == 200
    data = response.json()
    assert data["bindings"] == [{
        "name": "triage-slack", "agent": "triager", "account": "slack-acme", "dm": True,
        "mentions": True, "channels": ["C0SUPPORT"], "allow_senders": ["U0ALICE"],
        "allow_conversations": [], "model": None, "follow_threads": False,
        "session_scope": "thread", "transfer_to": []}]
    assert data["agents"] == [{"name": "triager", "handler": "echo", "model": "small"}]
    [account] = data["accounts"]
    assert (account["name"], account["provider"], account["status"]) == (
        "slack-acme", "slack", "connected")
    assert "xoxb-test" not in response.text and SIGNING_SECRET not in response.text


def _ask(server: Any, **body: Any) -> dict[str, Any]:
    response = server.api("POST", "/api/match", token=VIEWER,
                          json={"provider": "slack", "account": "slack-acme", **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("event", "question"), [
    (slack_message("chatter"), {"kind": "channel", "conversation": "C0SUPPORT",
                                "sender": "U0ALICE"}),
    (slack_message("<@UBOT> hi", etype="app_mention"),
     {"kind": "channel", "conversation": "C0SUPPORT", "sender": "U0ALICE", "mentioned": True}),
    (slack_message("<@UBOT> hi", etype="app_mention", user="U0BOB"),
     {"kind": "channel", "conversation": "C0SUPPORT", "sender": "U0BOB", "mentioned": True}),
    (slack_message("hello", channel="D0ALICE", channel_type="im"),
     {"kind": "dm", "conversation": "D0ALICE", "sender": "U0ALICE"}),
])
def test_match_answers_as_the_pipeline_routed_a_real_turn(serve: Any, fake_slack: Any,
                                                          event: dict[str, Any],
                                                          question: dict[str, Any]) -> None:
    server = serve(slack_config(fake_slack.api_url, name="triage-slack",
                                allow_senders=["U0ALICE"]))
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    answer = _ask(server, **question)
    assert answer["reason"] == turn["route_reason"]
    assert answer["matched"] is (turn["status"] != "ignored")
    assert answer["binding"] == turn["binding"] and answer["agent"] == turn["agent"]


def test_match_follows_threads_the_binding_replied_in(serve: Any, fake_slack: Any) -> None:
    server = serve(slack_config(fake_slack.api_url, name="triage-slack", follow_threads=True))
    mention = slack_message("<@UBOT> start", etype="app_mention", ts="1700000000.000100")
    assert server.wait_turn(server.slack_event("slack-acme", mention)
                            .json()["turn_id"])["status"] == "delivered"
    reply = {"kind": "channel", "conversation": "C0SUPPORT", "sender": "U0ALICE",
             "thread": "1700000000.000100"}
    assert _ask(server, **reply)["reason"] == (
        "binding triage-slack matched: a reply in a thread the binding already answered")
    assert _ask(server, **reply, replied_in_thread=[])["matched"] is False


def test_match_explains_unknown_accounts_and_refuses_a_wrong_provider(
        serve: Any, fake_slack: Any) -> None:
    server = serve(slack_config(fake_slack.api_url))
    answer = _ask(server, account="tg", provider="telegram", kind="dm", conversation="1")
    assert answer == {"matched": False, "binding": None, "agent": None, "session_scope": None,
                      "reason": "no binding uses account tg"}
    wrong = server.api("POST", "/api/match", token=VIEWER, json={
        "provider": "telegram", "account": "slack-acme", "conversation": "C1"})
    assert wrong.status_code == 400
    assert "slack-acme is a slack account" in wrong.json()["detail"]


def test_console_page_and_assets_ship_in_the_package(serve: Any, fake_slack: Any) -> None:
    server = serve(slack_config(fake_slack.api_url))
    page = server.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    referenced = re.findall(r'"/console/([^"]+)"', page.text)
    assert "app.js" in referenced and "console.css" in referenced
    assets = resources.files("switchboard").joinpath("console_assets")
    scripts = [p.name for p in assets.iterdir() if p.name.endswith(".js")]
    for name in referenced + scripts:
        response = server.http.get(f"/console/{name}")
        assert response.status_code == 200, name
    assert server.http.get("/console/app.js").headers["content-type"].startswith(
        "text/javascript")
    for bad in ("nope.js", "..%2Fconsole.py", "index.html", ".hidden.js"):
        assert server.http.get(f"/console/{bad}").status_code == 404, bad
    for path in assets.iterdir():
        text = path.read_text(encoding="utf-8") if path.name.endswith((".js", ".css",
                                                                      ".html")) else ""
        assert not re.search(r"https?://", text), f"{path.name} refers to another site"
        # data is rendered as text only
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write",
                             text), path.name
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "console_assets/*" in package_data["package-data"]["switchboard"]
