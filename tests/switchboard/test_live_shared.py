"""Live events across processes: with several `serve` on one PostgreSQL database, what one
handles shows on every one's `/api/events` (under the same ids), a stream resumes with
`Last-Event-ID` on a restarted process, and the console of one shows the turns of another.
On SQLite (one process) events stay in memory: nothing is written for them."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from conftest import ADMIN, VIEWER, Server, slack_config, slack_message, wait_until

CHROMIUM = "/usr/bin/chromium"


def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("several processes share one PostgreSQL database; SQLite has one")


class Stream:
    """A console's `/api/events` stream on one server, read in a thread."""

    def __init__(self, server: Server, last_event_id: str | None = None,
                 path: str = "/api/events") -> None:
        self.seen: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self.response: httpx.Response | None = None
        headers = {"Authorization": f"Bearer {VIEWER}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.reader = threading.Thread(target=self._read, daemon=True,
                                       args=(server.url + path, headers))
        self.reader.start()
        wait_until(lambda: self.response is not None)
        time.sleep(0.1)  # the stream is open before anything happens

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=30) as response:
                self.response = response
                current: dict[str, Any] = {}
                for line in response.iter_lines():
                    if line.startswith(("id: ", "event: ")):
                        key, _, value = line.partition(": ")
                        current[key] = value
                    elif line.startswith("data: "):
                        current["data"] = json.loads(line[6:])
                    elif not line and "event" in current:
                        self.seen.append(current)
                        current = {}
        except (httpx.HTTPError, AttributeError, ValueError):
            if not self.closed.is_set():
                raise

    def close(self) -> None:
        """Hang up (rather than leave the server to cut the stream when it stops)."""
        self.closed.set()
        if self.response is not None:
            self.response.close()

    def wait_for(self, name: str, timeout: float = 10.0, **data: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.seen):
                if event["event"] == name and all(event["data"].get(k) == v
                                                  for k, v in data.items()):
                    return event
            time.sleep(0.02)
        seen = [(e["id"], e["event"], e["data"].get("turn_id")) for e in self.seen]
        raise AssertionError(f"no {name} {data} within {timeout} s; the stream had {seen}")

    def of(self, turn_id: str) -> list[tuple[str, str]]:
        return [(e["id"], e["event"]) for e in self.seen if e["data"].get("turn_id") == turn_id]


def mention(server: Server, text: str) -> str:
    """An app_mention as Slack's Events API sends it; the turn id the acknowledgement names."""
    event = slack_message(f"<@U0BOT> {text}", etype="app_mention",
                          blocks=[{"type": "rich_text", "block_id": "Bk1", "elements": [
                              {"type": "rich_text_section", "elements": [
                                  {"type": "user", "user_id": "U0BOT"},
                                  {"type": "text", "text": f" {text}"}]}]}],
                          team="T1", client_msg_id="6f2d0b7e-21c4-4a4c-9d5e-0c2b8f1f6a10")
    response = server.slack_event("slack-acme", event)
    assert response.status_code == 200, response.text
    return response.json()["turn_id"]


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["id"]) for e in events]


def test_a_turn_one_serve_handled_streams_on_the_other_under_the_same_ids(
        serve: Any, fake_slack: Any, database_url: str) -> None:
    postgres_only(database_url)
    config = slack_config(fake_slack.api_url)
    a, b = serve(config), serve(config)
    on_a, on_b = Stream(a), Stream(b)
    turn_id = mention(a, "is the VPN down?")
    delivered = on_b.wait_for("turn.delivered", turn_id=turn_id)
    received = on_b.wait_for("turn.received", turn_id=turn_id)
    assert received["data"]["provider"] == "slack"
    assert a.turn(turn_id)["status"] == "delivered"
    on_a.wait_for("turn.delivered", turn_id=turn_id)
    assert on_a.of(turn_id) == on_b.of(turn_id)  # the same events, the same ids, once each
    assert on_b.of(turn_id)[0][1] == "turn.received"
    for stream in (on_a, on_b):
        assert ids(stream.seen) == sorted(set(ids(stream.seen)))

    # B's stream of that session has it too (from B's buffer: no Last-Event-ID)
    session_id = delivered["data"]["session_id"]
    in_session = Stream(b, path=f"/api/sessions/{session_id}/events")
    assert in_session.wait_for("turn.delivered", turn_id=turn_id)["id"] == delivered["id"]
    assert {e["data"]["session_id"] for e in in_session.seen} == {session_id}
    for stream in (on_a, on_b, in_session):
        stream.close()


def test_a_stream_resumed_after_its_serve_restarts_gets_what_it_missed_once(
        serve: Any, fake_slack: Any, database_url: str) -> None:
    postgres_only(database_url)
    config = slack_config(fake_slack.api_url)
    a, b = serve(config), serve(config)
    on_a, on_b = Stream(a), Stream(b)
    first = mention(a, "first")
    on_b.wait_for("turn.delivered", turn_id=first)
    last = on_b.seen[-1]["id"]
    on_b.close()
    b.stop()  # the process the console talks to goes away

    missed = mention(a, "while B was down")
    on_a.wait_for("turn.delivered", turn_id=missed)

    b2 = serve(config)  # B again, on the same database
    me = b2.api("GET", "/api/me", token=ADMIN).json()
    assert me["last_event_id"] >= int(on_a.wait_for("turn.delivered", turn_id=missed)["id"])
    resumed = Stream(b2, last_event_id=last)
    resumed.wait_for("turn.delivered", turn_id=missed)
    got = ids(resumed.seen)
    assert got == sorted(set(got)) and min(got) > int(last)  # nothing twice, nothing old
    assert resumed.of(missed) == on_a.of(missed)  # every event of the missed turn, as A's ids
    for stream in (on_a, resumed):
        stream.close()


def test_a_single_serve_numbers_each_event_once_and_only_postgres_shares_them(
        serve: Any, fake_slack: Any, database_url: str) -> None:
    server = serve(slack_config(fake_slack.api_url))
    stream = Stream(server)
    turn_id = mention(server, "hello")
    stream.wait_for("turn.delivered", turn_id=turn_id)
    names = [name for _, name in stream.of(turn_id)]
    assert names[0] == "turn.received" and names.count("turn.delivered") == 1
    assert len(names) == len(set(stream.of(turn_id)))
    got = ids(stream.seen)
    assert got == sorted(set(got))
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            shared = [row[0] for row in connection.execute(
                text("SELECT id FROM live_events ORDER BY id"))]
    finally:
        engine.dispose()
    if database_url.startswith("sqlite"):
        assert shared == []  # one process: the events stay in memory, as before
        assert got == list(range(got[0], got[0] + len(got)))
    else:
        assert set(got) <= set(shared)  # streamed under the table's ids
    stream.close()


@pytest.fixture
def page(database_url: str) -> Iterator[Any]:
    postgres_only(database_url)
    if not importlib.util.find_spec("playwright") or not os.path.exists(CHROMIUM):
        pytest.skip("Chromium and Playwright are needed for the console")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        tab = browser.new_context(viewport={"width": 1366, "height": 860}).new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        yield tab
        browser.close()
    assert errors == []


def test_the_console_on_one_serve_shows_turns_another_serve_handled(
        serve: Any, fake_slack: Any, page: Any) -> None:
    from playwright.sync_api import expect

    config = slack_config(fake_slack.api_url)
    a, b = serve(config), serve(config)
    page.goto(b.url + "/")
    page.get_by_label("Operator token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live")).to_have_text("Live")
    page.evaluate("window.__noReload = true")
    turn_id = mention(a, "is the printer on fire?")
    row = page.locator(f'tr[data-turn-id="{turn_id}"]')
    expect(row.locator(".badge")).to_have_text("✓delivered")
    assert page.evaluate("window.__noReload") is True  # live, not reloaded
