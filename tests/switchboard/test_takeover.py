"""Human takeover (issue 22, sections 3 and 4): an operator takes a session over from its agent,
replies as the bot and hands it back; an http agent asks for a person itself (a handoff), and
the console lists the session among those waiting for people."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    ADMIN,
    OPERATOR,
    VIEWER,
    read_sse,
    run_cli,
    slack_config,
    slack_message,
    wait_until,
)
from fakes.agents import ScriptedAgent


def script(body: dict[str, Any]) -> dict[str, Any]:
    """The agent stand-in: asks for a person when told to, else answers in its own words."""
    text = body["turn"]["text"]
    if "human" in text:
        return {"handoff": {"reason": "the customer asks for a human",
                            "reply": "Let me get a colleague."}}
    return {"reply": f"agent: {text}"}


@pytest.fixture
def agent() -> Iterator[ScriptedAgent]:
    with ScriptedAgent(script) as fake:
        yield fake


def config(api_url: str, agent_url: str) -> str:
    return slack_config(api_url,
                        agents={"helpdesk": {"handler": "http", "url": f"{agent_url}/turn"}},
                        bindings=[{"agent": "helpdesk", "account": "slack-acme", "dm": True}])


def dm(server: Any, text: str, until: Any = None) -> dict[str, Any]:
    """A direct message as Slack's Events API sends it (`message.im`), settled."""
    event = slack_message(text, channel="D0ALICE", channel_type="im", user="U0ALICE",
                          client_msg_id=f"{time.time_ns():x}", team="T1",
                          blocks=[{"type": "rich_text", "block_id": "b1", "elements": [
                              {"type": "rich_text_section",
                               "elements": [{"type": "text", "text": text}]}]}])
    turn_id = server.slack_event("slack-acme", event).json()["turn_id"]
    return server.wait_turn(turn_id, until)


def settled(turn: dict[str, Any]) -> bool:
    return turn["status"] in ("delivered", "failed", "ignored")


def events_of(turn: dict[str, Any]) -> list[str]:
    return [e["name"] for e in turn["events"]]


def session(server: Any, session_id: str) -> dict[str, Any]:
    answer = server.api("GET", f"/api/sessions/{session_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_takeover_keeps_the_agent_silent_the_operator_replies_then_hands_back(
        serve: Any, fake_slack: Any, agent: ScriptedAgent) -> None:
    server = serve(config(fake_slack.api_url, agent.url))
    first = dm(server, "my printer is on fire", settled)
    assert first["status"] == "delivered"
    session_id = first["session_id"]
    path = f"/api/sessions/{session_id}"
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    reader = threading.Thread(target=read_sse, daemon=True, args=(
        f"{server.url}{path}/events", OPERATOR, seen, stop))
    reader.start()

    assert server.api("POST", f"{path}/takeover", VIEWER).status_code == 403
    unknown = server.api("POST", f"{path}/takeover", OPERATOR, json={"force": True})
    assert unknown.status_code == 400 and "unknown field force" in unknown.text
    taken = server.api("POST", f"{path}/takeover", OPERATOR)
    assert taken.status_code == 200, taken.text
    assert "taken over by ops" in taken.json()["message"]
    again = server.api("POST", f"{path}/takeover", ADMIN)
    assert again.status_code == 409 and "already taken over by ops" in again.text
    shown = session(server, session_id)
    assert shown["state"] == "paused" and shown["taken_over_by"] == "ops"
    moved = [e for e in shown["transcript"] if (e.get("data") or {}).get("to") == "paused"]
    assert moved[-1]["data"]["cause"] == "taken over by ops"
    assert server.api("POST", f"{path}/resume", OPERATOR).status_code == 409  # hand back instead

    asked = len(agent.requests)
    posted = len(fake_slack.posts)
    held = dm(server, "hello? anyone?", lambda t: t["status"] == "held")
    assert held["status"] == "held" and held["session_id"] == session_id
    assert next(e for e in held["events"] if e["name"] == "held")["detail"]["reason"] == \
        "agent paused: taken over by ops"
    assert {"routed", "session_resumed", "held"} <= set(events_of(held))
    live = wait_until(lambda: [e for e in seen if e["event"] == "turn.held"])
    assert live[0]["data"]["text"] == "hello? anyone?" and live[0]["data"]["turn_id"] == held["id"]

    assert server.api("POST", f"{path}/reply", OPERATOR, json={"text": ""}).status_code == 400
    assert server.api("POST", f"{path}/reply", VIEWER, json={"text": "x"}).status_code == 403
    extra = server.api("POST", f"{path}/reply", OPERATOR, json={"text": "x", "as": "bot"})
    assert extra.status_code == 400 and "unknown field as" in extra.text
    sent = server.api("POST", f"{path}/reply", OPERATOR,
                      json={"text": "Hi, Ann here from support: unplug it first."})
    assert sent.status_code == 200, sent.text
    reply_turn = sent.json()["turn"]
    assert reply_turn["status"] == "delivered" and reply_turn["kind"] == "operator"
    assert reply_turn["sender"] == "ops" and reply_turn["provider_message_id"]
    assert {"operator_reply", "delivered"} <= set(events_of(reply_turn))
    assert fake_slack.posts[-1]["text"] == "Hi, Ann here from support: unplug it first."
    assert fake_slack.posts[-1]["channel"] == "D0ALICE"
    assert len(fake_slack.posts) == posted + 1  # only the operator's words
    assert len(agent.requests) == asked  # the agent was never asked
    entries = session(server, session_id)["transcript"]
    mine = [e for e in entries if e["role"] == "operator"]
    assert mine[-1]["text"].startswith("Hi, Ann here") and mine[-1]["data"] == {"operator": "ops"}
    assert "delivery" not in mine[-1]  # delivered: nothing to mark
    assert wait_until(lambda: [e for e in seen if e["event"] == "session.message.created"
                               and e["data"]["role"] == "operator"])

    back = server.api("POST", f"{path}/handback", OPERATOR, json={"replay_missed": False})
    assert back.status_code == 200, back.text
    assert session(server, session_id)["state"] == "live"
    closed = server.turn(held["id"])
    assert closed["status"] == "ignored" and "not_replayed" in events_of(closed)
    assert "ops handled the conversation" in closed["route_reason"]
    twice = server.api("POST", f"{path}/handback", OPERATOR)
    assert twice.status_code == 409 and "not taken over" in twice.text

    after = dm(server, "it worked, thanks", settled)
    assert after["status"] == "delivered" and after["reply_text"] == "agent: it worked, thanks"
    request = agent.requests[-1]
    assert len(agent.requests) == asked + 1
    assert any(m["role"] == "operator" and m["text"].startswith("Hi, Ann here")
               for m in request["transcript"])  # the agent sees what the operator said
    stop.set()  # the reader leaves at the next event: the server's stop waits for no stream
    assert server.api("POST", f"{path}/end", OPERATOR).status_code == 200
    ended = server.api("POST", f"{path}/reply", OPERATOR, json={"text": "one more thing"})
    assert ended.status_code == 409 and "ended" in ended.text
    assert server.api("POST", f"{path}/takeover", OPERATOR).status_code == 409
    reader.join(5)


def test_handback_can_replay_what_the_agent_missed_in_one_run(
        serve: Any, fake_slack: Any, agent: ScriptedAgent, database_url: str,
        tmp_path: Path) -> None:
    """On SQLite the operator answers from the terminal (a running serve delivers it)."""
    server = serve(config(fake_slack.api_url, agent.url))
    session_id = dm(server, "hi", settled)["session_id"]
    path = f"/api/sessions/{session_id}"
    assert server.api("POST", f"{path}/takeover", OPERATOR).status_code == 200
    one = dm(server, "order 1182 never came", lambda t: t["status"] == "held")
    if database_url.startswith("sqlite"):  # the CLI: one database is enough (its start costs)
        sent = run_cli(database_url, tmp_path, "sessions", "reply", session_id,
                       "Checking with the courier.", "--as", "ops", "--json")
        assert sent.returncode == 0, sent.stderr
        reply_turn = json.loads(sent.stdout)["turn_id"]
    else:
        reply_turn = server.api("POST", f"{path}/reply", OPERATOR,
                                json={"text": "Checking with the courier."}).json()["turn_id"]
    assert server.wait_turn(reply_turn, settled)["status"] == "delivered"
    assert fake_slack.posts[-1]["text"] == "Checking with the courier."
    assert fake_slack.posts[-1]["channel"] == "D0ALICE"
    two = dm(server, "any news?", lambda t: t["status"] == "held")
    asked = len(agent.requests)
    back = server.api("POST", f"{path}/handback", OPERATOR, json={"replay_missed": True})
    assert back.status_code == 200 and "2 message(s) it missed" in back.json()["message"]
    answered = server.wait_turn(two["id"], settled)
    assert answered["status"] == "delivered"
    assert server.turn(one["id"])["status"] == "delivered"  # answered together
    assert len(agent.requests) == asked + 1
    turn = agent.requests[-1]["turn"]
    assert turn["text"] == "order 1182 never came\n\nany news?"
    assert turn["handback"]["by"] == "ops"
    assert [(m["role"], m["text"]) for m in turn["handback"]["missed"]] == [
        ("user", "order 1182 never came"), ("operator", "Checking with the courier."),
        ("user", "any news?")]
    assert fake_slack.posts[-1]["text"] == "agent: order 1182 never came\n\nany news?"


_ids = itertools.count(7000)
TG_SECRET = "tg-secret_123"


def tg_update(text: str) -> dict[str, Any]:
    """A private-chat message as the Bot API posts it to a webhook."""
    return {"update_id": next(_ids), "message": {
        "message_id": next(_ids), "date": int(time.time()),
        "chat": {"id": 42, "type": "private", "first_name": "Alice", "username": "alice"},
        "from": {"id": 7, "is_bot": False, "first_name": "Alice", "username": "alice",
                 "language_code": "en"}, "text": text}}


def test_an_agent_asks_for_a_person_in_telegram(serve: Any, fake_telegram: Any,
                                                agent: ScriptedAgent) -> None:
    server = serve(f"""
agents:
  helpdesk: {{handler: http, url: "{agent.url}/turn"}}
accounts:
  tg:
    provider: telegram
    token: "123:ABC"
    webhook_secret: {TG_SECRET}
    base_url: {fake_telegram.base_url}
bindings:
  - agent: helpdesk
    account: tg
""")
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    reader = threading.Thread(target=read_sse, daemon=True,
                              args=(f"{server.url}/api/events", ADMIN, seen, stop))
    reader.start()
    time.sleep(0.2)  # the stream is open before the event

    def post(text: str) -> str:
        answer = server.http.post("/telegram/tg/webhook", json=tg_update(text),
                                  headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
        assert answer.status_code == 200, answer.text
        return server.turns(provider="telegram")[0]["id"]

    turn = server.wait_turn(post("I want to talk to a human"), settled)
    assert turn["status"] == "delivered" and turn["reply_text"] == "Let me get a colleague."
    assert fake_telegram.visible(42)[-1] == "Let me get a colleague."
    requested = next(e for e in turn["events"] if e["name"] == "handoff_requested")
    assert requested["detail"]["reason"] == "the customer asks for a human"
    session_id = turn["session_id"]
    shown = session(server, session_id)
    assert shown["state"] == "paused" and shown["taken_over_by"] is None
    assert shown["handoff"]["reason"] == "the customer asks for a human"
    event = wait_until(lambda: [e for e in seen if e["event"] == "session.handoff_requested"])
    data = {k: v for k, v in event[0]["data"].items() if k not in ("id", "at")}
    assert data == {"session_id": session_id, "agent": "helpdesk",
                    "reason": "the customer asks for a human"}
    waiting = server.api("GET", "/api/handoffs", VIEWER).json()["sessions"]
    assert [s["id"] for s in waiting] == [session_id]

    asked = len(agent.requests)
    held = server.wait_turn(post("hello?"), lambda t: t["status"] == "held")
    assert "it asked for a person" in next(
        e for e in held["events"] if e["name"] == "held")["detail"]["reason"]
    assert len(agent.requests) == asked
    path = f"/api/sessions/{session_id}"
    assert server.api("POST", f"{path}/takeover", OPERATOR).status_code == 200
    sent = server.api("POST", f"{path}/reply", OPERATOR, json={"text": "Ann here, hi!"})
    assert sent.json()["turn"]["status"] == "delivered", sent.text
    assert fake_telegram.visible(42)[-1] == "Ann here, hi!"
    reply_to = fake_telegram.calls("sendMessage")[-1]
    assert str(reply_to["chat_id"]) == "42"
    stop.set()  # the reader leaves at the next event: the server's stop waits for no stream
    assert server.api("POST", f"{path}/handback", OPERATOR).status_code == 200
    assert server.api("GET", "/api/handoffs").json()["sessions"] == []
    after = server.wait_turn(post("bye"), settled)
    assert after["reply_text"] == "agent: bye"
    reader.join(5)


# --- the console ----------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def page() -> Iterator[Any]:
    """A headless Chromium tab (as in test_console_browser.py); JavaScript errors fail."""
    if not Path(CHROMIUM).exists() or importlib.util.find_spec("playwright") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium or playwright is missing; CI must run the browser tests")
        pytest.skip("chromium or playwright is missing")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1366, "height": 860})
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        yield tab
        browser.close()
    assert [e for e in errors if "401" not in e and "409" not in e] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_console_lists_a_handoff_and_an_operator_takes_it_over(
        serve: Any, fake_slack: Any, agent: ScriptedAgent, page: Any) -> None:
    from playwright.sync_api import expect

    server = serve(config(fake_slack.api_url, agent.url))
    session_id = dm(server, "can a human help me?", settled)["session_id"]

    def sign_in(tab: Any, token: str) -> None:
        tab.goto(server.url + "/")
        tab.get_by_label("Operator token").fill(token)
        tab.get_by_role("button", name="Sign in").click()
        expect(tab.locator("#live")).to_have_text("Live")

    watcher = page.context.browser.new_context().new_page()
    sign_in(watcher, VIEWER)  # a viewer sees the handoff, and no button or reply box
    watcher.goto(f"{server.url}/#/sessions/{session_id}")
    expect(watcher.locator(".takeover-note")).to_contain_text("the customer asks for a human")
    expect(watcher.locator("main button")).to_have_count(0)
    expect(watcher.locator("main textarea")).to_have_count(0)
    watcher.context.close()
    sign_in(page, OPERATOR)
    page.get_by_role("link", name="Waiting for people").click()
    row = page.locator(f'tr[data-handoff="{session_id}"]')
    expect(row).to_contain_text("the customer asks for a human")
    row.get_by_role("link", name=session_id).click()

    expect(page.locator("h1 .badge")).to_have_text("‖paused")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".takeover-note")).to_contain_text("taken over by ops")
    dm(server, "still there?", lambda t: t["status"] == "held")
    expect(page.locator(".transcript")).to_contain_text("still there?")  # shown live
    page.get_by_label("Reply as the bot").fill("Yes! Ann here.")
    page.get_by_role("button", name="Reply", exact=True).click()
    expect(page.locator("li[data-role=operator]").last).to_contain_text("Yes! Ann here.")
    assert wait_until(lambda: fake_slack.posts[-1]["text"] == "Yes! Ann here.")
    expect(page.get_by_label("Reply as the bot")).to_have_value("")
    page.screenshot(path=str(ARTIFACTS / "session-taken-over.png"), full_page=True)
    page.get_by_role("button", name="Hand back").click()
    expect(page.locator("h1 .badge")).to_have_text("●live")
    expect(page.get_by_role("button", name="Take over")).to_be_visible()
    assert session(server, session_id)["state"] == "live"
