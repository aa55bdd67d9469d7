"""Interactions through the operator API: an agent asks, the session waits, an operator
answers (once), the agent hears it on the next turn of the same session; expiry; scoping."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from conftest import OPERATOR, VIEWER, sse_events
from fakes.agents import ScriptedAgent, asks_approval


def config(agent_url: str, more: str = "") -> str:
    return f"""
agents:
  helpdesk: {{handler: http, url: "{agent_url}/turn"}}
  triager: {{handler: echo}}
{more}"""


@pytest.fixture
def agent():
    with ScriptedAgent(asks_approval()) as fake:
        yield fake


def wait_for(check: Any, timeout: float = 6.0) -> Any:
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def ask(server: Any, text: str = "refund please") -> tuple[dict[str, Any], dict[str, Any]]:
    session = server.api("POST", "/api/agents/helpdesk/sessions", json={"user": "ann"}).json()
    turn = server.api("POST", f"/api/sessions/{session['id']}/messages",
                      json={"text": text}).json()
    return session, turn


def test_an_approval_waits_then_the_first_answer_reaches_the_agent(serve, agent):
    server = serve(config(agent.url))
    session, turn = ask(server)
    assert turn["reply_text"] == "Let me check."
    listed = server.api("GET", "/api/interactions", token=VIEWER, params={"state": "pending"})
    assert listed.status_code == 200, listed.text
    pending = server.api("GET", "/api/interactions", token=VIEWER,
                         params={"state": "pending"}).json()["interactions"]
    assert [(i["kind"], i["prompt"], i["agent"], i["session_id"]) for i in pending] == [
        ("approval", "May I refund order 1182?", "helpdesk", session["id"])]
    item = pending[0]
    assert [o["id"] for o in item["options"]] == ["approve", "reject"]
    assert item["responders"] == ["ann"]
    assert server.api("GET", f"/api/sessions/{session['id']}").json()["state"] == "waiting"

    # a viewer may not answer; a bad option is refused and nothing changes
    assert server.api("POST", f"/api/interactions/{item['id']}/answer", token=VIEWER,
                      json={"option": "approve"}).status_code == 403
    bad = server.api("POST", f"/api/interactions/{item['id']}/answer", token=OPERATOR,
                     json={"option": "maybe"})
    assert bad.status_code == 409 and "not one of the options" in bad.json()["detail"]
    assert server.api("POST", f"/api/interactions/{item['id']}/answer", token=OPERATOR,
                      json={}).status_code == 400

    answered = server.api("POST", f"/api/interactions/{item['id']}/answer", token=OPERATOR,
                          json={"option": "2"})  # the number of an option works too
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["state"] == "answered" and body["answer"]["option"] == "reject"
    assert body["answer"]["by"] == {"operator": "ops"} and body["answer"]["via"] == "console"
    again = server.api("POST", f"/api/interactions/{item['id']}/answer", json={"option": "1"})
    assert again.status_code == 409 and "already answered by @ops" in again.json()["detail"]

    # the agent gets the answer as the next turn of the same session, and its reply lands
    seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
    assert seen, agent.requests
    request = seen[0]
    assert request["session"]["id"] == session["id"]
    assert request["turn"]["kind"] == "dm"
    assert set(request["turn"]["interaction"]) == {"id", "kind", "option", "by", "via", "at"}
    assert request["turn"]["interaction"]["option"] == "reject"

    def transcript() -> list[dict[str, Any]]:
        return server.api("GET", f"/api/sessions/{session['id']}").json()["transcript"]

    assert wait_for(lambda: any(m["text"] == "Decision: reject" for m in transcript()))
    lines = transcript()
    shown = [m for m in lines if m["role"] == "interaction"]
    assert shown[0]["text"] == "May I refund order 1182?"
    assert shown[1]["text"].startswith("Rejected by @ops at ")
    assert server.api("GET", f"/api/sessions/{session['id']}").json()["state"] == "live"
    story = server.api("GET", f"/api/interactions/{item['id']}", token=VIEWER).json()
    assert [(a["accepted"], a["reason"] is None) for a in story["attempts"]] == [
        (False, False), (True, True), (False, False)]
    # the turn and session views (the console's) carry the request and its answer
    shown_session = server.api("GET", f"/api/sessions/{session['id']}", token=VIEWER).json()
    for turn_id in (turn["id"], body["answer_turn_id"]):
        on_turn = server.api("GET", f"/api/turns/{turn_id}", token=VIEWER).json()
        assert [i["id"] for i in on_turn["interactions"]] == [item["id"]]
    for listed in (shown_session["interactions"][0], on_turn["interactions"][0]):
        assert listed["state"] == "answered" and listed["responders"] == ["ann"]
        assert listed["answer"]["option"] == "reject" and listed["answer"]["via"] == "console"


def test_two_operators_at_once_give_one_answer(serve, agent):
    server = serve(config(agent.url))
    _, _ = ask(server)
    item = server.api("GET", "/api/interactions").json()["interactions"][0]
    results: list[int] = []

    def click(option: str) -> None:
        results.append(server.api("POST", f"/api/interactions/{item['id']}/answer",
                                  json={"option": option}).status_code)

    threads = [threading.Thread(target=click, args=(o,)) for o in ("approve", "reject") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409, 409, 409, 409, 409]
    story = server.api("GET", f"/api/interactions/{item['id']}").json()
    assert sum(a["accepted"] for a in story["attempts"]) == 1 and len(story["attempts"]) == 6
    assert wait_for(lambda: len([r for r in agent.requests
                                 if r["turn"].get("interaction")]) == 1)
    time.sleep(0.3)
    assert len([r for r in agent.requests if r["turn"].get("interaction")]) == 1


def test_an_expiry_reaches_the_agent_within_seconds(serve):
    with ScriptedAgent(asks_approval(expires_in="1s")) as agent:
        server = serve(config(agent.url))
        session, _ = ask(server)
        started = time.time()
        seen = wait_for(lambda: [r for r in agent.requests
                                 if (r["turn"].get("interaction") or {}).get("expired")])
        assert seen and time.time() - started < 5
        view = seen[0]["turn"]["interaction"]
        assert set(view) == {"id", "kind", "expired", "at"} and view["expired"] is True
        expired = server.api("GET", "/api/interactions", params={"state": "expired"}).json()
        assert [i["session_id"] for i in expired["interactions"]] == [session["id"]]
        seen_events = []
        for event in sse_events(server.url + "/api/events", VIEWER, last_event_id="0"):
            if event["event"].startswith("interaction."):
                seen_events.append((event["event"], event["data"]["session_id"]))
            if event["event"] == "interaction.expired":
                break
        assert seen_events == [("interaction.requested", session["id"]),
                               ("interaction.expired", session["id"])]


def test_ending_a_session_expires_its_interactions_and_idle_does_not_end_it(serve, agent):
    server = serve(config(agent.url, "sessions: {idle_timeout: 1m}"))
    session, _ = ask(server)
    server.travel(minutes=5)  # two idle timeouts: a waiting session is not idled or ended
    assert server.api("GET", f"/api/sessions/{session['id']}").json()["state"] == "waiting"
    assert server.api("POST", f"/api/sessions/{session['id']}/end").status_code == 200
    assert wait_for(lambda: server.api("GET", "/api/interactions", params={
        "state": "expired"}).json()["interactions"])


def test_an_operator_limited_to_other_agents_sees_and_answers_none(serve, agent):
    server = serve(config(agent.url))
    added = server.api("POST", "/api/operators", json={"name": "limited", "role": "operator",
                                                        "agents": ["triager"]})
    assert added.status_code == 201, added.text
    token = added.json()["token"]
    ask(server)
    assert server.api("GET", "/api/interactions",
                      token=token).json()["interactions"] == []
    item = server.api("GET", "/api/interactions").json()["interactions"][0]
    assert server.api("GET", f"/api/interactions/{item['id']}",
                      token=token).status_code == 403
    assert server.api("POST", f"/api/interactions/{item['id']}/answer", token=token,
                      json={"option": "approve"}).status_code == 403


def test_the_cli_lists_shows_and_answers_once(serve, agent, database_url, monkeypatch):
    from typer.testing import CliRunner

    from switchboard.cli import app

    server = serve(config(agent.url))
    session, _ = ask(server)
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", database_url)
    runner = CliRunner()
    listed = runner.invoke(app, ["interactions", "list", "--state", "pending", "--json"])
    assert listed.exit_code == 0, listed.output
    item = json.loads(listed.output)["interactions"][0]
    assert item["session_id"] == session["id"]
    answered = runner.invoke(app, ["interactions", "answer", item["id"], "approve"])
    assert answered.exit_code == 0 and "answered: approve" in answered.output
    twice = runner.invoke(app, ["interactions", "answer", item["id"], "reject"])
    assert twice.exit_code == 1 and "already answered by @cli" in twice.output
    shown = runner.invoke(app, ["interactions", "show", item["id"]])
    assert "May I refund order 1182?" in shown.output and "accepted" in shown.output
    assert "1. Approve (approve)" in shown.output
    # the running serve takes the answer up (as it recovers any turn nobody works on, here
    # at once rather than at its next heartbeat) and hands it to the agent
    server.call(server.runtime.recovery.recover())
    assert wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")],
                    timeout=10)


def test_an_answer_the_agent_failed_to_take_is_handed_again_when_it_is_back(serve):
    down = {"now": False}

    def script(body: dict[str, Any]) -> dict[str, Any]:
        if body["turn"].get("interaction") and down["now"]:
            return {"no": "reply"}  # not an answer the platform takes: the turn fails
        return asks_approval()(body)

    with ScriptedAgent(script) as agent:
        server = serve(config(agent.url))
        ask(server)
        item = server.api("GET", "/api/interactions").json()["interactions"][0]
        down["now"] = True
        answered = server.api("POST", f"/api/interactions/{item['id']}/answer",
                              json={"option": "approve"}).json()
        failed = server.wait_turn(answered["answer_turn_id"],
                                  lambda t: t["status"] == "failed")
        assert failed["status"] == "failed"
        down["now"] = False
        turn = server.wait_turn(answered["answer_turn_id"],
                                lambda t: t["status"] == "delivered", timeout=8)
        assert turn["status"] == "delivered" and turn["reply_text"] == "Decision: approve"
        assert "retried" in [e["name"] for e in turn["events"]]
        assert len([r for r in agent.requests if r["turn"].get("interaction")]) >= 2
