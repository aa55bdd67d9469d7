"""Session actions from the terminal reach a running `serve` like the API's do: its live event
stream (what the console shows) hears them, and the turns a pause held are answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    OPERATOR,
    OPERATORS_YAML,
    SIGNING_SECRET,
    VIEWER,
    ServeProcess,
    read_sse,
    slack_message,
    slack_signature,
)

CONFIG = f"""
agents:
  triager: {{handler: echo, model: small}}
  helper: {{handler: echo, model: large}}
accounts:
  slack-acme:
    provider: slack
    bot_token: xoxb-test
    signing_secret: {SIGNING_SECRET}
    api_url: %s
bindings:
  - {{name: triage-dm, agent: triager, account: slack-acme, dm: true}}
"""


class Watcher:
    """A console's view of one `serve`: the events of its `/api/events` stream as they come."""

    def __init__(self, url: str, token: str = VIEWER) -> None:
        self.seen: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.reader = threading.Thread(target=read_sse, daemon=True,
                                       args=(f"{url}/api/events", token, self.seen, self.stop))
        self.reader.start()
        time.sleep(0.5)  # the stream is open before anything happens

    def wait_for(self, name: str, timeout: float = 5.0, **data: Any) -> dict[str, Any]:
        """The first event called `name` whose data has `data`; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.seen):
                if event["event"] == name and all(event["data"].get(k) == v
                                                  for k, v in data.items()):
                    return event
            time.sleep(0.05)
        names = [(e["event"], e["data"].get("to")) for e in self.seen]
        raise AssertionError(f"no {name} {data} within {timeout} s; the stream had {names}")


@pytest.fixture
def served(tmp_path: Path, database_url: str, fake_slack: Any
           ) -> Iterator[tuple[ServeProcess, Path]]:
    """`switchboard serve` as a real process on the test's database, with its config file."""
    config = tmp_path / "bindings.yaml"
    config.write_text(CONFIG % fake_slack.api_url + OPERATORS_YAML)
    server = ServeProcess(config, database_url, tmp_path)
    try:
        yield server, config
    finally:
        server.stop()


def cli_in(tmp_path: Path, database_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "switchboard", "sessions", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env={**os.environ, "SWITCHBOARD_DATABASE_URL": database_url})
    return cli


def dm(server: ServeProcess, text: str, until: Callable[[dict[str, Any]], bool] | None = None
       ) -> dict[str, Any]:
    """A direct message from Alice, through the signed Events API; the turn once settled."""
    event = slack_message(text, channel="D0ALICE", channel_type="im")
    body = json.dumps({"type": "event_callback", "team_id": "T1", "api_app_id": "A1",
                       "event_id": f"Ev{time.time_ns()}", "event": event}).encode()
    response = server.http.post("/slack/slack-acme/events", content=body, headers={
        **slack_signature(body), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    turn_id = response.json()["turn_id"]
    done = until or (lambda t: t["status"] not in ("pending",))
    deadline = time.monotonic() + 10
    while True:
        turn = server.api("GET", f"/api/turns/{turn_id}").json()
        if done(turn) or time.monotonic() > deadline:
            return turn
        time.sleep(0.05)


def test_cli_session_actions_show_on_a_running_serves_live_events(served, tmp_path,
                                                                   database_url, fake_slack):
    server, config = served
    cli = cli_in(tmp_path, database_url)
    sid = dm(server, "hello")["session_id"]
    console = Watcher(server.url)

    paused = cli("pause", sid)
    assert paused.returncode == 0, paused.stderr
    event = console.wait_for("session.state_changed", session_id=sid, to="paused")
    assert event["data"] == {"id": event["data"]["id"], "at": event["data"]["at"],
                             "session_id": sid, "from": "live", "to": "paused",
                             "cause": "operator", "actor": "cli"}

    held = dm(server, "while paused")
    assert held["status"] == "held"
    resumed = cli("resume", sid)
    assert resumed.returncode == 0, resumed.stderr
    console.wait_for("session.state_changed", session_id=sid, **{"from": "paused"}, to="live")
    # the running serve answers what the pause held, once
    answered = console.wait_for("turn.delivered", turn_id=held["id"], timeout=10)
    assert answered["data"]["session_id"] == sid
    assert [p["text"] for p in fake_slack.posts] == ["echo: hello", "echo: while paused"]

    assert cli("end", sid).returncode == 0
    console.wait_for("session.state_changed", session_id=sid, to="ended", cause="operator")
    assert cli("delete", sid).returncode == 0
    console.wait_for("session.deleted", session_id=sid, actor="cli")

    fresh = dm(server, "a new conversation")["session_id"]
    assert fresh != sid
    moved = cli("transfer", fresh, "--to", "helper", "--config", str(config))
    assert moved.returncode == 0, moved.stderr
    console.wait_for("session.state_changed", session_id=fresh, to="ended", cause="transferred")
    # each change was announced once, though the serve reads the shared events every poll
    time.sleep(1.5)
    changes = [(e["data"]["session_id"], e["data"]["to"]) for e in console.seen
               if e["event"] == "session.state_changed"]
    assert changes == [(sid, "paused"), (sid, "live"), (sid, "ended"), (fresh, "ended")]
    console.stop.set()


def test_api_actions_are_announced_once_on_their_own_serve(served, fake_slack):
    server, _ = served
    sid = dm(server, "hello")["session_id"]
    console = Watcher(server.url)
    assert server.api("POST", f"/api/sessions/{sid}/pause", token=OPERATOR).status_code == 200
    console.wait_for("session.state_changed", session_id=sid, to="paused")
    time.sleep(1.5)  # several polls of the shared events: its own are not streamed again
    assert [e["event"] for e in console.seen].count("session.state_changed") == 1
    console.stop.set()


def test_a_serve_streams_what_another_serve_on_postgres_did(tmp_path, database_url,
                                                            fake_slack):
    if not database_url.startswith("postgres"):
        pytest.skip("two processes share one PostgreSQL database")
    config = tmp_path / "bindings.yaml"
    config.write_text(CONFIG % fake_slack.api_url + OPERATORS_YAML)
    a = ServeProcess(config, database_url, tmp_path)
    b = ServeProcess(config, database_url, tmp_path)
    try:
        sid = dm(a, "hello")["session_id"]
        console = Watcher(b.url)
        assert a.api("POST", f"/api/sessions/{sid}/pause", token=OPERATOR).status_code == 200
        console.wait_for("session.state_changed", session_id=sid, to="paused", actor="ops")
        console.stop.set()
    finally:
        a.stop()
        b.stop()
