"""Session lifecycle through the real interfaces, with Switchboard's clock moved instead of
sleeping: policy, operator actions, chat commands, API sessions and live events."""

from __future__ import annotations

import threading
import time
from typing import Any

from conftest import ADMIN, OPERATOR, SIGNING_SECRET, VIEWER, read_sse, slack_message


def config(api_url: str, sessions: str = "", agent_extra: str = "", slash: str = "") -> str:
    return f"""
agents:
  triager: {{handler: echo, model: small{agent_extra}}}
  helper: {{handler: echo, model: large}}
accounts:
  slack-acme:
    provider: slack
    bot_token: xoxb-test
    signing_secret: {SIGNING_SECRET}
    api_url: {api_url}{slash}
bindings:
  - name: triage-slack
    agent: triager
    account: slack-acme
    session_scope: thread
sessions:
  idle_timeout: 30m
  max_duration: 4h
  keep_alive: 10m{sessions}
"""


def dm(server, text: str, user: str = "U0ALICE", channel: str = "D0ALICE") -> dict[str, Any]:
    event = slack_message(text, channel=channel, channel_type="im", user=user)
    return server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])


def session(server, session_id: str) -> dict[str, Any]:
    response = server.api("GET", f"/api/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_live_idle_ended_by_idle_timeout_then_keep_alive_and_new(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    first = dm(server, "hello")
    sid = first["session_id"]
    assert session(server, sid)["state"] == "live"
    server.travel(minutes=31)
    assert session(server, sid)["state"] == "idle"
    # a message while idle resumes the same session
    assert dm(server, "still here")["session_id"] == sid
    assert session(server, sid)["state"] == "live"
    server.travel(minutes=31)
    server.travel(minutes=31)
    ended = session(server, sid)
    assert ended["state"] == "ended" and ended["end_cause"] == "idle_timeout"
    changes = [e["data"] for e in ended["transcript"] if e["role"] == "system" and "data" in e
               and "to" in e["data"]]
    assert [(c["from"], c["to"], c["cause"]) for c in changes] == [
        ("live", "idle", "idle_timeout"), ("idle", "live", "user"),
        ("live", "idle", "idle_timeout"), ("idle", "ended", "idle_timeout")]
    # within keep_alive: reopened with its context
    reopened = dm(server, "back again")
    assert reopened["session_id"] == sid
    assert "session_reopened" in [e["name"] for e in reopened["events"]]
    # after keep_alive: a new session
    for _ in range(3):
        server.travel(minutes=31)
    assert session(server, sid)["state"] == "ended"
    server.travel(minutes=11)
    fresh = dm(server, "new day")
    assert fresh["session_id"] != sid
    assert "session_created" in [e["name"] for e in fresh["events"]]


def test_max_duration_ends_a_busy_session(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    sid = dm(server, "start")["session_id"]
    for _ in range(9):  # active every 29 minutes: never idle, but over 4 hours in all
        server.travel(minutes=29)
        dm(server, "still talking")
    ended = session(server, sid)
    assert ended["state"] == "ended" and ended["end_cause"] == "max_duration"


def test_concurrency_limit_refuses_with_a_notice(serve, fake_slack):
    server = serve(config(fake_slack.api_url, sessions="\n  max_concurrent_per_user: 1"))
    one = slack_message("<@UBOT> first", etype="app_mention", ts="1700000100.000001")
    t1 = server.wait_turn(server.slack_event("slack-acme", one).json()["turn_id"])
    assert t1["status"] == "delivered"
    two = slack_message("<@UBOT> second", etype="app_mention", ts="1700000200.000001")
    t2 = server.wait_turn(server.slack_event("slack-acme", two).json()["turn_id"],
                          until=lambda t: t["delivery_status"] == "delivered")
    assert t2["status"] == "ignored"
    assert "max_concurrent_per_user is 1" in t2["route_reason"]
    notice = fake_slack.posts[-1]
    assert notice["thread_ts"] == "1700000200.000001"
    assert "maximum number of open conversations" in notice["text"]


def test_pause_holds_turns_and_resume_answers_them_once(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    sid = dm(server, "hello")["session_id"]
    assert server.api("POST", f"/api/sessions/{sid}/pause", token=OPERATOR).status_code == 200
    held = [dm(server, f"while paused {i}") for i in range(2)]
    assert [t["status"] for t in held] == ["held", "held"]
    assert len(fake_slack.posts) == 1
    assert server.turns(status="held") != []
    response = server.api("POST", f"/api/sessions/{sid}/resume", token=OPERATOR)
    assert response.status_code == 200
    answered = [server.wait_turn(t["id"], until=lambda t: t["status"] == "delivered")
                for t in held]
    assert all(t["status"] == "delivered" for t in answered)
    assert len(fake_slack.posts) == 2  # one answer over what was held
    transcript = session(server, sid)["transcript"]
    texts = [(e["role"], e["text"]) for e in transcript if e["role"] in ("user", "agent")]
    assert texts[-3:] == [("user", "while paused 0"), ("user", "while paused 1"),
                          ("agent", "echo: while paused 1")]
    states = [e["data"]["to"] for e in transcript if e.get("data", {}).get("to")]
    assert states == ["paused", "live"]


def test_transfer_then_next_turn_opens_target_agents_session(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    source = dm(server, "hello")["session_id"]
    bad = server.api("POST", f"/api/sessions/{source}/transfer", json={"agent": "nobody"},
                     token=OPERATOR)
    assert bad.status_code == 409
    ok = server.api("POST", f"/api/sessions/{source}/transfer", json={"agent": "helper"},
                    token=OPERATOR)
    assert ok.status_code == 200
    ended = session(server, source)
    assert ended["state"] == "ended" and ended["end_cause"] == "transferred"
    nxt = dm(server, "who are you now")
    assert nxt["agent"] == "helper" and nxt["session_id"] != source
    target = session(server, nxt["session_id"])
    assert target["agent"] == "helper" and target["parent_session_id"] == source
    assert dm(server, "and again")["session_id"] == nxt["session_id"]


def test_end_is_idempotent_and_delete_needs_admin_and_an_ended_session(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    sid = dm(server, "hello")["session_id"]
    assert server.api("DELETE", f"/api/sessions/{sid}", token=VIEWER).status_code == 403
    assert server.api("DELETE", f"/api/sessions/{sid}", token=OPERATOR).status_code == 403
    live = server.api("DELETE", f"/api/sessions/{sid}", token=ADMIN)
    assert live.status_code == 409 and "only ended sessions" in live.json()["detail"]
    assert server.api("POST", f"/api/sessions/{sid}/pause", token=VIEWER).status_code == 403
    first = server.api("POST", f"/api/sessions/{sid}/end", token=OPERATOR)
    second = server.api("POST", f"/api/sessions/{sid}/end", token=OPERATOR)
    assert first.status_code == second.status_code == 200
    assert "already ended" in second.json()["message"]
    transcript = session(server, sid)["transcript"]
    assert sum(1 for e in transcript if e.get("data", {}).get("to") == "ended") == 1
    refused = server.api("POST", f"/api/sessions/{sid}/pause", token=OPERATOR)
    assert refused.status_code == 409 and "cannot become paused" in refused.json()["detail"]
    assert server.api("DELETE", f"/api/sessions/{sid}", token=ADMIN).status_code == 200
    assert server.api("GET", f"/api/sessions/{sid}").status_code == 404
    entries = server.api("GET", "/api/audit").json()["entries"]  # every action is there (#18)
    [entry] = [e for e in entries if e["action"] == "delete"]
    assert (entry["action"], entry["target"], entry["actor"]) == ("delete", sid, "root")


def test_model_override_reaches_the_agent(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    sid = dm(server, "hello")["session_id"]
    r = server.api("POST", f"/api/sessions/{sid}/model", json={"model": "huge"},
                   token=OPERATOR)
    assert r.status_code == 200
    turn = dm(server, "again")
    assert next(e for e in turn["events"] if e["name"] == "agent_replied")["detail"]["model"] \
        == "huge"


def test_api_sessions_chat_without_a_provider(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    created = server.api("POST", "/api/agents/triager/sessions", json={"tag": "test"},
                         token=OPERATOR)
    assert created.status_code == 201
    sid = created.json()["id"]
    assert created.json()["source"] == "api" and created.json()["tag"] == "test"
    reply = server.api("POST", f"/api/sessions/{sid}/messages", json={"text": "try me"},
                       token=OPERATOR)
    assert reply.status_code == 200
    turn = reply.json()
    assert turn["status"] == "delivered" and turn["reply_text"] == "echo: try me"
    assert turn["provider"] == "api" and turn["session_id"] == sid
    listed = server.api("GET", "/api/sessions", params={"source": "api", "tag": "test"}).json()
    assert [s["id"] for s in listed["sessions"]] == [sid]
    assert listed["sessions"][0]["turn_count"] == 1
    assert server.api("POST", "/api/agents/nobody/sessions", json={},
                      token=OPERATOR).status_code == 404


def test_slash_command_ends_the_users_session_ephemerally(serve, fake_slack):
    server = serve(config(fake_slack.api_url, slash="\n    slash_command: /agent"))
    sid = dm(server, "hello")["session_id"]
    body = (b"command=%2Fagent&text=end&user_id=U0ALICE&channel_id=D0ALICE&team_id=T1"
            b"&response_url=http%3A%2F%2F127.0.0.1%2Fnope")
    from conftest import slack_signature

    response = server.http.post("/slack/slack-acme/commands", content=body, headers={
        **slack_signature(body), "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert "ended" in response.json()["text"]
    assert session(server, sid)["state"] == "ended"
    bad = server.http.post("/slack/slack-acme/commands", content=body, headers={
        **slack_signature(body, "wrong"), "Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 401


def test_sse_shows_a_slack_turn_in_order_and_resumes_with_last_event_id(serve, fake_slack):
    server = serve(config(fake_slack.api_url))
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    reader = threading.Thread(target=read_sse, args=(f"{server.url}/api/events", VIEWER, seen,
                                                     stop), daemon=True)
    reader.start()
    time.sleep(0.3)
    turn = dm(server, "watch me")
    deadline = time.time() + 5
    while not any(e["event"] == "turn.delivered" for e in seen) and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    names = [e["event"] for e in seen]
    assert names[:3] == ["turn.received", "turn.routed", "session.created"]
    assert names.index("session.message.created") < names.index("turn.delivered")
    assert all(e["data"]["turn_id"] == turn["id"] for e in seen if e["event"].startswith("turn"))
    # disconnected; more happens; reconnecting with Last-Event-ID misses nothing
    last = seen[-1]["id"]
    second = dm(server, "while away")
    again: list[dict[str, Any]] = []
    stop2 = threading.Event()
    reader2 = threading.Thread(target=read_sse, args=(f"{server.url}/api/events", VIEWER, again,
                                                      stop2, last), daemon=True)
    reader2.start()
    deadline = time.time() + 5
    while not any(e["event"] == "turn.delivered" for e in again) and time.time() < deadline:
        time.sleep(0.05)
    stop2.set()
    assert again[0]["id"] == str(int(last) + 1)
    assert [e["event"] for e in again if e["event"].startswith("turn")] == [
        "turn.received", "turn.routed", "turn.delivered"]
    assert again[-1]["data"]["turn_id"] == second["id"]
    assert server.http.get("/api/events").status_code == 401


def test_listing_filters_and_auto_archive(serve, fake_slack):
    server = serve(config(fake_slack.api_url, sessions="\n  auto_archive_after: 1d"))
    alice = dm(server, "hi", user="U0ALICE", channel="D0ALICE")["session_id"]
    bob = dm(server, "hi", user="U0BOB", channel="D0BOB")["session_id"]
    listed = server.api("GET", "/api/sessions", params={"user": "U0BOB"}).json()["sessions"]
    assert [s["id"] for s in listed] == [bob]
    assert listed[0]["turn_count"] == 1 and listed[0]["source"] == "slack"
    newest_first = [s["id"] for s in server.api("GET", "/api/sessions").json()["sessions"]]
    assert newest_first == [bob, alice]
    started = listed[0]["started_at"]
    after = server.api("GET", "/api/sessions", params={"started_after": started}).json()
    assert [s["id"] for s in after["sessions"]] == [bob]
    server.api("POST", f"/api/sessions/{alice}/end", token=OPERATOR)
    server.travel(days=2)
    default = [s["id"] for s in server.api("GET", "/api/sessions").json()["sessions"]]
    assert alice not in default
    archived = server.api("GET", "/api/sessions", params={"include_archived": "true"}).json()
    assert alice in [s["id"] for s in archived["sessions"]]
    assert server.api("GET", f"/api/sessions/{alice}").status_code == 200


def test_a_state_or_agent_of_few_sessions_pages_newest_first(serve, fake_slack):
    # Few sessions of a state or an agent are read through its index and sorted (on SQLite
    # kept off the started_at index, store/sessions.py): the order, the cursor and
    # started_after still hold.
    server = serve(config(fake_slack.api_url))
    ids = [dm(server, "hi", user=f"U0P{n}", channel=f"D0P{n}")["session_id"] for n in range(3)]
    for filters in ({"state": "live"}, {"agent": "triager"}, {"state": "live", "source": "slack"}):
        seen, cursor = [], None
        while True:
            params = {**filters, "limit": 1, **({"cursor": cursor} if cursor else {})}
            page = server.api("GET", "/api/sessions", params=params).json()
            seen += [s["id"] for s in page["sessions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1], filters
    middle = session(server, ids[1])["started_at"]
    after = server.api("GET", "/api/sessions", params={"state": "live", "started_after": middle})
    assert [s["id"] for s in after.json()["sessions"]] == ids[:0:-1]
    before = server.api("GET", "/api/sessions", params={"agent": "triager",
                                                         "started_before": middle})
    assert [s["id"] for s in before.json()["sessions"]] == ids[:1]
    assert server.api("GET", "/api/sessions", params={"state": "paused"}).json()["sessions"] == []
