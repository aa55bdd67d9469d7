"""A flood beyond `delivery.queue_limit`: turns that find the queue full wait in the database
(status `queued`) and are read back oldest first, so each is answered exactly once, in its
conversation's order; a restart picks up those still waiting."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from conftest import Server, slack_config, slack_message, wait_until
from fakes.agents import HTTPAgent
from fakes.slack_api import FakeSlackAPI

CHANNELS = [f"D0PERSON{i}" for i in range(10)]


@pytest.fixture
def slow_agent() -> Iterator[HTTPAgent]:
    with HTTPAgent() as agent:
        agent.delay = 0.05
        yield agent


def config(api_url: str, agent_url: str, workers: int = 2, limit: int = 5) -> str:
    return slack_config(api_url, agents={"helper": {"handler": "http", "url": f"{agent_url}/turn"}},
                        bindings=[{"name": "help", "agent": "helper", "account": "slack-acme"}],
                        sections={"delivery": {"workers": workers, "queue_limit": limit}})


def post(server: Server, channel: str, text: str) -> str:
    event = slack_message(text, channel=channel, user=f"U{channel}", channel_type="im")
    body = json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback", "event_id": f"Ev{secrets.token_hex(5)}",
                       "event_time": int(time.time()), "event": event}).encode()
    response = server.slack_post("slack-acme", body)
    assert response.status_code == 200, response.text
    return response.json()["turn_id"]


def settled(server: Server, turn_ids: list[str], timeout: float = 60.0) -> list[dict]:
    return [server.wait_turn(t, until=lambda turn: turn["status"] in ("delivered", "failed"),
                             timeout=timeout) for t in turn_ids]


def answers(slack: FakeSlackAPI, channel: str) -> list[str]:
    return [p["text"].split(" (model")[0] for p in slack.posts_to(channel)]


def sent(count: int) -> dict[str, list[str]]:
    return {channel: [f"{channel} message {n}" for n in range(count)] for channel in CHANNELS}


def test_a_flood_beyond_the_queue_limit_waits_in_the_database_and_keeps_order(
        serve, fake_slack, slow_agent):
    server = serve(config(fake_slack.api_url, slow_agent.url))
    texts = sent(5)
    ids = [post(server, channel, texts[channel][n]) for n in range(5) for channel in CHANNELS]
    health = server.http.get("/healthz").json()
    assert health["queue"]["memory"] <= 5  # the bound holds while the flood is behind

    turns = settled(server, ids)
    assert [t["status"] for t in turns] == ["delivered"] * 50
    for channel in CHANNELS:  # each answered once, in its conversation's order
        assert answers(fake_slack, channel) == [f"agent says: {t}" for t in texts[channel]]
        asked = [r["turn"]["text"] for r in slow_agent.requests
                 if r["turn"]["conversation"] == channel]
        assert asked == texts[channel]

    refilled = [t for t in ids if "refilled" in
                [e["name"] for e in server.turn(t)["events"]]]
    assert len(refilled) >= 30  # most of them waited in the database
    health = server.http.get("/healthz").json()
    assert health["queue"] == {"memory": 0, "database": 0, "refilled": len(refilled)}
    metrics = server.http.get("/metrics").text
    assert f"switchboard_queue_refilled_total {float(len(refilled))}" in metrics
    assert "switchboard_queue_backlog 0.0" in metrics
    assert not server.turns(status="queued")


def test_turns_waiting_in_the_database_are_answered_after_a_restart(serve, fake_slack,
                                                                   slow_agent):
    slow_agent.delay = 0.5
    first = serve(config(fake_slack.api_url, slow_agent.url, workers=1, limit=3))
    texts = sent(2)
    ids = [post(first, channel, texts[channel][n]) for n in range(2) for channel in CHANNELS]
    assert wait_until(lambda: first.turns(status="queued"))  # waiting in the database
    first.stop()
    slow_agent.delay = 0.0

    second = serve(config(fake_slack.api_url, slow_agent.url, workers=2, limit=3))
    turns = settled(second, ids)
    assert [t["status"] for t in turns] == ["delivered"] * 20
    for channel in CHANNELS:  # each answered once (before or after the restart), in order
        assert answers(fake_slack, channel) == [f"agent says: {t}" for t in texts[channel]]
    assert not second.turns(status="queued")
    assert not second.turns(status="pending")
