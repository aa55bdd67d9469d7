"""Busy sessions keep order: messages sent while the agent still answers the first are all
answered, in order, one run each (or, with `coalesce: true`, together in one run); with two
`serve` processes on one PostgreSQL database too."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    OPERATORS_YAML,
    ServeProcess,
    _postgres_database,
    _postgres_unavailable,
    slack_config,
    slack_message,
    slack_signature,
)
from fakes.agents import HTTPAgent
from switchboard import db


@pytest.fixture
def slow_agent() -> Iterator[HTTPAgent]:
    with HTTPAgent() as agent:
        agent.delay = 0.3
        yield agent


def config(api_url: str, agent_url: str, coalesce: bool = False) -> str:
    return slack_config(api_url, agents={"helper": {"handler": "http", "url": f"{agent_url}/turn"}},
                        bindings=[{"name": "help", "agent": "helper", "account": "slack-acme",
                                   "coalesce": coalesce}])


def event_body(text: str) -> bytes:
    event = slack_message(text, channel="D0ALICE", channel_type="im")
    return json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback", "event_id": f"Ev{secrets.token_hex(5)}",
                       "event_time": int(time.time()), "event": event}).encode()


def wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def asked(agent: HTTPAgent) -> list[str]:
    return [request["turn"]["text"] for request in agent.requests]


def test_five_messages_during_a_slow_answer_are_answered_in_order(serve, fake_slack,
                                                                   slow_agent):
    server = serve(config(fake_slack.api_url, slow_agent.url))
    texts = [f"message {i}" for i in range(5)]
    ids = [server.slack_post("slack-acme", event_body(t)).json()["turn_id"] for t in texts]
    turns = [server.wait_turn(i, timeout=15) for i in ids]
    assert [t["status"] for t in turns] == ["delivered"] * 5
    assert asked(slow_agent) == texts  # one run each, never overtaking
    assert slow_agent.most_in_flight == 1  # each after the one before was answered
    posts = fake_slack.posts_to("D0ALICE")
    assert [p["text"].split(" (model")[0] for p in posts] == [f"agent says: {t}" for t in texts]
    session = server.api("GET", f"/api/sessions/{turns[0]['session_id']}").json()
    assert [m["text"] for m in session["transcript"] if m["role"] == "user"] == texts


def test_coalesce_answers_the_waiting_messages_in_one_run(serve, fake_slack, slow_agent):
    slow_agent.delay = 0.6
    server = serve(config(fake_slack.api_url, slow_agent.url, coalesce=True))
    texts = [f"message {i}" for i in range(5)]
    ids = [server.slack_post("slack-acme", event_body(t)).json()["turn_id"] for t in texts]
    turns = [server.wait_turn(i, timeout=15) for i in ids]
    assert [t["status"] for t in turns] == ["delivered"] * 5
    runs = asked(slow_agent)  # the first alone (or with one that came in time), then the rest
    assert 2 <= len(runs) <= 3 and "\n\n".join(runs) == "\n\n".join(texts)
    assert len(fake_slack.posts_to("D0ALICE")) == len(runs)
    start = 0
    for run in runs:
        together = ids[start:start + run.count("\n\n") + 1]
        start += len(together)
        for turn in turns[start - len(together):start]:
            names = [e["name"] for e in turn["events"]]
            replied = next(e for e in turn["events"] if e["name"] == "agent_replied")
            if len(together) > 1:
                assert "coalesced" in names, names
                assert replied["detail"]["together_with"] == together
            else:
                assert "coalesced" not in names and "together_with" not in replied["detail"]
    session = server.api("GET", f"/api/sessions/{turns[0]['session_id']}").json()
    assert [m["text"] for m in session["transcript"] if m["role"] == "user"] == texts


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if (reason := _postgres_unavailable()) is not None:
        pytest.skip(reason)
    for url in _postgres_database():
        db.upgrade(url)
        yield url


def test_two_processes_on_postgres_answer_in_order(postgres_url, fake_slack, slow_agent,
                                                   tmp_path: Path):
    path = tmp_path / "bindings.yaml"
    path.write_text(config(fake_slack.api_url, slow_agent.url) + OPERATORS_YAML)
    first = ServeProcess(path, postgres_url, tmp_path)
    second = ServeProcess(path, postgres_url, tmp_path)
    try:
        texts = [f"message {i}" for i in range(5)]
        for i, text in enumerate(texts):  # alternately to each process, as a balancer would
            body = event_body(text)
            process = (first, second)[i % 2]
            answer = process.http.post("/slack/slack-acme/events", content=body, headers={
                **slack_signature(body), "Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text
        wait_for(lambda: len(fake_slack.posts_to("D0ALICE")) == 5)
        assert asked(slow_agent) == texts
        assert slow_agent.most_in_flight == 1
        posts = fake_slack.posts_to("D0ALICE")
        assert [p["text"].split(" (model")[0] for p in posts] == \
            [f"agent says: {t}" for t in texts]
    finally:
        first.stop()
        second.stop()
